//! The thread that runs training steps as one of rayon's threads.
//!
//! flowcore's CPU work is split over rayon's global pool: burn's CPU backend's elementwise
//! passes and products (its `rayon` feature), flowcore's own large products, tanh, the spline
//! pass and im2col. Called from a thread outside the pool, each split hands its work to the
//! pool's threads and sleeps until they are done: two wake-ups per call, thousands of times a
//! second, and one thread more than there are cores. From a thread inside it, the caller works
//! on a part itself and the other cores steal the rest.
//!
//! Measured on 2 cores (`bench`, paired runs): joining the pool alone took ffjord-conv28 from
//! 4.8 to 6.2 steps/s and glow128 from 0.52 to 0.77; burn's `rayon` feature on top, which
//! outside the pool had slowed phi4 by 25% and the 2-D RealNVP by 11%, then gave another
//! 6-30% on every case (glow128 0.72 -> 0.96, app 1's 12 x [512, 512] 49 -> 60).

/// Make the calling thread (a binary's main thread) one of rayon's global threads, beside
/// `cores - 1` others (`RAYON_NUM_THREADS` in all, when set). Call it before anything uses
/// rayon: once the pool exists it changes nothing and says so at debug level.
pub fn join_pool() {
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
    {
        tracing::debug!("rayon's global pool was already built: {e}");
    }
}
