//! The training engine: any [`Objective`] (maximum likelihood by default) with Adam/AdamW,
//! learning-rate schedules, global-norm gradient clipping, a NaN guard, early stopping,
//! checkpoints at epoch boundaries and exact resume, in one process or data-parallel over a
//! [`Collective`]. It reports through [`Observer`]s and never prints: binaries draw progress
//! bars and trackers log metrics from the same reports.
//!
//! - [`TrainingConfig`]: the `[training]` group; [`DataSource`] and [`Batch`]: what it reads.
//! - [`fit`], [`fit_objective`], [`fit_data_parallel`]: the loop (the engine).
//! - [`StepStats`], [`EpochStats`], [`Observer`], [`FitOutcome`], [`TrainError`]: what it
//!   reports.

mod adam;
mod checkpoints;
mod clip;
mod collective;
mod config;
mod data;
mod engine;
mod objective;
mod report;
mod schedule;

pub use checkpoints::{CheckpointDir, TrainState};
pub use clip::clip_global_norm;
pub use collective::{Collective, SingleProcess, shard};
pub use config::{OptimizerKind, TrainingConfig};
pub use data::{Batch, DataSource};
pub use engine::{fit, fit_data_parallel, fit_objective};
pub use objective::{Loss, MaximumLikelihood, Objective, mean_nll, mean_nll_batch};
pub use report::{
    Divergence, EpochStats, FitOutcome, Observer, StepStats, TrainError, bits_per_dim,
};
pub use schedule::{Schedule, ScheduleState};
