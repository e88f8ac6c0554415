//! Applications 5, 6 and 7: inverse problems with an invertible network. A forward simulator
//! (robot arm, glacier gravity, seismic traces) gives endless `(x, y)` pairs; an INN on a
//! latent [`Partition`] (Ardizzone et al. 2019) or a conditional flow `p(x | y)` (cINN) learns
//! the posterior, and the run is judged against reference posteriors from rejection sampling:
//! posterior MMD, re-simulation error and calibration.
//!
//! `train_flowmodelsN [train] [--method inn|cinn]`, `train_flowmodelsN posterior --run RUN_DIR
//! --y VALUES --n N`, and `train_flowmodelsN compare`, which trains both methods and prints a
//! table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use flowcore::checkpoint::{load_flow, save_flow};
use flowcore::inn::{ConditionalObjective, InnLossConfig, InnObjective, mmd_imq_host};
use flowcore::train::{Batch, DataSource, EpochStats, Objective, TrainingConfig};
use flowcore::{ArchitectureConfig, BaseConfig, Flow, Partition};
use flowdata::batch_rng;
use flowdata::inverse::{
    Glacier, JointSample, RobotArm, Seismic, Simulator, draw, rejection_posterior,
};
use serde::{Deserialize, Serialize};

use crate::config::{from_table, group, resolve_options};
use crate::infer::to_vec;
use crate::plot::{Panel, Series, histogram_outline, history_curves, panels};
use crate::run::{RunPlace, TrainOptions, close_run, fit_tracked, open_run};

/// Kernel widths of the evaluation MMD, on standardised parameters: wider than the training
/// kernels, so that the MMD sees the whole posterior rather than its fine structure.
pub const EVAL_WIDTHS: [f64; 4] = [0.2, 0.5, 1.0, 2.0];

/// Credible levels of the calibration check.
pub const LEVELS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Which inverse problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Application 5: the robot arm (parameter estimation, ill-conditioned).
    RobotArm,
    /// Application 6: glacier bedrock from surface gravity (ill-posed, no noise).
    Glacier,
    /// Application 7: layered velocities from a noisy seismogram (ill-posed, with noise).
    Seismic,
}

impl Problem {
    /// The binary, used as the `app` tag.
    pub fn app(self) -> &'static str {
        match self {
            Self::RobotArm => "train_flowmodels5",
            Self::Glacier => "train_flowmodels6",
            Self::Seismic => "train_flowmodels7",
        }
    }

    /// The embedded default config, `apps/configs/appN.toml`.
    pub fn default_config(self) -> &'static str {
        match self {
            Self::RobotArm => include_str!("../configs/app5.toml"),
            Self::Glacier => include_str!("../configs/app6.toml"),
            Self::Seismic => include_str!("../configs/app7.toml"),
        }
    }

    /// Its forward simulator.
    pub fn simulator(self) -> Box<dyn Simulator> {
        match self {
            Self::RobotArm => Box::new(RobotArm),
            Self::Glacier => Box::new(Glacier::default()),
            Self::Seismic => Box::new(Seismic::default()),
        }
    }

    /// A title for figures.
    pub fn title(self) -> &'static str {
        match self {
            Self::RobotArm => "robot arm",
            Self::Glacier => "glacier bedrock from gravity",
            Self::Seismic => "layered earth from a noisy seismogram",
        }
    }
}

/// INN or cINN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The INN on the partition, trained with the objective of Ardizzone et al.
    Inn,
    /// A flow over `x` conditioned on `y`, trained by maximum likelihood.
    Cinn,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Self::Inn => "INN",
            Self::Cinn => "cINN",
        }
    }
}

/// The `[run]` group.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// Run directories are `output_dir/<name>-<timestamp>`.
    pub name: String,
    /// Where run directories go.
    pub output_dir: PathBuf,
    /// The local MLflow store.
    pub tracking_dir: PathBuf,
    /// MLflow experiment name.
    pub experiment: String,
    /// `inn` or `cinn`.
    pub method: Method,
    /// The INN's two sides, e.g. `[x:4 | pad:2] -> [y:2 | z:2 | pad:2]`; the data and
    /// observation blocks must match the simulator.
    pub partition: String,
    /// Validation pairs (drawn once).
    pub validation_size: usize,
    /// Prior draws that set the standardisation of `x` and `y`.
    pub normalization_draws: usize,
    /// Test observations whose posteriors are compared with the reference.
    pub test_observations: usize,
    /// Posterior samples per test observation.
    pub posterior_samples: usize,
    /// Joint draws the reference posteriors are selected from.
    pub reference_draws: usize,
    /// Reference samples kept per observation.
    pub reference_keep: usize,
    /// `(x, y)` pairs of the calibration check.
    pub calibration_pairs: usize,
    /// Posterior samples per calibration pair.
    pub calibration_samples: usize,
    /// Log step metrics every this many steps.
    pub log_every: u64,
}

/// The whole config of applications 5 to 7.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InverseConfig {
    /// Run, data and evaluation settings.
    pub run: RunGroup,
    /// The INN objective (used by `method = "inn"`).
    #[serde(default)]
    pub inn: InnLossConfig,
    /// The training engine.
    pub training: TrainingConfig,
    /// The flow; `dim` (and `cond_dim` for the cINN) come from the problem.
    pub model: ArchitectureConfig,
}

/// Per-column mean and standard deviation of `x` and `y` under the prior: the networks see
/// standardised values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each parameter.
    pub x_mean: Vec<f64>,
    /// Standard deviation of each parameter.
    pub x_std: Vec<f64>,
    /// Mean of each observation.
    pub y_mean: Vec<f64>,
    /// Standard deviation of each observation.
    pub y_std: Vec<f64>,
}

fn moments(values: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (values.len() / dim).max(1) as f64;
    let mut mean = vec![0.0; dim];
    for row in values.chunks(dim) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n);
    }
    let mut var = vec![0.0; dim];
    for row in values.chunks(dim) {
        var.iter_mut()
            .zip(row.iter().zip(&mean))
            .for_each(|(s, (v, m))| *s += (v - m).powi(2) / n);
    }
    (mean, var.into_iter().map(|v| v.sqrt().max(1e-12)).collect())
}

fn to_unit(values: &[f64], mean: &[f64], std: &[f64]) -> Vec<f32> {
    values
        .chunks(mean.len())
        .flat_map(|r| {
            r.iter()
                .zip(mean.iter().zip(std))
                .map(|(v, (m, s))| ((v - m) / s) as f32)
        })
        .collect()
}

fn from_unit(values: &[f32], mean: &[f64], std: &[f64]) -> Vec<f64> {
    values
        .chunks(mean.len())
        .flat_map(|r| {
            r.iter()
                .zip(mean.iter().zip(std))
                .map(|(v, (m, s))| f64::from(*v) * s + m)
        })
        .collect()
}

impl Normalization {
    /// From joint draws.
    pub fn from_joint(joint: &JointSample) -> Self {
        let (x_mean, x_std) = moments(&joint.x, joint.x_dim);
        let (y_mean, y_std) = moments(&joint.y, joint.y_dim);
        Self {
            x_mean,
            x_std,
            y_mean,
            y_std,
        }
    }

    /// Parameters to standard units.
    pub fn x_to_unit(&self, x: &[f64]) -> Vec<f32> {
        to_unit(x, &self.x_mean, &self.x_std)
    }

    /// Parameters back from standard units.
    pub fn x_from_unit(&self, x: &[f32]) -> Vec<f64> {
        from_unit(x, &self.x_mean, &self.x_std)
    }

    /// Observations to standard units.
    pub fn y_to_unit(&self, y: &[f64]) -> Vec<f32> {
        to_unit(y, &self.y_mean, &self.y_std)
    }
}

/// What a run saves besides its model, so that `posterior` can use it alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProblemFile {
    /// The problem.
    pub problem: Problem,
    /// INN or cINN.
    pub method: Method,
    /// The INN's partition.
    pub partition: String,
    /// Parameter names.
    pub x_names: Vec<String>,
    /// Observation names.
    pub y_names: Vec<String>,
    /// The standardisation.
    pub normalization: Normalization,
}

/// The simulator's pairs as training data: rows `[x | eps]` standardised, with `y`
/// standardised; fresh for every step.
struct Simulated<'a> {
    sim: &'a dyn Simulator,
    norm: &'a Normalization,
    seed: u64,
    validation_size: usize,
}

impl Simulated<'_> {
    fn pairs(&self, n: usize, rng: &mut dyn rand::RngCore) -> Batch {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let d = draw(self.sim, rng);
            x.extend(self.norm.x_to_unit(&d.x));
            x.extend(d.eps.iter().map(|e| *e as f32));
            y.extend(self.norm.y_to_unit(&d.y));
        }
        Batch { x, y }
    }
}

impl DataSource for Simulated<'_> {
    fn dim(&self) -> usize {
        self.sim.x_dim() + noise_dim(self.sim)
    }

    fn y_dim(&self) -> usize {
        self.sim.y_dim()
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        Ok(self.pairs(batch_size, &mut batch_rng(self.seed, step)))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        let mut rng = batch_rng(self.seed ^ 0x5A5A_5A5A, u64::MAX - 1);
        Ok(self.pairs(self.validation_size, &mut rng))
    }
}

fn noise_dim(sim: &dyn Simulator) -> usize {
    if sim.noise_std() > 0.0 {
        sim.y_dim()
    } else {
        0
    }
}

/// One test observation's posterior against the reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PosteriorCheck {
    /// The true parameters.
    pub x_true: Vec<f64>,
    /// The observation.
    pub y: Vec<f64>,
    /// Squared MMD between the learnt and the reference posterior (standardised `x`).
    pub mmd: f64,
    /// The same for the prior: the baseline.
    pub prior_mmd: f64,
    /// RMS of `(F(x) - y) / y_std` over the learnt posterior's samples.
    pub resimulation_error: f64,
    /// Reference samples accepted.
    pub reference_accepted: usize,
    /// The reference's acceptance distance (noise-free problems), in units of `y_std`.
    pub reference_tolerance: Option<f64>,
}

/// How good the learnt posteriors are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean posterior MMD to the reference over the test observations.
    pub mmd: f64,
    /// Mean prior MMD to the reference.
    pub prior_mmd: f64,
    /// `mmd / prior_mmd`: below 1 the posterior is closer than the prior.
    pub mmd_ratio: f64,
    /// Mean re-simulation error, in units of `y_std`.
    pub resimulation_error: f64,
    /// The re-simulation error the measurement noise alone causes (0 without noise).
    pub noise_floor: f64,
    /// Mean |coverage - level| over the credible levels.
    pub calibration_error: f64,
    /// `(level, coverage)` of central credible intervals, over parameters and pairs.
    pub coverage: Vec<(f64, f64)>,
    /// Posterior samples drawn per second.
    pub samples_per_sec: f64,
    /// Per test observation.
    pub checks: Vec<PosteriorCheck>,
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The problem.
    pub problem: Problem,
    /// INN or cINN.
    pub method: Method,
    /// The INN's partition.
    pub partition: String,
    /// The final validation loss.
    pub val_loss: f64,
    /// Its name.
    pub loss: String,
    /// The posteriors against the reference.
    pub evaluation: Evaluation,
    /// Optimizer steps per second.
    pub steps_per_sec: f64,
    /// Wall time of training, seconds.
    pub train_seconds: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Per-epoch statistics.
    pub history: Vec<EpochStats>,
    /// Figures, relative to the run directory.
    pub figures: Vec<String>,
    /// The local tracking run.
    pub tracking_run: PathBuf,
    /// The run on the tracking server, if any.
    pub remote_run_id: Option<String>,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

/// A trained posterior: the flow and what it needs to sample.
pub struct Posterior {
    flow: Flow,
    method: Method,
    inn: InnObjective,
    cinn: ConditionalObjective,
    norm: Normalization,
    device: Device,
}

impl Posterior {
    fn new(flow: Flow, file: &ProblemFile, partition: Partition) -> Self {
        let inn = InnObjective {
            partition,
            config: InnLossConfig::default(),
        };
        let cinn = ConditionalObjective {
            x_dim: inn.x_dim(),
            noise_dim: inn.noise_dim(),
        };
        Self {
            flow,
            method: file.method,
            inn,
            cinn,
            norm: file.normalization.clone(),
            device: crate::run::device(),
        }
    }

    /// `n` samples of `p(x | y)` in the problem's units, row-major.
    pub fn sample(&self, y: &[f64], n: usize, seed: u64) -> Vec<f64> {
        let y_unit = self.norm.y_to_unit(y);
        let x = match self.method {
            Method::Inn => self
                .inn
                .posterior(&self.flow, &y_unit, n, seed, &self.device),
            Method::Cinn => self
                .cinn
                .posterior(&self.flow, &y_unit, n, seed, &self.device),
        };
        self.norm.x_from_unit(&to_vec(x.into_data()))
    }
}

fn parse_partition(text: &str, sim: &dyn Simulator) -> Result<Partition> {
    use flowcore::{Role, Side};
    let p: Partition = text
        .parse()
        .map_err(|e| anyhow::anyhow!("run.partition: {e}"))?;
    let (dx, dy, de) = (sim.x_dim(), sim.y_dim(), noise_dim(sim));
    let (px, py, pe) = (
        p.role_size(Side::Input, Role::Data),
        p.role_size(Side::Output, Role::Observation),
        p.role_size(Side::Input, Role::Noise),
    );
    if (px, py, pe) != (dx, dy, de) {
        bail!(
            "run.partition `{p}` has {px} data, {pe} noise and {py} observation dimensions, but \
             this problem has {dx} parameters, {de} noise values and {dy} observations"
        );
    }
    Ok(p)
}

/// Resolve the config: defaults, file, overrides; `model.dim` (and `model.cond_dim`) from the
/// problem and the method.
fn resolve(
    problem: Problem,
    opts: &TrainOptions,
) -> Result<(InverseConfig, toml::Table, Partition)> {
    let (mut table, origin) = resolve_options(problem.default_config(), opts)?;
    let run: RunGroup = group(&table, "run", &origin)?;
    let sim = problem.simulator();
    let partition = parse_partition(&run.partition, sim.as_ref())?;
    if let Some(toml::Value::Table(model)) = table.get_mut("model")
        && model.get("kind").and_then(|k| k.as_str()) == Some("real_nvp_dense")
    {
        let (dim, cond) = match run.method {
            Method::Inn => (partition.dim(), 0),
            Method::Cinn => (sim.x_dim(), sim.y_dim()),
        };
        model
            .entry("dim")
            .or_insert(toml::Value::Integer(dim as i64));
        model
            .entry("cond_dim")
            .or_insert(toml::Value::Integer(cond as i64));
    }
    let config: InverseConfig = from_table(&table, &origin, "")?;
    config
        .inn
        .validate()
        .map_err(|e| anyhow::anyhow!("{origin}: inn.{e}"))?;
    Ok((config, table, partition))
}

/// Train one method on one problem as configured; everything goes into the run directory and
/// tracking.
pub fn train(problem: Problem, opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::one_process(opts, problem.app())?;
    let (config, table, partition) = resolve(problem, opts)?;
    let sim = problem.simulator();
    let (run_dir, mut tracker) = open_run(
        opts,
        RunPlace {
            output_dir: &config.run.output_dir,
            name: &config.run.name,
            tracking_dir: &config.run.tracking_dir,
            experiment: &config.run.experiment,
            log_every: config.run.log_every,
        },
        problem.app(),
        &table,
        vec![
            ("method".into(), config.run.method.name().into()),
            ("partition".into(), partition.to_string()),
        ],
    )?;
    let seed = config.training.seed;
    let norm = Normalization::from_joint(&JointSample::draw(
        sim.as_ref(),
        config.run.normalization_draws.max(2),
        seed ^ 0x4E4F_524D,
    ));
    let file = ProblemFile {
        problem,
        method: config.run.method,
        partition: partition.to_string(),
        x_names: sim.x_names(),
        y_names: sim.y_names(),
        normalization: norm.clone(),
    };
    flowcore::checkpoint::write_atomic(
        &run_dir.join("problem.json"),
        serde_json::to_string_pretty(&file)?.as_bytes(),
    )?;
    tracing::info!(
        "run {} ({}, {}): {} on {partition}, {} x {} steps of batch {}",
        run_dir.display(),
        problem.title(),
        problem.app(),
        config.run.method.name(),
        config.training.epochs,
        config.training.steps_per_epoch,
        config.training.batch_size
    );
    let mut data = Simulated {
        sim: sim.as_ref(),
        norm: &norm,
        seed,
        validation_size: config.run.validation_size.max(2),
    };
    let inn = InnObjective {
        partition: partition.clone(),
        config: config.inn.clone(),
    };
    let cinn = ConditionalObjective {
        x_dim: inn.x_dim(),
        noise_dim: inn.noise_dim(),
    };
    let objective: &dyn Objective = match config.run.method {
        Method::Inn => &inn,
        Method::Cinn => &cinn,
    };
    let started = Instant::now();
    let result = fit_tracked(
        &config.model,
        &BaseConfig::default(),
        objective,
        &mut data,
        &config.training,
        &run_dir,
        opts,
        &mut tracker,
        &flowcore::train::SingleProcess,
    )
    .and_then(|outcome| {
        let train_seconds = started.elapsed().as_secs_f64();
        let flow = outcome.flow.valid();
        save_flow(
            &flow,
            &run_dir.join("model.safetensors"),
            serde_json::json!({ "app": problem.app(), "method": config.run.method }),
        )?;
        tracker.log_artifact(&run_dir.join("problem.json"), Some("report"));
        let posterior = Posterior::new(flow, &file, partition.clone());
        report(
            problem,
            &config,
            &run_dir,
            &posterior,
            &outcome,
            train_seconds,
            &mut tracker,
        )
    });
    let report = close_run(tracker, &run_dir, result, |r, local, remote| {
        r.tracking_run = local;
        r.remote_run_id = remote;
    })?;
    Ok(TrainSummary { run_dir, report })
}

/// The RMS of `(F(x_s) - y) / y_std` over samples `xs` (row-major).
fn resimulation_error(sim: &dyn Simulator, xs: &[f64], y: &[f64], norm: &Normalization) -> f64 {
    let dx = sim.x_dim();
    let mut total = 0.0;
    let mut count = 0usize;
    for x in xs.chunks(dx) {
        for ((f, o), s) in sim.simulate(x).iter().zip(y).zip(&norm.y_std) {
            total += ((f - o) / s).powi(2);
            count += 1;
        }
    }
    (total / count.max(1) as f64).sqrt()
}

/// A test observation's check with the samples it compared, for figures.
pub struct CheckedPosterior {
    /// The check.
    pub check: PosteriorCheck,
    /// The learnt posterior's samples, row-major.
    pub samples: Vec<f64>,
    /// The reference samples, row-major.
    pub reference: Vec<f64>,
}

/// Judge `posterior` against rejection-sampling references and for calibration.
pub fn evaluate(
    problem: Problem,
    run: &RunGroup,
    posterior: &Posterior,
    seed: u64,
) -> Result<(Evaluation, Vec<CheckedPosterior>)> {
    let sim = problem.simulator();
    let sim = sim.as_ref();
    let norm = &posterior.norm;
    let dx = sim.x_dim();
    let eval_seed = seed ^ 0xE7A1;
    let started = Instant::now();
    let joint = JointSample::draw(sim, run.reference_draws.max(1), eval_seed);
    tracing::info!(
        "{} joint draws for the reference posteriors in {:.1} s",
        joint.len(),
        started.elapsed().as_secs_f64()
    );
    let mut rng = batch_rng(eval_seed, 1);
    let mut checks = Vec::new();
    let n = run.posterior_samples.max(2);
    let mut sampling_time = 0.0;
    let mut sampled = 0usize;
    for k in 0..run.test_observations {
        let truth = draw(sim, &mut rng);
        let reference = rejection_posterior(
            sim,
            &joint,
            &truth.y,
            &norm.y_std,
            run.reference_keep.max(2),
            &mut rng,
        );
        if reference.accepted < 10 {
            tracing::warn!(
                "test observation {k}: only {} reference samples were accepted; draw more with \
                 run.reference_draws",
                reference.accepted
            );
        }
        let t = Instant::now();
        let samples = posterior.sample(&truth.y, n, eval_seed.wrapping_add(k as u64));
        sampling_time += t.elapsed().as_secs_f64();
        sampled += n;
        let unit = |x: &[f64]| norm.x_to_unit(x);
        let reference_unit = unit(&reference.x);
        let prior: Vec<f64> = (0..n).flat_map(|_| sim.sample_prior(&mut rng)).collect();
        let check = PosteriorCheck {
            mmd: mmd_imq_host(&unit(&samples), &reference_unit, dx, &EVAL_WIDTHS),
            prior_mmd: mmd_imq_host(&unit(&prior), &reference_unit, dx, &EVAL_WIDTHS),
            resimulation_error: resimulation_error(sim, &samples, &truth.y, norm),
            reference_accepted: reference.accepted,
            reference_tolerance: reference.tolerance,
            x_true: truth.x,
            y: truth.y,
        };
        tracing::info!(
            "test observation {k}: posterior MMD {:.4} (prior {:.4}), re-simulation error {:.4}, \
             {} reference samples",
            check.mmd,
            check.prior_mmd,
            check.resimulation_error,
            check.reference_accepted
        );
        checks.push(CheckedPosterior {
            check,
            samples,
            reference: reference.x,
        });
    }

    // Calibration: the rank of the true value among posterior samples, per parameter.
    let mut inside = vec![0usize; LEVELS.len()];
    let mut total = 0usize;
    let m = run.calibration_samples.max(2);
    for p in 0..run.calibration_pairs {
        let truth = draw(sim, &mut rng);
        let t = Instant::now();
        let samples = posterior.sample(&truth.y, m, eval_seed ^ (p as u64 + 1) << 20);
        sampling_time += t.elapsed().as_secs_f64();
        sampled += m;
        for (d, x_true) in truth.x.iter().enumerate() {
            let below = samples.chunks(dx).filter(|s| s[d] < *x_true).count();
            let u = below as f64 / m as f64;
            for (i, level) in LEVELS.iter().enumerate() {
                if (u - 0.5).abs() <= level / 2.0 {
                    inside[i] += 1;
                }
            }
            total += 1;
        }
    }
    let coverage: Vec<(f64, f64)> = LEVELS
        .iter()
        .zip(&inside)
        .map(|(l, c)| (*l, *c as f64 / total.max(1) as f64))
        .collect();
    let calibration_error =
        coverage.iter().map(|(l, c)| (c - l).abs()).sum::<f64>() / coverage.len() as f64;
    let mean = |f: &dyn Fn(&PosteriorCheck) -> f64| {
        checks.iter().map(|c| f(&c.check)).sum::<f64>() / checks.len().max(1) as f64
    };
    let (mmd, prior_mmd) = (mean(&|c| c.mmd), mean(&|c| c.prior_mmd));
    let sigma = sim.noise_std();
    let noise_floor = if sigma > 0.0 {
        (norm.y_std.iter().map(|s| (sigma / s).powi(2)).sum::<f64>() / norm.y_std.len() as f64)
            .sqrt()
    } else {
        0.0
    };
    Ok((
        Evaluation {
            mmd,
            prior_mmd,
            mmd_ratio: mmd / prior_mmd.max(1e-12),
            resimulation_error: mean(&|c| c.resimulation_error),
            noise_floor,
            calibration_error,
            coverage,
            samples_per_sec: sampled as f64 / sampling_time.max(1e-9),
            checks: checks.iter().map(|c| c.check.clone()).collect(),
        },
        checks,
    ))
}

fn report(
    problem: Problem,
    config: &InverseConfig,
    run_dir: &Path,
    posterior: &Posterior,
    outcome: &flowcore::train::FitOutcome,
    train_seconds: f64,
    tracker: &mut flowcore::tracking::Tracker,
) -> Result<Report> {
    let (evaluation, checks) = evaluate(problem, &config.run, posterior, config.training.seed)?;
    let mut figures = Vec::new();
    let last = outcome.history.last();
    let loss = last.map_or_else(|| "loss".to_string(), |e| e.loss.clone());
    history_curves(
        &run_dir.join("loss.png"),
        &format!("{} loss per epoch", config.run.method.name()),
        &outcome.history,
    )?;
    figures.push("loss.png".to_string());
    calibration_figure(&run_dir.join("calibration.png"), &evaluation)?;
    figures.push("calibration.png".to_string());
    let sim = problem.simulator();
    for (k, c) in checks.iter().enumerate().take(2) {
        let file = format!("posterior_{k}.png");
        posterior_figure(
            problem,
            sim.as_ref(),
            &run_dir.join(&file),
            config.run.method,
            c,
        )?;
        figures.push(file);
    }
    for f in &figures {
        tracker.log_artifact(&run_dir.join(f), Some("plots"));
    }
    let steps = (outcome.history.len() * config.training.steps_per_epoch) as u64;
    let steps_per_sec = outcome.steps_per_sec(config.training.batch_size);
    for (k, v) in [
        ("posterior_mmd", evaluation.mmd),
        ("prior_mmd", evaluation.prior_mmd),
        ("mmd_ratio", evaluation.mmd_ratio),
        ("resimulation_error", evaluation.resimulation_error),
        ("calibration_error", evaluation.calibration_error),
        ("posterior_samples_per_sec", evaluation.samples_per_sec),
    ] {
        tracker.log_metric(k, v, steps);
    }
    tracker.flush();
    tracing::info!(
        "{}: posterior MMD {:.4} (prior {:.4}, ratio {:.3}), re-simulation error {:.4} \
         (noise floor {:.4}), calibration error {:.4}",
        config.run.method.name(),
        evaluation.mmd,
        evaluation.prior_mmd,
        evaluation.mmd_ratio,
        evaluation.resimulation_error,
        evaluation.noise_floor,
        evaluation.calibration_error
    );
    Ok(Report {
        problem,
        method: config.run.method,
        partition: config.run.partition.clone(),
        val_loss: last.map_or(f64::NAN, |e| e.val_loss),
        loss,
        evaluation,
        steps_per_sec,
        train_seconds,
        epochs: outcome.history.len(),
        history: outcome.history.clone(),
        figures,
        tracking_run: PathBuf::new(),
        remote_run_id: None,
    })
}

fn calibration_figure(path: &Path, e: &Evaluation) -> Result<()> {
    let diagonal = vec![vec![(0.0, 0.0), (1.0, 1.0)]];
    let measured: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(e.coverage.iter().copied())
        .chain(std::iter::once((1.0, 1.0)))
        .collect();
    let mut panel = Panel::new(
        format!("calibration error {:.3}", e.calibration_error),
        "credible level",
        "coverage",
        vec![
            Series::new(diagonal, None).faint(0.5).label("ideal"),
            Series::new(vec![measured.clone()], Some(0)).label("measured"),
            Series::new(vec![measured], Some(0)).markers(),
        ],
    );
    panel.x_range = Some(0.0..1.0);
    panel.y_range = Some(0.0..1.0);
    panels(
        path,
        "coverage of central credible intervals",
        &[panel],
        1,
        (560, 520),
    )
}

fn posterior_figure(
    problem: Problem,
    sim: &dyn Simulator,
    path: &Path,
    method: Method,
    checked: &CheckedPosterior,
) -> Result<()> {
    let (check, samples, reference) = (&checked.check, &checked.samples, &checked.reference);
    let dx = sim.x_dim();
    let shown =
        |xs: &[f64]| -> Vec<Vec<f64>> { xs.chunks(dx).take(300).map(<[f64]>::to_vec).collect() };
    let caption = format!(
        "{}: {} posterior (MMD {:.4}) and the rejection-sampling reference",
        problem.title(),
        method.name(),
        check.mmd
    );
    match problem {
        Problem::RobotArm => {
            let arms = |xs: &[f64], color| {
                let lines = shown(xs)
                    .iter()
                    .map(|x| RobotArm::joints(x).to_vec())
                    .collect();
                Series::new(lines, Some(color)).faint(0.15)
            };
            let target = Series::new(vec![vec![(check.y[0], check.y[1])]], None)
                .markers()
                .label("observed end point");
            let truth =
                Series::new(vec![RobotArm::joints(&check.x_true).to_vec()], None).label("true arm");
            let mut figure = vec![
                Panel::new(
                    format!("{} samples", method.name()),
                    "horizontal",
                    "vertical",
                    vec![arms(samples, 0).label("sampled arms"), truth, target],
                ),
                Panel::new(
                    "rejection sampling",
                    "horizontal",
                    "vertical",
                    vec![
                        arms(reference, 2).label("accepted arms"),
                        Series::new(vec![vec![(check.y[0], check.y[1])]], None).markers(),
                    ],
                ),
            ];
            Panel::share_ranges(&mut figure);
            panels(path, &caption, &figure, 2, (560, 560))
        }
        Problem::Glacier => {
            let glacier = Glacier::default();
            let half = 0.5 * glacier.width;
            let profile = |x: &[f64]| -> Vec<(f64, f64)> {
                (0..=80)
                    .map(|i| {
                        let u = -half + glacier.width * i as f64 / 80.0;
                        (u, -glacier.depth_at(x, u))
                    })
                    .collect()
            };
            let bundle = |xs: &[f64], color| {
                Series::new(shown(xs).iter().map(|x| profile(x)).collect(), Some(color)).faint(0.12)
            };
            let truth = || Series::new(vec![profile(&check.x_true)], None).label("true bed");
            let stations = || {
                Series::new(
                    vec![glacier.stations.iter().map(|s| (*s, 0.0)).collect()],
                    Some(1),
                )
                .markers()
                .label("stations")
            };
            let mut figure = vec![
                Panel::new(
                    format!("{} samples", method.name()),
                    "across the valley (m)",
                    "bed below the ice surface (m)",
                    vec![
                        bundle(samples, 0).label("sampled beds"),
                        truth(),
                        stations(),
                    ],
                ),
                Panel::new(
                    "rejection sampling",
                    "across the valley (m)",
                    "bed below the ice surface (m)",
                    vec![
                        bundle(reference, 2).label("accepted beds"),
                        truth(),
                        stations(),
                    ],
                ),
            ];
            Panel::share_ranges(&mut figure);
            panels(path, &caption, &figure, 2, (640, 480))
        }
        Problem::Seismic => {
            let names = sim.x_names();
            let mut figure: Vec<Panel> = (0..dx)
                .map(|d| {
                    let column = |xs: &[f64]| -> Vec<f64> { xs.chunks(dx).map(|r| r[d]).collect() };
                    let (a, b) = (column(samples), column(reference));
                    let lo = a.iter().chain(&b).copied().fold(f64::INFINITY, f64::min);
                    let hi = a
                        .iter()
                        .chain(&b)
                        .copied()
                        .fold(f64::NEG_INFINITY, f64::max);
                    let range = lo..hi.max(lo + 1e-9);
                    let top = |h: &[(f64, f64)]| h.iter().map(|p| p.1).fold(0.0, f64::max);
                    let (ha, hb) = (
                        histogram_outline(&a, range.clone(), 30),
                        histogram_outline(&b, range.clone(), 30),
                    );
                    let peak = top(&ha).max(top(&hb));
                    Panel::new(
                        names[d].clone(),
                        &names[d],
                        "density",
                        vec![
                            Series::new(vec![ha], Some(0)).label(method.name()),
                            Series::new(vec![hb], Some(2)).label("rejection"),
                            Series::new(
                                vec![vec![(check.x_true[d], 0.0), (check.x_true[d], peak)]],
                                None,
                            )
                            .label("true"),
                        ],
                    )
                })
                .collect();
            let seismic = Seismic::default();
            let times = seismic.times();
            let traces: Vec<Vec<(f64, f64)>> = shown(samples)
                .iter()
                .take(100)
                .map(|x| times.iter().copied().zip(sim.simulate(x)).collect())
                .collect();
            figure.push(Panel::new(
                "re-simulated traces",
                "time (s)",
                "amplitude",
                vec![
                    Series::new(traces, Some(0))
                        .faint(0.1)
                        .label("from samples"),
                    Series::new(
                        vec![times.iter().copied().zip(check.y.iter().copied()).collect()],
                        None,
                    )
                    .markers()
                    .label("observed"),
                ],
            ));
            panels(path, &caption, &figure, 3, (480, 360))
        }
    }
}

/// `n` samples of `p(x | y)` from the model of the run in `run`, in the problem's units,
/// row-major; and the parameter names.
pub fn posterior(run: &Path, y: &[f64], n: usize, seed: u64) -> Result<(Vec<f64>, Vec<String>)> {
    let file_path = run.join("problem.json");
    let text = std::fs::read_to_string(&file_path).with_context(|| {
        format!(
            "{} is missing: is {} a finished run of applications 5-7?",
            file_path.display(),
            run.display()
        )
    })?;
    let file: ProblemFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a problem file", file_path.display()))?;
    if y.len() != file.y_names.len() {
        bail!(
            "--y has {} values but the model takes {} ({})",
            y.len(),
            file.y_names.len(),
            file.y_names.join(", ")
        );
    }
    let (flow, _) = load_flow(&run.join("model.safetensors"), &crate::run::device())?;
    let sim = file.problem.simulator();
    let partition = parse_partition(&file.partition, sim.as_ref())?;
    let post = Posterior::new(flow, &file, partition);
    Ok((post.sample(y, n, seed), file.x_names.clone()))
}

/// One row of the comparison table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComparisonRow {
    /// INN or cINN.
    pub method: Method,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Its evaluation.
    pub evaluation: Evaluation,
    /// Training time, seconds.
    pub train_seconds: f64,
    /// Optimizer steps per second.
    pub steps_per_sec: f64,
}

/// Train both methods with the same settings (the `--set`s apply to both) and compare them.
pub fn compare(problem: Problem, opts: &TrainOptions) -> Result<Vec<ComparisonRow>> {
    let mut rows = Vec::new();
    for method in [Method::Inn, Method::Cinn] {
        let mut o = opts.clone();
        o.sets.push(format!(
            "run.method={}",
            toml::Value::String(
                match method {
                    Method::Inn => "inn",
                    Method::Cinn => "cinn",
                }
                .into()
            )
        ));
        if let Some(dir) = &opts.run_dir {
            o.run_dir = Some(dir.join(method.name().to_lowercase()));
        }
        let s = train(problem, &o)?;
        rows.push(ComparisonRow {
            method,
            run_dir: s.run_dir,
            evaluation: s.report.evaluation,
            train_seconds: s.report.train_seconds,
            steps_per_sec: s.report.steps_per_sec,
        });
    }
    Ok(rows)
}

/// The comparison as a Markdown table.
pub fn format_comparison(problem: Problem, rows: &[ComparisonRow]) -> String {
    let mut out = format!(
        "{} ({})\n\n| method | posterior MMD | prior MMD | ratio | re-simulation error | \
         noise floor | calibration error | train s | steps/s |\n|---|---|---|---|---|---|---|---|---|\n",
        problem.title(),
        problem.app()
    );
    for r in rows {
        let e = &r.evaluation;
        out.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.3} | {:.4} | {:.4} | {:.4} | {:.0} | {:.1} |\n",
            r.method.name(),
            e.mmd,
            e.prior_mmd,
            e.mmd_ratio,
            e.resimulation_error,
            e.noise_floor,
            e.calibration_error,
            r.train_seconds,
            r.steps_per_sec
        ));
    }
    out
}

/// The command line of applications 5 to 7.
pub mod cli {
    use std::path::PathBuf;

    use clap::{Args, Parser, Subcommand};

    use super::{Problem, compare, format_comparison, posterior, train};
    use crate::run::{CommonArgs, resolved_config};

    /// Learn the posterior of an inverse problem with an invertible network.
    #[derive(Parser)]
    #[command(version, args_conflicts_with_subcommands = true)]
    pub struct Cli {
        #[command(subcommand)]
        command: Option<Command>,
        #[command(flatten)]
        train: TrainArgs,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Train a model (the default when no subcommand is given).
        Train(TrainArgs),
        /// Train the INN and the cINN with the same settings and print the comparison.
        Compare(TrainArgs),
        /// Sample the posterior p(x | y) of a trained run, as CSV.
        Posterior {
            /// The run directory.
            #[arg(long)]
            run: PathBuf,
            /// The observation, comma-separated.
            #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
            y: Vec<f64>,
            /// How many samples.
            #[arg(long, default_value_t = 1000)]
            n: usize,
            /// Seed of the draw.
            #[arg(long, default_value_t = 0)]
            seed: u64,
            /// Write here instead of to stdout.
            #[arg(long)]
            out: Option<PathBuf>,
        },
    }

    #[derive(Args, Clone, Default)]
    struct TrainArgs {
        /// `inn` (Ardizzone et al.) or `cinn` (conditional flow) (run.method).
        #[arg(long)]
        method: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    }

    impl TrainArgs {
        fn into_options(self) -> anyhow::Result<(crate::run::TrainOptions, bool)> {
            let mut sets = Vec::new();
            if let Some(m) = self.method {
                sets.push(format!("run.method={m}"));
            }
            let print = self.common.print_config;
            Ok((self.common.options(sets)?, print))
        }
    }

    fn run(problem: Problem, cli: Cli) -> anyhow::Result<()> {
        match cli.command.unwrap_or(Command::Train(cli.train)) {
            Command::Train(args) => {
                let (opts, print) = args.into_options()?;
                if print {
                    print!("{}", resolved_config(problem.default_config(), &opts)?);
                    return Ok(());
                }
                let s = train(problem, &opts)?;
                let e = &s.report.evaluation;
                println!("run directory: {}", s.run_dir.display());
                println!(
                    "{:?}: posterior MMD {:.4} (prior {:.4}, ratio {:.3}); re-simulation error \
                     {:.4} (noise floor {:.4}); calibration error {:.4}; {:.1} steps/s",
                    s.report.method,
                    e.mmd,
                    e.prior_mmd,
                    e.mmd_ratio,
                    e.resimulation_error,
                    e.noise_floor,
                    e.calibration_error,
                    s.report.steps_per_sec
                );
                for f in &s.report.figures {
                    println!("figure: {}", s.run_dir.join(f).display());
                }
                Ok(())
            }
            Command::Compare(args) => {
                let (opts, _) = args.into_options()?;
                let rows = compare(problem, &opts)?;
                print!("{}", format_comparison(problem, &rows));
                Ok(())
            }
            Command::Posterior {
                run,
                y,
                n,
                seed,
                out,
            } => {
                let (samples, names) = posterior(&run, &y, n, seed)?;
                let mut text = names.join(",") + "\n";
                for row in samples.chunks(names.len()) {
                    let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                    text.push_str(&cells.join(","));
                    text.push('\n');
                }
                crate::run::write_output(out.as_deref(), &text)
            }
        }
    }

    /// The whole binary: parse, run, report errors; the exit code.
    pub fn main(problem: Problem) -> std::process::ExitCode {
        crate::run::init_logging();
        crate::run::exit(run(problem, Cli::parse()))
    }
}
