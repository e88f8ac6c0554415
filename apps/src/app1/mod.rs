//! Application 1: distribution mapping of 2-D and 3-D points. A flow learns toy distributions
//! (or the points of a CSV file) by maximum likelihood; the run directory gets the model,
//! scatter plots in data and latent space with the lowest-density points marked, samples,
//! training curves and a report with the change-of-variables check.

mod cli;
mod report;

use std::path::Path;

use anyhow::{Context, Result, bail};
use flowcore::train::{Collective, DataSource, MaximumLikelihood, SingleProcess};
use flowcore::{BaseConfig, DataShape};
use flowdata::read_points_csv;
use serde::{Deserialize, Serialize};

pub use crate::run::TrainOptions;
use crate::run::{AppInfo, AppRun, ResolvedConfig, RunRecord, Training, load_model, train_app};
pub use crate::shared::csv::write_csv;
use crate::shared::infer::to_vec;
use crate::shared::normality::Normality;
use crate::shared::points::{PointRun, PointSet};
pub use cli::App1;

/// Application 1 to the harness.
pub const APP: AppInfo = AppInfo {
    name: "train_flowmodels1",
    about: "Distribution mapping of 2-D/3-D points with a normalizing flow",
    default_config: include_str!("../../configs/app1.toml"),
    data_parallel: true,
};

/// The `[run]` keys of application 1 beside [`crate::run::RunHeader`]'s and [`PointRun`]'s.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// How many lowest-density points the plots mark.
    pub lowest_density: usize,
}

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
    /// Whether the validation points, encoded, are a standard normal sample.
    pub latent_normality: Normality,
    /// The classic questions on the moons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moons: Option<MoonsAnswers>,
    /// What the continuous layers' solves cost over the run (none without such layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ode: Option<OdeCost>,
    /// How training went and where the outputs are.
    #[serde(flatten)]
    pub run: RunRecord,
}

/// The answers a user of FFJORD's and TensorFlow Probability's moons examples looks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MoonsAnswers {
    /// The model's log p at (0, 0.5), nats.
    pub log_p_at_0_05: f64,
    /// The generator's own log-density there, by quadrature over its definition.
    pub true_log_p_at_0_05: f64,
    /// Where the latent point (-0.1, 0.6) lands in data space.
    pub latent_m01_06_in_data: Vec<f64>,
}

/// Solves of continuous layers over a run (training and validation).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OdeCost {
    /// Solves.
    pub solves: u64,
    /// Function evaluations per solve.
    pub nfe_per_solve: f64,
    /// Accepted steps per solve.
    pub steps_per_solve: f64,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

/// Train application 1 as configured; everything goes into the run directory and tracking.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::reenter_in_pool!(train(opts));
    train_ranked(opts, &SingleProcess)?.context("one process is rank 0")
}

/// [`train`] as one rank of a data-parallel run over `ranks`: rank 0 trains, writes the run
/// and returns its summary; the others train their share of each batch and return `None`.
pub fn train_ranked(opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
    let mut resolved = ResolvedConfig::new(&APP, opts)?;
    let point_run: PointRun = resolved.take("run")?;
    let run: RunGroup = resolved.group("run")?;
    resolved.finish()?;
    let mut points = PointSet::unlabelled(&point_run, resolved.training.seed)?;
    let model = resolved
        .model
        .clone()
        .with_data_shape(&DataShape::features(points.dim()));
    tracing::info!("{} ({} features)", points.name(), points.dim());
    let ode_start = flowcore::ode::OdeCounts::now();
    train_app(
        opts,
        ranks,
        AppRun {
            config: &resolved,
            tags: vec![("dataset".into(), points.name())],
            files: Vec::new(),
        },
        Training {
            model: &model,
            base: BaseConfig::default(),
            objective: &MaximumLikelihood,
            data: &mut points,
            config: &resolved.training,
        },
        |r, points| report::report(&point_run, &run, points, r, &ode_start),
    )
}

/// `n` samples, row-major, from the model of the run in `run`, with the base scaled by
/// `temperature`; and the features per sample.
pub fn sample(run: &Path, n: usize, temperature: f64, seed: u64) -> Result<(Vec<f32>, usize)> {
    crate::run::reenter_in_pool!(sample(run, n, temperature, seed));
    if n == 0 {
        bail!("--n must be at least 1");
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!("--temperature must be a positive number, got {temperature}");
    }
    let flow = load_model(run, &APP)?;
    let x = flow.sample(n, temperature, seed, None, &crate::run::device());
    Ok((to_vec(x.into_data()), flow.dim()))
}

/// log p(x) in nats of every point of `points` (CSV) under the model of the run in `run`;
/// returns the points, their column names and the log-densities.
pub fn logprob(run: &Path, points: &Path) -> Result<(Vec<f32>, Vec<String>, Vec<f32>)> {
    crate::run::reenter_in_pool!(logprob(run, points));
    let flow = load_model(run, &APP)?;
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
    let lp =
        crate::shared::infer::log_prob_rows(&flow, &pts.values, pts.dim, &crate::run::device());
    Ok((pts.values, pts.columns, lp))
}

/// Column names `x0, x1, ...`.
pub fn default_columns(dim: usize) -> Vec<String> {
    crate::shared::csv::axis_names(dim, "x")
}
