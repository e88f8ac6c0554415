//! Application 4: generative classification of 2-D and 3-D points. A flow learns labelled
//! clusters (the ring of 8 Gaussians with its components as classes, the two moons, the six
//! 3-D clusters, or a CSV with a label column) either with a Gaussian per class in latent space
//! (IB-INN) or with the `[y | z]` split of Ardizzone et al.; the run gets accuracy,
//! confusion, calibration, a map of the decision regions and class-conditional samples.

mod cli;
mod report;

use std::path::Path;

use anyhow::{Context, Result, bail};
use flowcore::DataShape;
use flowcore::classify::Classifier;
use flowcore::train::{DataSource, SingleProcess};
use flowdata::read_labelled_points_csv;
use serde::{Deserialize, Serialize};

pub use crate::run::TrainOptions;
use crate::run::{AppInfo, AppRun, ResolvedConfig, RunRecord, Training, load_model, train_app};
use crate::shared::classify::{ClassMetrics, ClassesFile, Classification, Mode, class_log_probs};
use crate::shared::points::{PointRun, PointSet};
pub use cli::App4;

/// Application 4 to the harness.
pub const APP: AppInfo = AppInfo {
    name: "train_flowmodels4",
    about: "Generative classification of points with a normalizing flow",
    default_config: include_str!("../../configs/app4.toml"),
    data_parallel: false,
};

/// The `[run]` keys of application 4 beside [`crate::run::RunHeader`]'s and [`PointRun`]'s.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// The CSV's label column.
    pub label_column: String,
    /// Class-conditional samples drawn per class.
    pub samples_per_class: usize,
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The data.
    pub dataset: String,
    /// `ib` or `inn`.
    pub mode: Mode,
    /// Features per point.
    pub dim: usize,
    /// Validation metrics.
    pub metrics: ClassMetrics,
    /// Toy mixtures: the fraction of class-conditional samples nearest their own class's
    /// centre.
    pub samples_in_their_cluster: Option<f64>,
    /// How training went and where the outputs are.
    #[serde(flatten)]
    pub run: RunRecord,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

/// Train application 4 as configured; everything goes into the run directory and tracking.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::reenter_in_pool!(train(opts));
    let mut resolved = ResolvedConfig::new(&APP, opts)?;
    let point_run: PointRun = resolved.take("run")?;
    let run: RunGroup = resolved.group("run")?;
    let classification = Classification::take(&mut resolved)?;
    resolved.finish()?;
    let mut data = PointSet::labelled(&point_run, &run.label_column, resolved.training.seed)?;
    let classes = data.classes();
    let mode = classification.group.mode;
    // The INN mode pads the points with one value per class.
    let dim = match mode {
        Mode::Ib => data.dim(),
        Mode::Inn => classification
            .group
            .partition(data.dim(), classes.len(), true)?
            .dim(),
    };
    let model = resolved
        .model
        .clone()
        .with_data_shape(&DataShape::features(dim));
    let trained = classification.start(data.dim(), &classes, true)?;
    tracing::info!(
        "{} ({} features, {} classes), {}",
        data.name(),
        data.dim(),
        classes.len(),
        mode.name()
    );
    let summary = train_app(
        opts,
        &SingleProcess,
        AppRun {
            config: &resolved,
            tags: vec![("dataset".into(), data.name()), classification.tag()],
            files: vec![trained.file.clone()],
        },
        Training {
            model: &model,
            base: classification.group.base(classes.len()),
            objective: trained.objective.as_ref(),
            data: &mut data,
            config: &resolved.training,
        },
        |r, data| report::report(&point_run, &run, mode, data, &trained.classifier, r),
    )?;
    summary.context("one process is rank 0")
}

/// Points and their class probabilities.
#[derive(Clone, Debug)]
pub struct PointPredictions {
    /// The points, row-major.
    pub values: Vec<f32>,
    /// Their column names.
    pub columns: Vec<String>,
    /// The run's classes.
    pub classes: Vec<String>,
    /// `[n, K]` class probabilities.
    pub probabilities: Vec<f32>,
}

/// Class probabilities of the points of `points` (CSV, the training features; a label column
/// is ignored) under the model of the run in `run`.
pub fn predict(run: &Path, points: &Path) -> Result<PointPredictions> {
    crate::run::reenter_in_pool!(predict(run, points));
    let file = ClassesFile::load(run)?;
    let flow = load_model(run, &APP)?;
    let classifier = file.classifier()?;
    // The run's label column, when the file has it, is left out; any error in the file is the
    // file's (it is not read again another way).
    let config: toml::Table = std::fs::read_to_string(run.join("config.toml"))
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    let column = config
        .get("run")
        .and_then(|r| r.get("label_column"))
        .and_then(|v| v.as_str())
        .unwrap_or("label")
        .to_string();
    let header = std::fs::read_to_string(points)
        .with_context(|| format!("cannot read {}", points.display()))?;
    let labelled = header
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.split(',').any(|c| c.trim() == column));
    let pts = if labelled {
        read_labelled_points_csv(points, &column)?.points
    } else {
        flowdata::read_points_csv(points)?
    };
    let dim = match &classifier {
        Classifier::Inn { objective } => objective.x_dim(),
        Classifier::Ib => flow.dim(),
    };
    if pts.dim != dim {
        bail!(
            "{}: {} columns, but the model takes {dim} features",
            points.display(),
            pts.dim
        );
    }
    let lp = class_log_probs(&classifier, &flow, &pts.values, dim, &crate::run::device());
    let k = file.classes.len();
    if let Some(i) = (0..pts.n).find(|&i| lp[i * k..(i + 1) * k].iter().any(|v| !v.is_finite())) {
        bail!(
            "{}:{}: the model gives this point no finite class probabilities: it lies far \
             outside what the run learnt",
            points.display(),
            pts.lines[i]
        );
    }
    Ok(PointPredictions {
        values: pts.values,
        columns: pts.columns,
        classes: file.classes,
        probabilities: lp.iter().map(|v| v.exp()).collect(),
    })
}
