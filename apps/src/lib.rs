//! flowapps: what the `train_flowmodelsN` binaries share (configs, run directories, tracking
//! setup, progress, plots) and each application's logic, so that the binaries stay thin and
//! tests drive the applications as libraries.

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
pub mod bench;
pub mod classify;
pub mod config;
pub mod distributed;
pub mod infer;
pub mod inverse;
pub mod plot;
pub mod progress;
pub mod run;
pub mod scores;
