//! What the engine reports while it trains and when it stops: step and epoch statistics for
//! [`Observer`]s, the [`FitOutcome`], and why training could not go on ([`TrainError`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Flow, FlowError};

/// One optimizer step, as reported to observers.
#[derive(Clone, Debug, Serialize)]
pub struct StepStats {
    /// Epoch, 1-based.
    pub epoch: usize,
    /// Step within the epoch, 1-based.
    pub step_in_epoch: usize,
    /// Global step, 1-based.
    pub step: u64,
    /// The objective's loss on the batch (mean NLL in nats per sample for maximum likelihood).
    pub loss: f64,
    /// The loss in bits per dimension, for a likelihood.
    pub bits_per_dim: Option<f64>,
    /// The loss's named parts.
    pub parts: Vec<(String, f64)>,
    /// Learning rate of the step.
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Global gradient norm after clipping.
    pub grad_norm_clipped: f64,
    /// Training throughput since the epoch started.
    pub samples_per_sec: f64,
}

fn nll() -> String {
    "nll".into()
}

/// One epoch, as reported to observers and kept in the run's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch, 1-based.
    pub epoch: usize,
    /// The objective's name (`nll` for maximum likelihood): metrics are `val_<loss>` and
    /// `epoch_train_<loss>`.
    #[serde(default = "nll")]
    pub loss: String,
    /// Mean training loss over the epoch.
    #[serde(alias = "train_nll")]
    pub train_loss: f64,
    /// Validation loss (NLL in nats per sample for maximum likelihood).
    #[serde(alias = "val_nll")]
    pub val_loss: f64,
    /// Validation bits per dimension, for a likelihood.
    pub val_bits_per_dim: Option<f64>,
    /// The validation loss's named parts.
    #[serde(default)]
    pub val_parts: Vec<(String, f64)>,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f64,
    /// Training throughput.
    pub samples_per_sec: f64,
    /// Evaluations of continuous layers' dynamics per training step (their forward solves, and
    /// the adjoint's backward solves); None for a flow without them.
    #[serde(default)]
    pub ode_nfe_per_step: Option<f64>,
    /// Whether this epoch has the best validation loss so far.
    pub best: bool,
}

/// Receives reports from the trainer.
pub trait Observer {
    /// An epoch of `steps` steps begins.
    fn on_epoch_start(&mut self, _epoch: usize, _steps: usize) {}
    /// A step finished.
    fn on_step(&mut self, _stats: &StepStats) {}
    /// An epoch finished and was validated (and checkpointed, if due).
    fn on_epoch_end(&mut self, _stats: &EpochStats) {}
}

/// Why training stopped early or could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad `[training]` value.
    #[error("invalid config: {0}")]
    Config(String),
    /// A NaN or infinite loss, gradient or validation loss.
    #[error(
        "{what} is {value} at epoch {epoch}, step {step}{}: training stopped; {}",
        cause.as_ref().map_or(String::new(), |c| format!(" ({c})")),
        match checkpoint {
            Some(p) => format!("the last good checkpoint is {}", p.display()),
            None => "no epoch had finished, so there is no checkpoint".to_string(),
        }
    )]
    NonFinite {
        /// `loss`, `gradient norm` or `validation loss`.
        what: &'static str,
        /// The value.
        value: f64,
        /// Epoch, 1-based.
        epoch: usize,
        /// Global step, 1-based.
        step: u64,
        /// The last checkpoint written, intact.
        checkpoint: Option<PathBuf>,
        /// What made it non-finite, where a layer could tell (an ODE solve out of steps).
        cause: Option<String>,
    },
    /// The data source failed.
    #[error("data: {0}")]
    Data(String),
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

/// The result of [`fit`](crate::train::fit).
#[derive(Debug)]
pub struct FitOutcome {
    /// The trained flow: the best by validation loss when early stopping is on, else the last.
    pub flow: Flow,
    /// Every epoch, resumed ones included.
    pub history: Vec<EpochStats>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether `flow` has the best epoch's weights (early stopping or `restore_best`).
    pub restored_best: bool,
    /// The best validation loss and its epoch.
    pub best: (f64, usize),
    /// Ranks that trained it (1: one process).
    pub ranks: usize,
}

impl FitOutcome {
    /// Mean optimizer steps per second over the epochs trained, for batches of `batch_size`
    /// rows per rank.
    pub fn steps_per_sec(&self, batch_size: usize) -> f64 {
        if self.history.is_empty() {
            return 0.0;
        }
        self.history.iter().map(|e| e.samples_per_sec).sum::<f64>()
            / self.history.len() as f64
            / (batch_size * self.ranks) as f64
    }
}

/// `nll` nats per sample of `dim` features in bits per dimension.
pub fn bits_per_dim(nll: f64, dim: usize) -> f64 {
    nll / (dim as f64 * std::f64::consts::LN_2)
}

/// Validation loss that rose after its best epoch while the training loss went on falling: the
/// model is memorising its training data (common on small training sets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The epoch of the lowest validation loss, and that loss.
    pub best: (usize, f64),
    /// The last epoch and its validation loss.
    pub last: (usize, f64),
    /// The training loss at the best epoch and at the last.
    pub train: (f64, f64),
}

impl Divergence {
    /// Relative rise of the validation loss over its best (of `max(|best|, 1)`) that counts.
    pub const RISE: f64 = 0.02;

    /// The divergence in `history`, if the last epoch's validation loss is more than
    /// [`Self::RISE`] above the best, two or more epochs after it, with a lower training loss.
    pub fn find(history: &[EpochStats]) -> Option<Self> {
        let last = history.last()?;
        let best = history
            .iter()
            .filter(|e| e.val_loss.is_finite())
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))?;
        let rise = last.val_loss - best.val_loss;
        (last.epoch >= best.epoch + 2
            && rise > Self::RISE * best.val_loss.abs().max(1.0)
            && last.train_loss < best.train_loss)
            .then_some(Self {
                best: (best.epoch, best.val_loss),
                last: (last.epoch, last.val_loss),
                train: (best.train_loss, last.train_loss),
            })
    }

    /// What a user reads; `restored`: whether the run ended with the best epoch's weights.
    pub fn message(&self, restored: bool) -> String {
        let outcome = if restored {
            format!("the model kept is epoch {}'s", self.best.0)
        } else {
            format!(
                "the model kept is the last epoch's: set training.restore_best = true (or \
                 training.early_stopping_patience) to keep epoch {}'s",
                self.best.0
            )
        };
        format!(
            "validation and training diverge: validation loss rose from {:.4} (epoch {}) to \
             {:.4} (epoch {}) while training loss fell from {:.4} to {:.4}, so the model \
             memorises its training data (more data, augmentation or a smaller model help); {}",
            self.best.1, self.best.0, self.last.1, self.last.0, self.train.0, self.train.1, outcome
        )
    }
}
