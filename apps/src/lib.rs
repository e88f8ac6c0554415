//! flowapps: the applications of flowmodels as libraries, over one harness, so that the
//! `train_flowmodelsN` binaries stay thin and tests drive the applications directly.
//!
//! - [`run`]: the application harness (config, run directory, tracking, the open -> fit ->
//!   report -> close sequence, the command line of every binary).
//! - [`shared`]: helpers several applications use (inference, plots, scores, CSV, classifiers,
//!   images, point files).
//! - One module per application: [`app1`] (distribution mapping), [`app2`] (images and
//!   anomalies), [`app3`] and [`app4`] (generative classification of images and points),
//!   [`inverse`] (applications 5-7, inverse problems), [`app8`] (conditional generation),
//!   [`app9`] (lattice phi^4 sampling); and
//!   [`bench`], the benchmark table.
//!
//! Adding an application is a module here (its config, data, report and `cli` with an
//! [`run::cli::App`] impl), a config in `apps/configs/` and a binary of one line.

/// Every binary (and test) linking the applications allocates through mimalloc: burn's
/// training steps allocate and free many buffers above glibc's 128 KiB mmap threshold. Measured
/// with `bench` on 2 cores, against glibc: app 1's 12 x [512, 512] +18-23% steps/s, Glow 32x32
/// scoring +9-14% images/s, the 2-D RealNVP +3-5%, Glow 32x32 training unchanged; jemalloc
/// (tikv-jemallocator 0.6) halved every case.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` (`mi_option_purge_delay` in `mimalloc.h`; libmimalloc-sys 0.1.49
/// names the options before and after it, 14 and 16, but not it).
const PURGE_DELAY_OPTION: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped before mimalloc returns it to the system, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise.
///
/// mimalloc's default is 1 s. A Glow 128x128 training step (1-2 s on 2 cores) frees about a
/// gigabyte of activations and allocates them again in the next step; returned to the system
/// in between, each page came back through a page fault that zeroed it (a quarter of the step
/// in the profile). Paired runs (`bench --only glow128`, Intel 2-core): 0.54 / 0.61 / 0.54 ->
/// 0.61 / 0.63 / 0.65 steps/s with freed memory kept, peak resident memory 1.1 -> 1.5 GiB;
/// steps under a second (every other case) were unchanged.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// Sets [`PURGE_DELAY_MS`] (see there); every binary does first ([`run::threads`]).
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options, which it reads at each purge.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, PURGE_DELAY_MS as _) };
    }
}

pub mod app1;
pub mod app2;
pub mod app3;
pub mod app4;
pub mod app8;
pub mod app9;
pub mod bench;
pub mod inverse;
pub mod run;
pub mod shared;

#[cfg(test)]
mod tests {
    use super::*;

    /// Option 15 is the purge delay: before the setting it holds mimalloc's default for it
    /// (1000 ms; other options' defaults are 0-2 or -1), or the setting where another test ran
    /// a binary's start.
    #[test]
    fn the_purge_delay_is_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one of mimalloc's options.
        let get = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) } as i64;
        let before = get();
        assert!(
            before == 1000 || before == PURGE_DELAY_MS,
            "option {PURGE_DELAY_OPTION} held {before}: not the purge delay"
        );
        keep_freed_memory();
        assert_eq!(get(), PURGE_DELAY_MS);
    }
}
