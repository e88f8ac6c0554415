//! flowapps: what the `train_flowmodelsN` binaries share (configs, run directories, tracking
//! setup, progress, plots) and each application's logic, so that the binaries stay thin and
//! tests drive the applications as libraries.

pub mod app1;
pub mod app2;
pub mod app3;
pub mod app4;
pub mod bench;
pub mod classify;
pub mod config;
pub mod infer;
pub mod inverse;
pub mod plot;
pub mod progress;
pub mod run;
pub mod scores;
