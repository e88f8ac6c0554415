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
