//! The thread that runs training steps as one of rayon's threads, and the pool's other threads
//! kept polling for work while it runs.
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
/// rayon: once the pool exists it changes nothing and says so at debug level. Then hold a
/// [`keep_awake`] guard while the work runs.
pub fn join_pool() {
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
    {
        tracing::debug!("rayon's global pool was already built: {e}");
    }
}

/// Runs `f` on one of rayon's threads: at once when the caller is one (a binary's main thread
/// after [`join_pool`]), else in a pool of its own, as many threads as the global pool, while
/// the caller waits. For a library's entry points, which a test or a user's program calls from
/// a thread outside the pool: there every split of a training step hands its work over and
/// sleeps until it is done (see the module's note). The end-to-end test of application 9's
/// symmetric phase took 56 s that way and 31 s in a pool, with the same numbers out.
///
/// A pool of its own, not the global one: a global thread waiting on a split takes any queued
/// job, and another caller's whole run queued there would run inside this one's step (in the
/// test suite, the 20-second 3-D mixture then took 166 s).
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if on_pool_thread() {
        return f();
    }
    match rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("flowmodels-{i}"))
        .build()
    {
        Ok(pool) => pool.install(f),
        Err(e) => {
            tracing::warn!("no thread pool for this call ({e}): it runs on the calling thread");
            f()
        }
    }
}

/// Whether the calling thread is one of a rayon pool's threads.
pub fn on_pool_thread() -> bool {
    rayon::current_thread_index().is_some()
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// While alive, the pool's other threads poll for work instead of sleeping: see [`keep_awake`].
#[must_use = "the other threads stop polling when the guard is dropped"]
pub struct KeepAwake {
    stop: Arc<AtomicBool>,
}

/// How long a polling thread goes on without finding work before it naps between polls.
const POLL_WITHOUT_WORK: Duration = Duration::from_millis(2);

/// The longest nap, after a long stretch without work (reading data, writing a checkpoint).
const LONGEST_NAP: Duration = Duration::from_millis(20);

/// Keeps the other threads of rayon's pool polling for work until the guard is dropped; None
/// when the calling thread is not one of the pool's (see [`join_pool`]) or the pool has one
/// thread.
///
/// rayon parks an idle thread after a few dozen rounds of looking for work, tens of
/// microseconds, and waking it is a system call and, under a hypervisor, an interrupt to
/// another virtual CPU. A training step splits hundreds of products and passes, each after a
/// serial stretch longer than that, so each split paid a wake-up before the other core joined
/// in. OpenMP, under PyTorch's MKL, spins the same way. Paired runs on the Intel 2-core machine
/// (`bench --only`): the 2-D RealNVP 67 -> 80 steps/s (one thread alone had been faster than
/// two), Glow 32 17.1 -> 21.6, the FlashSim NSF 62 -> 77, phi4 18.2 -> 19.5.
///
/// A thread without work for 2 ms naps between polls, longer the longer it finds none (up to
/// 20 ms), so that a run waiting on its data does not keep a core busy.
pub fn keep_awake() -> Option<KeepAwake> {
    let caller = rayon::current_thread_index()?;
    if rayon::current_num_threads() < 2 {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A broadcast reaches each thread itself; a spawned job could be taken back by the caller,
    // which would then poll instead of returning to its own work.
    rayon::spawn_broadcast(move |context| {
        if context.index() != caller {
            poll(&flag);
        }
    });
    Some(KeepAwake { stop })
}

/// Runs the pool's pending work until `stop`.
fn poll(stop: &AtomicBool) {
    let mut last_work = Instant::now();
    let mut rounds = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if let Some(rayon::Yield::Executed) = rayon::yield_now() {
            last_work = Instant::now();
            continue;
        }
        rounds = rounds.wrapping_add(1);
        if !rounds.is_multiple_of(4) {
            std::hint::spin_loop();
            continue;
        }
        let idle = last_work.elapsed();
        if idle < POLL_WITHOUT_WORK {
            // Gives the core to any other thread that wants it (the data loader's, another
            // process's): polling only takes what nothing else would use.
            std::thread::yield_now();
        } else {
            std::thread::sleep((idle / 16).min(LONGEST_NAP));
        }
    }
}

impl Drop for KeepAwake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(values: &[u64]) -> u64 {
        if values.len() < 1024 {
            return values.iter().sum();
        }
        let (a, b) = values.split_at(values.len() / 2);
        let (x, y) = rayon::join(|| sum(a), || sum(b));
        x + y
    }

    /// Called from outside any pool (a test's thread), the work runs on a thread of a pool as
    /// large as the global one, and a call made from inside it runs where it is, not in a pool
    /// of its own again.
    #[test]
    fn in_pool_moves_an_outside_caller_onto_a_pool_thread_once() {
        assert!(!on_pool_thread(), "a test's thread is in no pool");
        let global = rayon::current_num_threads();
        let caller = std::thread::current().id();
        let (outer, inner, threads, name) = in_pool(|| {
            let outer = std::thread::current().id();
            let inner = in_pool(|| (std::thread::current().id(), on_pool_thread()));
            let name = std::thread::current().name().map(str::to_owned);
            (outer, inner, rayon::current_num_threads(), name)
        });
        assert_ne!(outer, caller, "the work ran on the calling thread");
        assert_eq!(inner, (outer, true), "the nested call left its thread");
        assert_eq!(threads, global);
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("flowmodels-")),
            "the work ran on {name:?}, not in a pool of its own"
        );
    }

    /// Splits run on both threads while they are kept awake, the caller never ends up polling
    /// (the broadcast's share for it returns at once), and dropping the guard frees the pool:
    /// a broadcast, which needs every thread, completes.
    #[test]
    fn a_kept_awake_pool_runs_splits_and_is_freed_by_the_drop() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        assert!(
            keep_awake().is_none(),
            "outside a pool there is nothing to keep awake"
        );
        let values: Vec<u64> = (0..1_000_000).collect();
        pool.install(|| {
            let awake = keep_awake().expect("a guard inside a 2-thread pool");
            let stolen = std::sync::atomic::AtomicUsize::new(0);
            let caller = rayon::current_thread_index();
            for _ in 0..200 {
                let (a, _) = rayon::join(
                    || sum(&values),
                    || {
                        if rayon::current_thread_index() != caller {
                            stolen.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                );
                assert_eq!(a, 999_999 * 1_000_000 / 2);
            }
            assert!(
                stolen.load(Ordering::Relaxed) > 0,
                "the polling thread never took a split"
            );
            drop(awake);
        });
        let indices = pool.broadcast(|context| context.index());
        assert_eq!(
            indices,
            vec![0, 1],
            "a thread was still polling after the drop"
        );
    }
}
