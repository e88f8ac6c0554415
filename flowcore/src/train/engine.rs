//! The training loop, for any [`Objective`], one process or one rank of several: [`start`]
//! (resume or initialise, and agree on the start state over the ranks), then per epoch
//! [`Trainer::train_epoch`], [`Trainer::validate`] and [`Trainer::end_epoch`] (early stopping,
//! checkpoints, observers), and [`Trainer::finish`].

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use super::collective::{
    BROADCAST_ORIGIN, average_gradients, decode_start, encode_start, mean_over_ranks,
};
use super::{
    Batch, CheckpointDir, Collective, DataSource, EpochStats, FitOutcome, MaximumLikelihood,
    Objective, Observer, SingleProcess, StepStats, TrainError, TrainState, TrainingConfig,
    bits_per_dim, checkpoints, clip_global_norm, shard,
};
use crate::ode::OdeCounts;
use crate::{Flow, FlowError};

/// Train `flow` by maximum likelihood on `data`: [`fit_objective`] with [`MaximumLikelihood`].
pub fn fit(
    flow: Flow,
    data: &mut dyn DataSource,
    config: &TrainingConfig,
    run_dir: &Path,
    resume: bool,
    device: &Device,
    observers: &mut [&mut dyn Observer],
) -> Result<FitOutcome, TrainError> {
    fit_objective(
        flow,
        &MaximumLikelihood,
        data,
        config,
        run_dir,
        resume,
        device,
        observers,
    )
}

/// Train `flow` to minimise `objective` on `data`, writing checkpoints under `run_dir`. With
/// `resume`, continue from the newest checkpoint there, on the same curve. `device` must be an
/// autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn fit_objective(
    flow: Flow,
    objective: &dyn Objective,
    data: &mut dyn DataSource,
    config: &TrainingConfig,
    run_dir: &Path,
    resume: bool,
    device: &Device,
    observers: &mut [&mut dyn Observer],
) -> Result<FitOutcome, TrainError> {
    fit_data_parallel(
        flow,
        objective,
        data,
        config,
        run_dir,
        resume,
        device,
        observers,
        &SingleProcess,
    )
}

/// [`fit_objective`] as one rank of a data-parallel run over `ranks`: the global batch is
/// `config.batch_size` rows per rank, each rank trains on its rows of it and validates on its
/// share of the validation set, and the loss, the gradients and the validation loss are
/// averaged over the ranks, so that `n` ranks take the steps one process with `n` times the
/// batch would. Rank 0's model, optimizer and trainer state (data-initialised on the first
/// global batch, or loaded to resume) are broadcast before the first step, and rank 0 alone
/// reads and writes checkpoints under `run_dir`; the others never touch it.
#[allow(clippy::too_many_arguments)]
pub fn fit_data_parallel(
    flow: Flow,
    objective: &dyn Objective,
    data: &mut dyn DataSource,
    config: &TrainingConfig,
    run_dir: &Path,
    resume: bool,
    device: &Device,
    observers: &mut [&mut dyn Observer],
    ranks: &dyn Collective,
) -> Result<FitOutcome, TrainError> {
    config.validate()?;
    let flow_dim = check_sizes(&flow, objective, data)?;
    let (mut trainer, mut flow) = start(
        flow, objective, data, config, run_dir, resume, device, ranks, flow_dim,
    )?;
    for epoch in trainer.state.epochs_done + 1..=config.epochs {
        observers
            .iter_mut()
            .for_each(|o| o.on_epoch_start(epoch, config.steps_per_epoch));
        let (train_loss, lr, samples_per_sec);
        let ode = OdeCounts::now();
        (flow, train_loss, lr, samples_per_sec) =
            trainer.train_epoch(flow, epoch, data, observers)?;
        let ode = OdeCounts::now().since(&ode);
        let (val_loss, val_parts) = trainer.validate(&flow, epoch)?;
        let stats = EpochStats {
            epoch,
            loss: objective.name().to_string(),
            train_loss,
            val_loss,
            val_bits_per_dim: trainer.bits_per_dim(val_loss),
            val_parts,
            learning_rate: lr,
            samples_per_sec,
            ode_nfe_per_step: (ode.solves > 0)
                .then(|| ode.nfe as f64 / config.steps_per_epoch as f64),
            best: false,
        };
        if trainer.end_epoch(&flow, stats, observers)? {
            break;
        }
    }
    trainer.finish(flow)
}

/// The features the flow must map for `objective` on `data`, checked against the flow.
fn check_sizes(
    flow: &Flow,
    objective: &dyn Objective,
    data: &dyn DataSource,
) -> Result<usize, TrainError> {
    let (dim, y_dim) = (data.dim(), data.y_dim());
    let flow_dim = objective
        .flow_dim(dim, y_dim)
        .map_err(|e| TrainError::Config(format!("the {} objective: {e}", objective.name())))?;
    if flow_dim != flow.dim() {
        return Err(TrainError::Config(format!(
            "the data have {dim} features{} and the {} objective needs a model of {flow_dim}, \
             but the model maps {}",
            if y_dim > 0 {
                format!(" and {y_dim} observations")
            } else {
                String::new()
            },
            objective.name(),
            flow.dim()
        )));
    }
    let cond_dim = flow.config().cond_dim();
    if cond_dim > 0 && objective.is_likelihood() && cond_dim != y_dim {
        return Err(TrainError::Config(format!(
            "the model takes a condition of {cond_dim} values but the data carry {y_dim} per sample"
        )));
    }
    Ok(flow_dim)
}

/// A run in progress on one rank; the flow it trains passes through its methods.
struct Trainer<'a> {
    objective: &'a dyn Objective,
    config: &'a TrainingConfig,
    device: &'a Device,
    ranks: &'a dyn Collective,
    checkpoints: CheckpointDir,
    optim: ModuleOptimizer,
    state: TrainState,
    /// Features of the data and of their observations.
    sizes: (usize, usize),
    flow_dim: usize,
    /// This rank's share of the validation set, and that share's rows in the whole set.
    validation: Batch,
    val_rows: Range<usize>,
    n_val: usize,
    /// Nats per sample between the model's NLL and that of the discrete data.
    discretization: f64,
    /// The best weights found by this process; after a resume an earlier best is on disk.
    best_flow: Option<Flow>,
    last_checkpoint: Option<PathBuf>,
    stopped_early: bool,
}

/// Resume from the newest checkpoint or initialise from the first global batch, agree on that
/// start state over the ranks, and take this rank's share of the validation set. Returns the
/// trainer and the flow to train.
#[allow(clippy::too_many_arguments)]
fn start<'a>(
    flow: Flow,
    objective: &'a dyn Objective,
    data: &mut dyn DataSource,
    config: &'a TrainingConfig,
    run_dir: &Path,
    resume: bool,
    device: &'a Device,
    ranks: &'a dyn Collective,
    flow_dim: usize,
) -> Result<(Trainer<'a>, Flow), TrainError> {
    let (dim, y_dim) = (data.dim(), data.y_dim());
    let (root, size) = (ranks.is_root(), ranks.size());
    let checkpoints = CheckpointDir::new(run_dir.join("checkpoints"));
    let mut optim = config.optimizer();
    if root && resume {
        checkpoints.recover()?;
    }
    let latest = if root { checkpoints.latest() } else { None };
    let (mut flow, mut state) = match resume.then_some(latest).flatten() {
        Some(dir) => {
            let (flow, optim_state, state) = checkpoints.load(&dir, flow.config(), device)?;
            optim = optim.from_bytes(optim_state).map_err(|e| {
                FlowError::checkpoint(dir.join(checkpoints::OPTIMIZER_FILE), e.to_string())
            })?;
            tracing::info!(checkpoint = %dir.display(), epochs_done = state.epochs_done, "resuming");
            (flow, state)
        }
        None => {
            let first = data
                .train_batch(0, config.batch_size * size)
                .map_err(TrainError::Data)?;
            let (x, y) = first.to_tensors(dim, y_dim, device);
            let (input, cond) = objective.init_input(x, y, config.seed);
            (flow.initialize(input, cond.as_ref()), TrainState::default())
        }
    };
    if size > 1 {
        let mut blob = if root {
            encode_start(&flow, &optim, &state)?
        } else {
            Vec::new()
        };
        ranks.broadcast_bytes(&mut blob, 0);
        if !root {
            let (f, o, s) = decode_start(&blob, flow.config(), device)?;
            optim = optim.from_bytes(o).map_err(|e| {
                FlowError::checkpoint(BROADCAST_ORIGIN, format!("the optimizer state: {e}"))
            })?;
            (flow, state) = (f, s);
        }
    }
    let validation = data.validation().map_err(TrainError::Data)?;
    let n_val = validation.x.len() / dim.max(1);
    if size > 1 && n_val < size {
        return Err(TrainError::Config(format!(
            "the validation set has {n_val} samples, fewer than the {size} ranks"
        )));
    }
    let val_rows = shard(n_val, ranks.rank(), size);
    let validation = if size > 1 {
        validation.rows(val_rows.start, val_rows.len(), dim, y_dim)
    } else {
        validation
    };
    let last_checkpoint = checkpoints.latest();
    let trainer = Trainer {
        objective,
        config,
        device,
        ranks,
        checkpoints,
        optim,
        state,
        sizes: (dim, y_dim),
        flow_dim,
        validation,
        val_rows,
        n_val,
        discretization: data.discretization_nats(),
        best_flow: None,
        last_checkpoint,
        stopped_early: false,
    };
    Ok((trainer, flow))
}

impl Trainer<'_> {
    fn bits_per_dim(&self, loss: f64) -> Option<f64> {
        self.objective
            .is_likelihood()
            .then(|| bits_per_dim(loss + self.discretization, self.flow_dim))
    }

    fn non_finite(&self, what: &'static str, value: f64, epoch: usize, step: u64) -> TrainError {
        TrainError::NonFinite {
            what,
            value,
            epoch,
            step,
            checkpoint: self.last_checkpoint.clone(),
            cause: crate::ode::take_failure(),
        }
    }

    /// One epoch of optimizer steps: the flow after them, the mean training loss, the last
    /// learning rate and the samples per second.
    fn train_epoch(
        &mut self,
        mut flow: Flow,
        epoch: usize,
        data: &mut dyn DataSource,
        observers: &mut [&mut dyn Observer],
    ) -> Result<(Flow, f64, f64, f64), TrainError> {
        let config = self.config;
        let (dim, y_dim) = self.sizes;
        let size = self.ranks.size();
        let global_batch = config.batch_size * size;
        let rank = self.ranks.rank();
        let my_rows = rank * config.batch_size..(rank + 1) * config.batch_size;
        let started = Instant::now();
        let mut loss_sum = 0.0;
        let mut lr = config.learning_rate;
        for s in 1..=config.steps_per_epoch {
            let step = self.state.step + 1;
            let batch = if size > 1 {
                data.train_rows(step, global_batch, my_rows.clone())
            } else {
                data.train_batch(step, config.batch_size)
            }
            .map_err(TrainError::Data)?;
            let (x, y) = batch.to_tensors(dim, y_dim, self.device);
            let loss = self.objective.loss(&flow, x, y, config.seed, step);
            // The loss and its parts, averaged over the ranks: every rank sees the same values,
            // so a NaN on one stops them all at the same step.
            let mut scalars: Vec<f64> = std::iter::once(&loss.total)
                .chain(loss.parts.iter().map(|(_, v)| v))
                .map(|t| t.clone().into_scalar::<f64>())
                .collect();
            mean_over_ranks(self.ranks, &mut scalars);
            let loss_value = scalars[0];
            if !loss_value.is_finite() {
                return Err(self.non_finite("loss", loss_value, epoch, step));
            }
            let parts: Vec<(String, f64)> = loss
                .parts
                .iter()
                .zip(&scalars[1..])
                .map(|((k, _), v)| (k.to_string(), *v))
                .collect();
            let grads = GradientsParams::from_grads(loss.total.backward(), &flow);
            let grads = average_gradients(&flow, grads, self.ranks);
            let max_norm = (config.clip_grad_norm > 0.0).then_some(config.clip_grad_norm);
            let (grads, norm, clipped) = clip_global_norm(&flow, grads, max_norm);
            if !norm.is_finite() {
                return Err(self.non_finite("gradient norm", norm, epoch, step));
            }
            lr = config
                .schedule
                .rate(config.learning_rate, self.state.step, &self.state.schedule);
            flow = self.optim.step(lr, flow, grads);
            self.state.step = step;
            loss_sum += loss_value;
            let stats = StepStats {
                epoch,
                step_in_epoch: s,
                step,
                loss: loss_value,
                bits_per_dim: self.bits_per_dim(loss_value),
                parts,
                learning_rate: lr,
                grad_norm: norm,
                grad_norm_clipped: clipped,
                samples_per_sec: (s * global_batch) as f64 / started.elapsed().as_secs_f64(),
            };
            observers.iter_mut().for_each(|o| o.on_step(&stats));
        }
        let samples_per_sec =
            (config.steps_per_epoch * global_batch) as f64 / started.elapsed().as_secs_f64();
        Ok((
            flow,
            loss_sum / config.steps_per_epoch as f64,
            lr,
            samples_per_sec,
        ))
    }

    /// The validation loss and its parts, over every rank's share, weighted by share.
    fn validate(&self, flow: &Flow, epoch: usize) -> Result<(f64, Vec<(String, f64)>), TrainError> {
        let (dim, y_dim) = self.sizes;
        let (mut val_loss, mut val_parts) = self.objective.validate(
            &flow.valid(),
            &self.validation,
            dim,
            y_dim,
            &self.device.clone().inner(),
        );
        if self.ranks.size() > 1 {
            let weight = self.val_rows.len() as f64 / self.n_val as f64;
            let mut values: Vec<f64> = std::iter::once(val_loss)
                .chain(val_parts.iter().map(|(_, v)| *v))
                .map(|v| v * weight)
                .collect();
            self.ranks.all_reduce_sum_f64(&mut values);
            val_loss = values[0];
            for ((_, v), sum) in val_parts.iter_mut().zip(&values[1..]) {
                *v = *sum;
            }
        }
        if !val_loss.is_finite() {
            return Err(self.non_finite("validation loss", val_loss, epoch, self.state.step));
        }
        Ok((val_loss, val_parts))
    }

    /// Keep the best weights, decide on early stopping, write the checkpoints that are due and
    /// report the epoch; whether training stops here.
    fn end_epoch(
        &mut self,
        flow: &Flow,
        mut stats: EpochStats,
        observers: &mut [&mut dyn Observer],
    ) -> Result<bool, TrainError> {
        let config = self.config;
        let (epoch, val_loss) = (stats.epoch, stats.val_loss);
        let state = &mut self.state;
        config.schedule.on_epoch_end(val_loss, &mut state.schedule);
        let improved = val_loss < state.best_val - config.early_stopping_min_delta;
        if val_loss < state.best_val {
            state.best_val = val_loss;
            state.best_epoch = epoch;
            // A copy of its own: a clone would share batch normalisation's running statistics,
            // which later steps move.
            self.best_flow = Some(flow.valid());
        }
        state.bad_epochs = if improved { 0 } else { state.bad_epochs + 1 };
        state.epochs_done = epoch;
        stats.best = state.best_epoch == epoch;
        state.history.push(stats.clone());
        let patience = config.early_stopping_patience;
        self.stopped_early = patience > 0 && state.bad_epochs >= patience;
        let due =
            epoch % config.checkpoint_every == 0 || epoch == config.epochs || self.stopped_early;
        if self.ranks.is_root() {
            // `best` before the epoch: a kill while `best` is written then leaves no checkpoint
            // of this epoch, so the resume trains the epoch again and writes `best` again,
            // instead of going on past it with a `best` of an older epoch.
            if stats.best {
                self.checkpoints.save_best(flow, &self.optim, &self.state)?;
            }
            if due {
                let dir = self
                    .checkpoints
                    .save_epoch(epoch, flow, &self.optim, &self.state)?;
                self.checkpoints.prune(config.keep_last)?;
                self.last_checkpoint = Some(dir);
            }
        }
        observers.iter_mut().for_each(|o| o.on_epoch_end(&stats));
        if self.stopped_early {
            tracing::info!(epoch, best_epoch = self.state.best_epoch, "early stopping");
        }
        Ok(self.stopped_early)
    }

    /// The outcome: with early stopping or `restore_best`, the best weights (from this
    /// process, or the `best` checkpoint of a resumed run), else the last.
    fn finish(self, mut flow: Flow) -> Result<FitOutcome, TrainError> {
        let restored = self.config.restores_best();
        if restored {
            flow = match self.best_flow {
                Some(best) => best.train(),
                // Only rank 0 has the checkpoints; the other ranks' flows are not used after.
                None if !self.ranks.is_root() => flow,
                None => match self.checkpoints.load_best(flow.config(), self.device)? {
                    Some((best, _, _)) => best,
                    None => flow,
                },
            };
        }
        Ok(FitOutcome {
            flow,
            history: self.state.history.clone(),
            stopped_early: self.stopped_early,
            restored_best: restored,
            best: (self.state.best_val, self.state.best_epoch),
            ranks: self.ranks.size(),
        })
    }
}
