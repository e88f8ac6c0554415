//! Application 1: distribution mapping of 2-D and 3-D points. A RealNVP learns toy
//! distributions (or the points of a CSV file) by maximum likelihood; the run directory gets
//! the model, scatter plots in data and latent space with the lowest-density points marked,
//! samples, training curves and a report with the change-of-variables check.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::checkpoint::{load_flow, save_flow};
use flowcore::train::{
    self, Batch, Collective, DataSource, EpochStats, SingleProcess, TrainingConfig,
};
use flowcore::{ArchitectureConfig, BaseConfig, Bijector, Flow, standard_normal};
use flowdata::{Toy, batch_rng, read_points_csv};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::config::{from_table, group, resolve_options};
use crate::infer::to_vec;
use crate::plot::{ScatterSet, nll_curves, scatter};
use crate::run::{RunPlace, close_run, fit_tracked, fit_worker, open_run};

/// The binary's name, used as the `app` tag.
pub const APP: &str = "train_flowmodels1";

/// The default config, `apps/configs/app1.toml`, embedded.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/app1.toml");

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
    /// Toy dataset: `moons`, `moons:NOISE`, `mvn`, `gmm`, `helix`, `helix:NOISE`, `gmm3d`.
    pub dataset: String,
    /// A CSV of points to learn instead of the toy dataset ("" for none).
    #[serde(default)]
    pub points: String,
    /// Validation points (toy data: drawn once; CSV: this many held out, at most a fifth).
    pub validation_size: usize,
    /// Points in each scatter plot.
    pub plot_points: usize,
    /// How many lowest-density points the plots mark.
    pub lowest_density: usize,
    /// Log step metrics every this many steps.
    pub log_every: u64,
}

/// The whole app-1 config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App1Config {
    /// Run, data and output settings.
    pub run: RunGroup,
    /// The training engine.
    pub training: TrainingConfig,
    /// The flow.
    pub model: ArchitectureConfig,
}

pub use crate::run::TrainOptions;

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The data.
    pub dataset: String,
    /// Features per point.
    pub dim: usize,
    /// Entropy of the data in nats, where known: the best NLL a model can reach.
    pub entropy: Option<f64>,
    /// Validation NLL of the final model, nats per point.
    pub val_nll: f64,
    /// The same in bits per dimension.
    pub val_bits_per_dim: f64,
    /// `val_nll - entropy`.
    pub gap_to_entropy: Option<f64>,
    /// Largest |log p(x) by the forward pass - log p(x) by the inverse pass| over the plotted
    /// points, nats.
    pub change_of_variables_max_abs_diff: f64,
    /// Largest |x - inverse(forward(x))| over the plotted points.
    pub round_trip_max_abs_err: f64,
    /// Mean optimizer steps per second over the epochs of this process.
    pub steps_per_sec: f64,
    /// Epochs trained in all.
    pub epochs: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Per-epoch statistics.
    pub history: Vec<EpochStats>,
    /// The figures, relative to the run directory.
    pub figures: Vec<String>,
    /// The local tracking run.
    pub tracking_run: PathBuf,
    /// The run on the tracking server, if any.
    pub remote_run_id: Option<String>,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

enum Points {
    Toy {
        toy: Toy,
        seed: u64,
        validation: usize,
    },
    File {
        name: String,
        dim: usize,
        train: Vec<f32>,
        validation: Vec<f32>,
        seed: u64,
    },
}

impl Points {
    fn new(run: &RunGroup, seed: u64) -> Result<Self> {
        if !run.points.is_empty() {
            let path = Path::new(&run.points);
            let pts = read_points_csv(path).with_context(|| "run.points".to_string())?;
            if pts.n < 10 {
                bail!("{}: {} points are too few to train on", run.points, pts.n);
            }
            let mut order: Vec<usize> = (0..pts.n).collect();
            order.shuffle(&mut batch_rng(seed, u64::MAX));
            let n_val = run.validation_size.min(pts.n / 5).max(1);
            let take = |rows: &[usize]| -> Vec<f32> {
                rows.iter()
                    .flat_map(|&i| pts.values[i * pts.dim..(i + 1) * pts.dim].iter().copied())
                    .collect()
            };
            return Ok(Self::File {
                name: run.points.clone(),
                dim: pts.dim,
                validation: take(&order[..n_val]),
                train: take(&order[n_val..]),
                seed,
            });
        }
        let toy: Toy = run
            .dataset
            .parse()
            .map_err(|e| anyhow::anyhow!("run.dataset: {e}"))?;
        Ok(Self::Toy {
            toy,
            seed,
            validation: run.validation_size.max(1),
        })
    }

    fn name(&self) -> String {
        match self {
            Self::Toy { toy, .. } => toy.to_string(),
            Self::File { name, .. } => name.clone(),
        }
    }

    fn entropy(&self) -> Option<f64> {
        match self {
            Self::Toy { toy, .. } => toy.entropy(),
            Self::File { .. } => None,
        }
    }
}

impl DataSource for Points {
    fn dim(&self) -> usize {
        match self {
            Self::Toy { toy, .. } => toy.dim(),
            Self::File { dim, .. } => *dim,
        }
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let mut rng = match self {
            Self::Toy { seed, .. } | Self::File { seed, .. } => batch_rng(*seed, step),
        };
        Ok(Batch::unlabelled(match self {
            Self::Toy { toy, .. } => toy.sample(batch_size, &mut rng),
            Self::File { dim, train, .. } => {
                use rand::Rng;
                let n = train.len() / *dim;
                (0..batch_size)
                    .flat_map(|_| {
                        let i = rng.random_range(0..n);
                        train[i * *dim..(i + 1) * *dim].to_vec()
                    })
                    .collect()
            }
        }))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        Ok(Batch::unlabelled(match self {
            // A stream no training step uses: steps count up from 0.
            Self::Toy {
                toy,
                seed,
                validation,
            } => toy.sample(
                *validation,
                &mut batch_rng(*seed ^ 0x5A5A_5A5A, u64::MAX - 1),
            ),
            Self::File { validation, .. } => validation.clone(),
        }))
    }
}

/// Resolve the config of a run: defaults, file, overrides, and `model.dim` from the data when
/// the model does not give it.
fn resolve(opts: &TrainOptions) -> Result<(App1Config, toml::Table, Points)> {
    let (mut table, origin) = resolve_options(DEFAULT_CONFIG, opts)?;
    let run: RunGroup = group(&table, "run", &origin)?;
    let seed = table
        .get("training")
        .and_then(|t| t.get("seed"))
        .and_then(|v| v.as_integer())
        .unwrap_or(0) as u64;
    let points = Points::new(&run, seed)?;
    if let Some(toml::Value::Table(model)) = table.get_mut("model")
        && model.get("kind").and_then(|k| k.as_str()) == Some("real_nvp_dense")
        && !model.contains_key("dim")
    {
        model.insert("dim".into(), toml::Value::Integer(points.dim() as i64));
    }
    let config: App1Config = from_table(&table, &origin, "")?;
    Ok((config, table, points))
}

/// Per-point log p(x) of `values` (`[n, dim]`), in chunks, without gradients.
pub fn log_prob_points(flow: &Flow, values: &[f32], dim: usize, device: &Device) -> Vec<f32> {
    crate::infer::log_prob_rows(flow, values, dim, device)
}

/// Train application 1 as configured; everything goes into the run directory and tracking.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    train_ranked(opts, &SingleProcess)?.context("one process is rank 0")
}

/// [`train`] as one rank of a data-parallel run over `ranks`: rank 0 trains, writes the run
/// and returns its summary; the others train their share of each batch and return `None`.
pub fn train_ranked(opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
    let (config, table, mut points) = resolve(opts)?;
    if !ranks.is_root() {
        let ml = train::MaximumLikelihood;
        let base = BaseConfig::default();
        fit_worker(
            &config.model,
            &base,
            &ml,
            &mut points,
            &config.training,
            opts,
            ranks,
        )?;
        return Ok(None);
    }
    let (run_dir, mut tracker) = open_run(
        opts,
        RunPlace {
            output_dir: &config.run.output_dir,
            name: &config.run.name,
            tracking_dir: &config.run.tracking_dir,
            experiment: &config.run.experiment,
            log_every: config.run.log_every,
        },
        APP,
        &table,
        vec![("dataset".into(), points.name())],
    )?;
    tracing::info!(
        "run {} on {} ({} features): {} x {} steps of batch {}",
        run_dir.display(),
        points.name(),
        points.dim(),
        config.training.epochs,
        config.training.steps_per_epoch,
        config.training.batch_size
    );
    let result = fit_tracked(
        &config.model,
        &BaseConfig::default(),
        &train::MaximumLikelihood,
        &mut points,
        &config.training,
        &run_dir,
        opts,
        &mut tracker,
        ranks,
    )
    .and_then(|outcome| report(&config, &run_dir, &mut points, &outcome, &mut tracker));
    let report = close_run(tracker, &run_dir, result, |r, local, remote| {
        r.tracking_run = local;
        r.remote_run_id = remote;
    })?;
    Ok(Some(TrainSummary { run_dir, report }))
}

fn report(
    config: &App1Config,
    run_dir: &Path,
    points: &mut Points,
    outcome: &train::FitOutcome,
    tracker: &mut flowcore::tracking::Tracker,
) -> Result<Report> {
    let dim = points.dim();
    let device = crate::run::device();
    let flow = outcome.flow.valid();
    let model_path = run_dir.join("model.safetensors");
    save_flow(
        &outcome.flow,
        &model_path,
        serde_json::json!({ "app": APP, "dataset": points.name() }),
    )?;

    let validation = points.validation().map_err(anyhow::Error::msg)?.x;
    let val_nll = train::mean_nll(&flow, &validation, dim, &device);
    let n = config.run.plot_points.min(validation.len() / dim).max(1);
    let shown = &validation[..n * dim];
    let x = Tensor::<2>::from_data(TensorData::new(shown.to_vec(), [n, dim]), &device);

    // Change of variables, two ways: the forward pass's log-det at x, and the inverse pass's
    // log-det at z = f(x), which must be its negative.
    let (z, logdet_fwd) = flow.forward(x.clone(), None);
    let lp_forward = flow.base_log_prob(z.clone()) + logdet_fwd;
    let (x_back, logdet_inv) = flow.bijector().inverse(z.clone(), None);
    let lp_inverse = flow.base_log_prob(z.clone()) - logdet_inv;
    let cov_diff = (lp_forward.clone() - lp_inverse)
        .abs()
        .max()
        .into_scalar::<f64>();
    let round_trip = (x_back - x).abs().max().into_scalar::<f64>();
    let lp = to_vec(lp_forward.into_data());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| lp[a].total_cmp(&lp[b]));
    let lowest: Vec<usize> = order
        .into_iter()
        .take(config.run.lowest_density.min(n))
        .collect();

    let z_samples = standard_normal(n, dim, config.training.seed, &device);
    let x_samples = flow.decode(z_samples.clone(), None);
    let z_points = to_vec(z.into_data());
    let z_samples = to_vec(z_samples.into_data());
    let x_samples = to_vec(x_samples.into_data());
    write_csv(
        &run_dir.join("samples.csv"),
        &x_samples,
        dim,
        &axis_names(dim, "x"),
        None,
    )?;

    let xs = axis_names(dim, "x");
    let zs = axis_names(dim, "z");
    let label = format!("{} lowest log p(x)", lowest.len());
    let name = points.name();
    let set = |values, highlight, axes| ScatterSet {
        values,
        dim,
        highlight,
        highlight_label: &label,
        axes,
    };
    let figures = [
        (
            "data.png",
            format!("{name}: validation points, data space"),
            set(shown, &lowest, &xs),
        ),
        (
            "latent.png",
            format!("{name}: the same points mapped to latent space, z = f(x)"),
            set(&z_points, &lowest, &zs),
        ),
        (
            "samples_latent.png",
            "samples in latent space, z ~ N(0, I)".to_string(),
            set(&z_samples, &[], &zs),
        ),
        (
            "samples_data.png",
            format!("{name}: samples in data space, x = f^-1(z)"),
            set(&x_samples, &[], &xs),
        ),
    ];
    let mut written = Vec::new();
    for (file, caption, scatter_set) in &figures {
        scatter(&run_dir.join(file), caption, scatter_set)?;
        written.push(file.to_string());
    }
    let entropy = points.entropy();
    let train_curve: Vec<f64> = outcome.history.iter().map(|e| e.train_loss).collect();
    let val_curve: Vec<f64> = outcome.history.iter().map(|e| e.val_loss).collect();
    nll_curves(
        &run_dir.join("nll.png"),
        &train_curve,
        &val_curve,
        entropy.map(|h| (h, "entropy of the data")),
    )?;
    written.push("nll.png".into());
    for f in &written {
        tracker.log_artifact(&run_dir.join(f), Some("plots"));
    }
    tracker.log_artifact(&run_dir.join("samples.csv"), None);

    let steps_per_sec = outcome.steps_per_sec(config.training.batch_size);
    let last_step = (outcome.history.len() * config.training.steps_per_epoch) as u64;
    tracker.log_metric("final_val_nll", val_nll, last_step);
    tracker.log_metric("change_of_variables_max_abs_diff", cov_diff, last_step);
    if let Some(h) = entropy {
        tracker.log_metric("gap_to_entropy", val_nll - h, last_step);
    }
    tracker.flush();
    tracing::info!(
        "validation NLL {val_nll:.4} nats{}; change of variables max |diff| {cov_diff:.2e}; \
         {steps_per_sec:.1} steps/s",
        entropy.map_or(String::new(), |h| format!(
            " (entropy {h:.4}, gap {:+.4})",
            val_nll - h
        ))
    );
    Ok(Report {
        dataset: name,
        dim,
        entropy,
        val_nll,
        val_bits_per_dim: train::bits_per_dim(val_nll, dim),
        gap_to_entropy: entropy.map(|h| val_nll - h),
        change_of_variables_max_abs_diff: cov_diff,
        round_trip_max_abs_err: round_trip,
        steps_per_sec,
        epochs: outcome.history.len(),
        stopped_early: outcome.stopped_early,
        history: outcome.history.clone(),
        figures: written,
        tracking_run: PathBuf::new(),
        remote_run_id: None,
    })
}

fn axis_names(dim: usize, prefix: &str) -> Vec<String> {
    (0..dim).map(|j| format!("{prefix}{j}")).collect()
}

/// Write rows of `values` (`[n, dim]`) as CSV with a header, plus an extra column when given.
pub fn write_csv(
    path: &Path,
    values: &[f32],
    dim: usize,
    columns: &[String],
    extra: Option<(&str, &[f32])>,
) -> Result<()> {
    let mut out = columns.join(",");
    if let Some((name, _)) = extra {
        out.push(',');
        out.push_str(name);
    }
    out.push('\n');
    for (i, row) in values.chunks(dim).enumerate() {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        out.push_str(&cells.join(","));
        if let Some((_, col)) = extra {
            out.push(',');
            out.push_str(&col[i].to_string());
        }
        out.push('\n');
    }
    flowcore::checkpoint::write_atomic(path, out.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn load_model(run: &Path) -> Result<Flow> {
    let path = run.join("model.safetensors");
    if !path.exists() {
        bail!(
            "{} has no model.safetensors: is it a finished app-1 run directory?",
            run.display()
        );
    }
    let (flow, _) = load_flow(&path, &crate::run::device())?;
    Ok(flow)
}

/// `n` samples, row-major, from the model of the run in `run`, with the base scaled by
/// `temperature`; and the features per sample.
pub fn sample(run: &Path, n: usize, temperature: f64, seed: u64) -> Result<(Vec<f32>, usize)> {
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!("--temperature must be a positive number, got {temperature}");
    }
    let flow = load_model(run)?;
    let x = flow.sample(n, temperature, seed, None, &crate::run::device());
    Ok((to_vec(x.into_data()), flow.dim()))
}

/// log p(x) in nats of every point of `points` (CSV) under the model of the run in `run`;
/// returns the points, their column names and the log-densities.
pub fn logprob(run: &Path, points: &Path) -> Result<(Vec<f32>, Vec<String>, Vec<f32>)> {
    let flow = load_model(run)?;
    let pts = read_points_csv(points)?;
    if pts.dim != flow.dim() {
        bail!(
            "{}: the points have {} columns but the model of {} maps {} features",
            points.display(),
            pts.dim,
            run.display(),
            flow.dim()
        );
    }
    let lp = log_prob_points(&flow, &pts.values, pts.dim, &crate::run::device());
    Ok((pts.values, pts.columns, lp))
}

/// Column names `x0, x1, ...`.
pub fn default_columns(dim: usize) -> Vec<String> {
    axis_names(dim, "x")
}
