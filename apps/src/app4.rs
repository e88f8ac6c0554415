//! Application 4: generative classification of 2-D and 3-D points. A flow learns labelled
//! clusters (the ring of 8 Gaussians with its components as classes, the two moons, the six
//! 3-D clusters, or a CSV with a label column) either with a Gaussian per class in latent space
//! (IB-INN) or with the `[y | z]` split of Ardizzone et al.; the run gets accuracy,
//! confusion, calibration, a map of the decision regions and class-conditional samples.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use flowcore::ArchitectureConfig;
use flowcore::checkpoint::{load_flow, save_flow};
use flowcore::classify::Classifier;
use flowcore::inn::InnLossConfig;
use flowcore::train::{Batch, DataSource, EpochStats, TrainingConfig};
use flowdata::{Toy, batch_rng, read_labelled_points_csv};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::classify::{
    ClassMetrics, ClassesFile, ClassifierGroup, Mode, class_log_probs, metrics, one_hot,
    predictions,
};
use crate::config::{from_table, group, resolve_options};
use crate::infer::to_vec;
use crate::plot::{Panel, Series, decision_map, history_curves, panels};
use crate::run::{RunPlace, TrainOptions, close_run, fit_tracked, open_run};

/// The binary's name, used as the `app` tag.
pub const APP: &str = "train_flowmodels4";

/// The default config, `apps/configs/app4.toml`, embedded.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/app4.toml");

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
    /// A toy set with classes: `gmm` (8), `moons` (2), `gmm3d` (6).
    pub dataset: String,
    /// A CSV of labelled points instead ("" for none).
    #[serde(default)]
    pub points: String,
    /// The CSV's label column.
    pub label_column: String,
    /// Validation points (toy data: drawn once; CSV: this many held out, at most a fifth).
    pub validation_size: usize,
    /// Points in the figures.
    pub plot_points: usize,
    /// Class-conditional samples drawn per class.
    pub samples_per_class: usize,
    /// Log step metrics every this many steps.
    pub log_every: u64,
}

/// The whole app-4 config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App4Config {
    /// Run, data and output settings.
    pub run: RunGroup,
    /// How the flow classifies.
    pub classifier: ClassifierGroup,
    /// The INN objective (`classifier.mode = "inn"`).
    #[serde(default)]
    pub inn: InnLossConfig,
    /// The training engine.
    pub training: TrainingConfig,
    /// The flow; `dim` comes from the data (and the padding of the `inn` mode).
    pub model: ArchitectureConfig,
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
    /// Wall time of training, seconds.
    pub train_seconds: f64,
    /// Optimizer steps per second.
    pub steps_per_sec: f64,
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

enum Labelled {
    Toy {
        toy: Toy,
        seed: u64,
        validation: usize,
    },
    File {
        name: String,
        dim: usize,
        classes: Vec<String>,
        train: (Vec<f32>, Vec<usize>),
        validation: (Vec<f32>, Vec<usize>),
        seed: u64,
    },
}

impl Labelled {
    fn new(run: &RunGroup, seed: u64) -> Result<Self> {
        if !run.points.is_empty() {
            let lp = read_labelled_points_csv(Path::new(&run.points), &run.label_column)
                .context("run.points")?;
            if lp.class_names.len() < 2 {
                bail!(
                    "{}: every point has the label `{}`; a classifier needs at least 2 classes",
                    run.points,
                    lp.class_names.first().map_or("", String::as_str)
                );
            }
            let n = lp.points.n;
            if n < 10 {
                bail!("{}: {n} points are too few to train on", run.points);
            }
            let dim = lp.points.dim;
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut batch_rng(seed, u64::MAX));
            let n_val = run.validation_size.min(n / 5).max(1);
            let take = |rows: &[usize]| -> (Vec<f32>, Vec<usize>) {
                (
                    rows.iter()
                        .flat_map(|&i| lp.points.values[i * dim..(i + 1) * dim].iter().copied())
                        .collect(),
                    rows.iter().map(|&i| lp.labels[i]).collect(),
                )
            };
            return Ok(Self::File {
                name: run.points.clone(),
                dim,
                classes: lp.class_names.clone(),
                validation: take(&order[..n_val]),
                train: take(&order[n_val..]),
                seed,
            });
        }
        let toy: Toy = run
            .dataset
            .parse()
            .map_err(|e| anyhow::anyhow!("run.dataset: {e}"))?;
        if toy.classes().is_none() {
            bail!(
                "run.dataset: `{toy}` has no classes; use gmm, moons or gmm3d, or --points with \
                 a label column"
            );
        }
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

    fn classes(&self) -> Vec<String> {
        match self {
            Self::Toy { toy, .. } => (0..toy.classes().unwrap_or(1))
                .map(|k| format!("class{k}"))
                .collect(),
            Self::File { classes, .. } => classes.clone(),
        }
    }

    fn labelled_validation(&self) -> (Vec<f32>, Vec<usize>) {
        match self {
            // A stream no training step uses: steps count up from 0.
            Self::Toy {
                toy,
                seed,
                validation,
            } => toy.sample_labelled(
                *validation,
                &mut batch_rng(*seed ^ 0x5A5A_5A5A, u64::MAX - 1),
            ),
            Self::File { validation, .. } => validation.clone(),
        }
    }
}

impl DataSource for Labelled {
    fn dim(&self) -> usize {
        match self {
            Self::Toy { toy, .. } => toy.dim(),
            Self::File { dim, .. } => *dim,
        }
    }

    fn y_dim(&self) -> usize {
        self.classes().len()
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let k = self.y_dim();
        let (x, labels) = match self {
            Self::Toy { toy, seed, .. } => {
                toy.sample_labelled(batch_size, &mut batch_rng(*seed, step))
            }
            Self::File {
                dim, train, seed, ..
            } => {
                let mut rng = batch_rng(*seed, step);
                let n = train.1.len();
                let picks: Vec<usize> = (0..batch_size).map(|_| rng.random_range(0..n)).collect();
                (
                    picks
                        .iter()
                        .flat_map(|&i| train.0[i * *dim..(i + 1) * *dim].iter().copied())
                        .collect(),
                    picks.iter().map(|&i| train.1[i]).collect(),
                )
            }
        };
        Ok(Batch {
            x,
            y: one_hot(&labels, k),
        })
    }

    fn validation(&mut self) -> Result<Batch, String> {
        let (x, labels) = self.labelled_validation();
        Ok(Batch {
            x,
            y: one_hot(&labels, self.y_dim()),
        })
    }
}

/// Resolve the config: defaults, file, overrides, and `model.dim` from the data (plus the
/// classes as padding in `inn` mode).
fn resolve(opts: &TrainOptions) -> Result<(App4Config, toml::Table, Labelled)> {
    let (mut table, origin) = resolve_options(DEFAULT_CONFIG, opts)?;
    let run: RunGroup = group(&table, "run", &origin)?;
    let classifier: ClassifierGroup = group(&table, "classifier", &origin)?;
    let seed = table
        .get("training")
        .and_then(|t| t.get("seed"))
        .and_then(|v| v.as_integer())
        .unwrap_or(0) as u64;
    let data = Labelled::new(&run, seed)?;
    let dim = match classifier.mode {
        Mode::Ib => data.dim(),
        Mode::Inn => classifier.partition(data.dim(), data.y_dim(), true)?.dim(),
    };
    if let Some(toml::Value::Table(model)) = table.get_mut("model")
        && model.get("kind").and_then(|k| k.as_str()) == Some("real_nvp_dense")
    {
        model
            .entry("dim")
            .or_insert(toml::Value::Integer(dim as i64));
    }
    let config: App4Config = from_table(&table, &origin, "")?;
    Ok((config, table, data))
}

/// Train application 4 as configured; everything goes into the run directory and tracking.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::one_process(opts, APP)?;
    let (config, table, mut data) = resolve(opts)?;
    let classes = data.classes();
    let (objective, classifier) =
        config
            .classifier
            .objective(data.dim(), classes.len(), true, &config.inn)?;
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
        vec![
            ("dataset".into(), data.name()),
            ("mode".into(), config.classifier.mode.name().into()),
        ],
    )?;
    let file = ClassesFile {
        mode: config.classifier.mode,
        classes: classes.clone(),
        partition: match &classifier {
            Classifier::Inn { objective } => Some(objective.partition.to_string()),
            Classifier::Ib => None,
        },
        label_noise: config.inn.y_noise,
    };
    file.save(&run_dir)?;
    tracing::info!(
        "run {} on {} ({} features, {} classes), {}",
        run_dir.display(),
        data.name(),
        data.dim(),
        classes.len(),
        config.classifier.mode.name()
    );
    let started = std::time::Instant::now();
    let result = fit_tracked(
        &config.model,
        &config.classifier.base(classes.len()),
        objective.as_ref(),
        &mut data,
        &config.training,
        &run_dir,
        opts,
        &mut tracker,
        &flowcore::train::SingleProcess,
    )
    .and_then(|outcome| {
        let seconds = started.elapsed().as_secs_f64();
        report(
            &config,
            &run_dir,
            &data,
            &classifier,
            &outcome,
            seconds,
            &mut tracker,
        )
    });
    let report = close_run(tracker, &run_dir, result, |r, local, remote| {
        r.tracking_run = local;
        r.remote_run_id = remote;
    })?;
    Ok(TrainSummary { run_dir, report })
}

fn report(
    config: &App4Config,
    run_dir: &Path,
    data: &Labelled,
    classifier: &Classifier,
    outcome: &flowcore::train::FitOutcome,
    train_seconds: f64,
    tracker: &mut flowcore::tracking::Tracker,
) -> Result<Report> {
    let device = crate::run::device();
    let flow = outcome.flow.valid();
    save_flow(
        &flow,
        &run_dir.join("model.safetensors"),
        serde_json::json!({ "app": APP, "dataset": data.name() }),
    )?;
    tracker.log_artifact(&run_dir.join("classes.json"), Some("report"));
    let classes = data.classes();
    let k = classes.len();
    let dim = data.dim();
    let (val_x, val_y) = data.labelled_validation();
    let lp = class_log_probs(classifier, &flow, &val_x, dim, &device);
    let m = metrics(&lp, &val_y, &classes);

    // Class-conditional samples, and for toy mixtures whether they land in their cluster.
    let per_class = config.run.samples_per_class.max(1);
    let mut samples: Vec<(Vec<f32>, usize)> = Vec::new();
    for c in 0..k {
        if let Some(x) = classifier.sample_class(
            &flow,
            c,
            k,
            per_class,
            1.0,
            config.training.seed + c as u64,
            &device,
        ) {
            samples.push((to_vec(x.into_data()), c));
        }
    }
    let in_cluster = match data {
        Labelled::Toy { toy, .. } if toy.class_centre(0).is_some() => {
            let centres: Vec<Vec<f64>> = (0..k).filter_map(|c| toy.class_centre(c)).collect();
            let mut hits = 0usize;
            let mut total = 0usize;
            for (xs, c) in &samples {
                for p in xs.chunks(dim) {
                    let nearest = centres
                        .iter()
                        .enumerate()
                        .map(|(j, ctr)| {
                            let d: f64 = ctr
                                .iter()
                                .zip(p)
                                .map(|(a, b)| (a - f64::from(*b)).powi(2))
                                .sum();
                            (j, d)
                        })
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .map_or(usize::MAX, |(j, _)| j);
                    hits += usize::from(nearest == *c);
                    total += 1;
                }
            }
            Some(hits as f64 / total.max(1) as f64)
        }
        _ => None,
    };

    let mut figures = Vec::new();
    let shown = config.run.plot_points.min(val_y.len());
    let points: Vec<(f64, f64, usize)> = val_x
        .chunks(dim)
        .zip(&val_y)
        .take(shown)
        .map(|(p, &c)| (f64::from(p[0]), f64::from(p[1]), c))
        .collect();
    if dim == 2 {
        let (lo, hi) = points.iter().fold(
            ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]),
            |(lo, hi), p| {
                (
                    [lo[0].min(p.0), lo[1].min(p.1)],
                    [hi[0].max(p.0), hi[1].max(p.1)],
                )
            },
        );
        let pad = |a: f64, b: f64| 0.1 * (b - a).max(1e-3);
        let (xr, yr) = (
            lo[0] - pad(lo[0], hi[0])..hi[0] + pad(lo[0], hi[0]),
            lo[1] - pad(lo[1], hi[1])..hi[1] + pad(lo[1], hi[1]),
        );
        let n = 120;
        let grid: Vec<f32> = (0..n * n)
            .flat_map(|i| {
                let (cx, cy) = (i % n, i / n);
                [
                    (xr.start + (cx as f64 + 0.5) * (xr.end - xr.start) / n as f64) as f32,
                    (yr.start + (cy as f64 + 0.5) * (yr.end - yr.start) / n as f64) as f32,
                ]
            })
            .collect();
        let cells = predictions(&class_log_probs(classifier, &flow, &grid, 2, &device), k);
        decision_map(
            &run_dir.join("decision_regions.png"),
            &format!(
                "{}: decision regions ({}), accuracy {:.3}",
                data.name(),
                config.classifier.mode.name(),
                m.accuracy
            ),
            xr,
            yr,
            (n, n),
            &cells,
            &points,
            &classes,
        )?;
        figures.push("decision_regions.png".to_string());
    }
    let series: Vec<Series> = samples
        .iter()
        .map(|(xs, c)| {
            Series::new(
                vec![
                    xs.chunks(dim)
                        .map(|p| (f64::from(p[0]), f64::from(p[1])))
                        .collect(),
                ],
                Some(*c),
            )
            .markers()
            .faint(0.6)
            .label(classes[*c].clone())
        })
        .collect();
    let mut figure = vec![
        Panel::new(
            "validation data",
            "x0",
            "x1",
            (0..k)
                .map(|c| {
                    Series::new(
                        vec![
                            points
                                .iter()
                                .filter(|p| p.2 == c)
                                .map(|p| (p.0, p.1))
                                .collect(),
                        ],
                        Some(c),
                    )
                    .markers()
                    .faint(0.6)
                })
                .collect(),
        ),
        Panel::new("class-conditional samples", "x0", "x1", series),
    ];
    Panel::share_ranges(&mut figure);
    panels(
        &run_dir.join("class_samples.png"),
        &format!("{}: data and samples per class", data.name()),
        &figure,
        2,
        (560, 540),
    )?;
    figures.push("class_samples.png".to_string());
    history_curves(
        &run_dir.join("loss.png"),
        "loss per epoch",
        &outcome.history,
    )?;
    figures.push("loss.png".to_string());
    for f in &figures {
        tracker.log_artifact(&run_dir.join(f), Some("plots"));
    }
    let steps = (outcome.history.len() * config.training.steps_per_epoch) as u64;
    tracker.log_metric("val_accuracy", m.accuracy, steps);
    tracker.log_metric(
        "val_expected_calibration_error",
        m.expected_calibration_error,
        steps,
    );
    if let Some(f) = in_cluster {
        tracker.log_metric("samples_in_their_cluster", f, steps);
    }
    tracker.flush();
    tracing::info!(
        "validation accuracy {:.4}, expected calibration error {:.4}{}",
        m.accuracy,
        m.expected_calibration_error,
        in_cluster.map_or(String::new(), |f| format!(
            "; {:.1}% of class samples in their cluster",
            100.0 * f
        ))
    );
    let steps_per_sec = outcome.steps_per_sec(config.training.batch_size);
    Ok(Report {
        dataset: data.name(),
        mode: config.classifier.mode,
        dim,
        metrics: m,
        samples_in_their_cluster: in_cluster,
        train_seconds,
        steps_per_sec,
        history: outcome.history.clone(),
        figures,
        tracking_run: PathBuf::new(),
        remote_run_id: None,
    })
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
    let file = ClassesFile::load(run)?;
    let (flow, _) = load_flow(&run.join("model.safetensors"), &crate::run::device())?;
    let classifier = file.classifier()?;
    let pts = match flowdata::read_points_csv(points) {
        Ok(p) => p,
        Err(_) => {
            // A labelled file: drop its label column.
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
            read_labelled_points_csv(points, &column)?.points
        }
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
    Ok(PointPredictions {
        values: pts.values,
        columns: pts.columns,
        classes: file.classes,
        probabilities: lp.iter().map(|v| v.exp()).collect(),
    })
}
