//! Application 3: generative classification of images. A Glow (or RealNVP) learns the
//! labelled folders `ROOT/train/<class>/` with a Gaussian per class in latent space (IB-INN) or
//! with the `[y | z]` split of Ardizzone et al.; the run gets accuracy and confusion on the
//! `val/` folders of the training classes, calibration, class-conditional samples per class,
//! and out-of-distribution detection of the `val/` folders of other classes by likelihood.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use flowcore::ArchitectureConfig;
use flowcore::checkpoint::{load_flow, save_flow};
use flowcore::classify::Classifier;
use flowcore::inn::InnLossConfig;
use flowcore::train::{Batch, DataSource, EpochStats, TrainingConfig};
use flowdata::images::{
    Augment, ImageBatches, ImageRoot, ImageSet, ImageSpec, OnBadImage, load_any, load_split,
    save_grid, to_pixels, to_unit,
};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::app2::bits_per_dim_8bit;
use crate::classify::{
    ClassMetrics, ClassesFile, ClassifierGroup, Mode, class_log_probs, metrics, one_hot,
};
use crate::config::{from_table, group, resolve_options};
use crate::infer::{log_prob_rows, to_vec};
use crate::plot::{RocCurve, histograms, history_curves, roc_curves};
use crate::run::{RunPlace, TrainOptions, close_run, fit_tracked, open_run};
use crate::scores::{auroc, roc_curve};

/// The binary's name, used as the `app` tag.
pub const APP: &str = "train_flowmodels3";

/// The default config, `apps/configs/app3.toml`, embedded.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/app3.toml");

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
    /// The image root with `train/<class>/` (at least 2 classes) and `val/<class>/`: a folder,
    /// `s3://bucket/prefix`, or `embedded:fashion-mnist-classes`.
    pub images: String,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Images are resized to `height x width`.
    pub height: usize,
    /// See `height`.
    pub width: usize,
    /// `skip` (report and go on) or `stop`.
    pub on_bad_image: OnBadImage,
    /// Training augmentation.
    #[serde(default)]
    pub augment: Augment,
    /// Batches prepared ahead of the training step.
    pub prefetch: usize,
    /// Held out of `train/` for validation when `val/` has none of the training classes.
    pub validation_fraction: f64,
    /// Class-conditional samples per class in the grid.
    pub samples_per_class: usize,
    /// Temperature of the class-conditional samples.
    pub temperature: f64,
    /// Log step metrics every this many steps.
    pub log_every: u64,
}

impl RunGroup {
    fn spec(&self) -> ImageSpec {
        ImageSpec {
            channels: self.channels,
            height: self.height,
            width: self.width,
        }
    }
}

/// The whole app-3 config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App3Config {
    /// Run, data and output settings.
    pub run: RunGroup,
    /// How the flow classifies.
    pub classifier: ClassifierGroup,
    /// The INN objective (`classifier.mode = "inn"`).
    #[serde(default)]
    pub inn: InnLossConfig,
    /// The training engine.
    pub training: TrainingConfig,
    /// The flow; the image shape comes from `[run]`.
    pub model: ArchitectureConfig,
}

/// Out-of-distribution detection by likelihood: images of classes the model never saw
/// against held-out images of its classes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OodReport {
    /// The folders of unseen classes.
    pub folders: Vec<String>,
    /// Their images.
    pub images: usize,
    /// AUROC of bits/dim (higher = more unusual) for unseen against seen classes.
    pub auroc_bits_per_dim: Option<f64>,
    /// Mean bits/dim of the seen classes' validation images.
    pub seen_bits_per_dim: f64,
    /// Mean bits/dim of the unseen classes' images.
    pub unseen_bits_per_dim: f64,
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The images.
    pub images: String,
    /// `ib` or `inn`.
    pub mode: Mode,
    /// The training classes.
    pub classes: Vec<String>,
    /// Validation metrics.
    pub metrics: ClassMetrics,
    /// Out-of-distribution detection, when `val/` has folders of other classes.
    pub ood: Option<OodReport>,
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

struct LabelledImages {
    batches: ImageBatches,
    labels: Vec<usize>,
    classes: usize,
    validation: Batch,
    dim: usize,
}

impl DataSource for LabelledImages {
    fn dim(&self) -> usize {
        self.dim
    }

    fn y_dim(&self) -> usize {
        self.classes
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let b = self.batches.batch(step, batch_size);
        let labels: Vec<usize> = b.indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch {
            x: b.values,
            y: one_hot(&labels, self.classes),
        })
    }

    fn validation(&mut self) -> Result<Batch, String> {
        Ok(self.validation.clone())
    }

    fn discretization_nats(&self) -> f64 {
        self.dim as f64 * 256f64.ln()
    }
}

fn resolve(opts: &TrainOptions) -> Result<(App3Config, toml::Table)> {
    let (mut table, origin) = resolve_options(DEFAULT_CONFIG, opts)?;
    let run: RunGroup = group(&table, "run", &origin)?;
    let classifier: ClassifierGroup = group(&table, "classifier", &origin)?;
    if let Some(toml::Value::Table(model)) = table.get_mut("model") {
        // The INN objective runs the network backwards on random z: Glow's sigmoid scale, whose
        // inverse is unbounded, overflowed within 50 steps in our runs, a soft-clamped one did
        // not. Unless the config names a transform, the INN mode gets the clamped one.
        if classifier.mode == Mode::Inn
            && model.get("kind").and_then(|k| k.as_str()) == Some("glow")
            && !model.contains_key("transform")
        {
            let clamped: toml::Table = r#"kind = "affine"
scale = { kind = "atan", clamp = 1.0 }"#
                .parse()
                .expect("a TOML table");
            model.insert("transform".into(), toml::Value::Table(clamped));
            tracing::info!("classifier.mode = \"inn\": Glow couplings with an atan-clamped scale");
        }
        let int = |v: usize| toml::Value::Integer(v as i64);
        match model.get("kind").and_then(|k| k.as_str()) {
            Some("glow") => {
                for (k, v) in [
                    ("channels", run.channels),
                    ("height", run.height),
                    ("width", run.width),
                ] {
                    model.entry(k).or_insert_with(|| int(v));
                }
            }
            Some("real_nvp_dense") => {
                model.entry("dim").or_insert_with(|| int(run.spec().len()));
            }
            _ => {}
        }
    }
    let config: App3Config = from_table(&table, &origin, "")?;
    Ok((config, table))
}

/// The images of `set` at `rows` and their labels among `classes`.
fn take(set: &ImageSet, rows: &[usize], classes: &[String]) -> (Vec<u8>, Vec<usize>) {
    (
        rows.iter().flat_map(|&i| set.image(i).to_vec()).collect(),
        rows.iter()
            .map(|&i| {
                classes
                    .iter()
                    .position(|c| *c == set.classes[i])
                    .unwrap_or(0)
            })
            .collect(),
    )
}

/// A copy of `set` with only the images at `rows`.
fn subset(set: &ImageSet, rows: &[usize]) -> ImageSet {
    ImageSet {
        spec: set.spec,
        pixels: rows.iter().flat_map(|&i| set.image(i).to_vec()).collect(),
        paths: rows.iter().map(|&i| set.paths[i].clone()).collect(),
        classes: rows.iter().map(|&i| set.classes[i].clone()).collect(),
        skipped: set.skipped.clone(),
    }
}

/// Train application 3 as configured, then report on the validation folders.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::one_process(opts, APP)?;
    let (config, table) = resolve(opts)?;
    let spec = config.run.spec();
    let root = ImageRoot::parse(&config.run.images)?;
    let all_train = load_split(&root, "train", spec, config.run.on_bad_image)?;
    let classes = all_train.class_names();
    if classes.len() < 2 {
        bail!(
            "{}: train/ has only the class folder {:?}; a classifier needs at least 2 (train/<class>/ \
             for each class)",
            config.run.images,
            classes
        );
    }
    let val_set = match load_split(&root, "val", spec, config.run.on_bad_image) {
        Ok(v) => Some(v),
        Err(flowdata::DataError::Invalid(msg)) if msg.contains("no `val/`") => None,
        Err(e) => return Err(e.into()),
    };
    // Validation: val/ images of the training classes, else a seeded held-out share of train/.
    let seen = |set: &ImageSet| -> Vec<usize> {
        (0..set.len())
            .filter(|&i| classes.contains(&set.classes[i]))
            .collect()
    };
    let (train_set, (val_pixels, val_labels)) = match &val_set {
        Some(v) if !seen(v).is_empty() => (all_train, take(v, &seen(v), &classes)),
        _ => {
            let mut order: Vec<usize> = (0..all_train.len()).collect();
            order.shuffle(&mut flowdata::batch_rng(config.training.seed, u64::MAX));
            let n_val = ((all_train.len() as f64 * config.run.validation_fraction) as usize)
                .clamp(1, all_train.len() - 1);
            let held = take(&all_train, &order[..n_val], &classes);
            (subset(&all_train, &order[n_val..]), held)
        }
    };
    let labels: Vec<usize> = train_set
        .classes
        .iter()
        .map(|c| classes.iter().position(|k| k == c).unwrap_or(0))
        .collect();
    let dim = spec.len();
    let (objective, classifier) =
        config
            .classifier
            .objective(dim, classes.len(), false, &config.inn)?;
    tracing::info!(
        "{}: {} training images of {:?}, {} validation images, {}",
        config.run.images,
        train_set.len(),
        classes,
        val_labels.len(),
        config.classifier.mode.name()
    );
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
            ("images".into(), config.run.images.clone()),
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
    let train_set = Arc::new(train_set);
    let mut data = LabelledImages {
        batches: ImageBatches::new(
            train_set.clone(),
            config.run.augment,
            config.training.seed,
            config.training.batch_size,
            config.run.prefetch,
        ),
        labels,
        classes: classes.len(),
        validation: Batch {
            x: to_unit(&val_pixels),
            y: one_hot(&val_labels, classes.len()),
        },
        dim,
    };
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
        let flow = outcome.flow.valid();
        save_flow(
            &flow,
            &run_dir.join("model.safetensors"),
            serde_json::json!({ "app": APP, "images": config.run.images }),
        )?;
        tracker.log_artifact(&run_dir.join("classes.json"), Some("report"));
        let device = crate::run::device();
        let val_x = to_unit(&val_pixels);
        let lp = class_log_probs(&classifier, &flow, &val_x, dim, &device);
        let m = metrics(&lp, &val_labels, &classes);
        let mut figures = Vec::new();

        // Class-conditional samples: a row per class.
        let per_row = config.run.samples_per_class.max(1);
        let mut grid = Vec::new();
        for c in 0..classes.len() {
            if let Some(x) = classifier.sample_class(
                &flow,
                c,
                classes.len(),
                per_row,
                config.run.temperature,
                config.training.seed + c as u64,
                &device,
            ) {
                grid.extend(to_vec(x.into_data()).chunks(dim).map(to_pixels));
            }
        }
        save_grid(&run_dir.join("class_samples.png"), &grid, spec, per_row, 3)?;
        figures.push("class_samples.png".to_string());

        // Out-of-distribution detection by bits/dim, when val/ has other classes.
        let ood = match &val_set {
            Some(v) => {
                let unseen: Vec<usize> = (0..v.len())
                    .filter(|&i| !classes.contains(&v.classes[i]))
                    .collect();
                if unseen.is_empty() {
                    None
                } else {
                    let bpd = |pixels: &[u8]| -> Vec<f64> {
                        log_prob_rows(&flow, &to_unit(pixels), dim, &device)
                            .iter()
                            .map(|&l| bits_per_dim_8bit(f64::from(l), dim))
                            .collect()
                    };
                    let seen_bpd = bpd(&val_pixels);
                    let (unseen_pixels, _) = take(v, &unseen, &classes);
                    let unseen_bpd = bpd(&unseen_pixels);
                    let scores: Vec<f64> = seen_bpd.iter().chain(&unseen_bpd).copied().collect();
                    let outlier: Vec<bool> =
                        (0..scores.len()).map(|i| i >= seen_bpd.len()).collect();
                    let mut folders: Vec<String> =
                        unseen.iter().map(|&i| v.classes[i].clone()).collect();
                    folders.dedup();
                    let a = auroc(&scores, &outlier);
                    histograms(
                        &run_dir.join("ood_bits_per_dim.png"),
                        "bits/dim: training classes against unseen ones",
                        &[
                            ("seen classes".to_string(), seen_bpd.clone()),
                            (
                                format!("unseen: {}", folders.join(", ")),
                                unseen_bpd.clone(),
                            ),
                        ],
                        None,
                    )?;
                    roc_curves(
                        &run_dir.join("ood_roc.png"),
                        "unseen classes by bits/dim",
                        &[RocCurve {
                            name: "bits/dim".into(),
                            points: roc_curve(&scores, &outlier),
                            auroc: a.unwrap_or(f64::NAN),
                        }],
                    )?;
                    figures.push("ood_bits_per_dim.png".into());
                    figures.push("ood_roc.png".into());
                    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
                    Some(OodReport {
                        folders,
                        images: unseen.len(),
                        auroc_bits_per_dim: a,
                        seen_bits_per_dim: mean(&seen_bpd),
                        unseen_bits_per_dim: mean(&unseen_bpd),
                    })
                }
            }
            None => None,
        };
        history_curves(
            &run_dir.join("loss.png"),
            "loss per epoch",
            &outcome.history,
        )?;
        figures.push("loss.png".into());
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
        if let Some(a) = ood.as_ref().and_then(|o| o.auroc_bits_per_dim) {
            tracker.log_metric("ood_auroc_bits_per_dim", a, steps);
        }
        tracker.flush();
        tracing::info!(
            "validation accuracy {:.4}, expected calibration error {:.4}{}",
            m.accuracy,
            m.expected_calibration_error,
            ood.as_ref()
                .and_then(|o| o.auroc_bits_per_dim)
                .map_or(String::new(), |a| format!(
                    "; unseen classes by bits/dim: AUROC {a:.4}"
                ))
        );
        let steps_per_sec = outcome.steps_per_sec(config.training.batch_size);
        Ok(Report {
            images: config.run.images.clone(),
            mode: config.classifier.mode,
            classes: classes.clone(),
            metrics: m,
            ood,
            train_seconds: seconds,
            steps_per_sec,
            history: outcome.history.clone(),
            figures,
            tracking_run: PathBuf::new(),
            remote_run_id: None,
        })
    });
    let report = close_run(tracker, &run_dir, result, |r, local, remote| {
        r.tracking_run = local;
        r.remote_run_id = remote;
    })?;
    Ok(TrainSummary { run_dir, report })
}

/// One image's prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// Where it came from.
    pub path: String,
    /// Its folder.
    pub folder: String,
    /// The most probable class.
    pub predicted: String,
    /// `p(class | image)`, in the order of the run's classes.
    pub probabilities: Vec<f32>,
    /// Its bits/dim under the model (high: unlike the training images).
    pub bits_per_dim: f64,
}

/// Class probabilities of the images at `images` (a folder of `<class>/` subfolders or images,
/// `embedded:<set>/val`, or `s3://...`) under the model of the run in `run`; and the run's
/// classes.
pub fn predict(run: &Path, images: &str) -> Result<(Vec<Prediction>, Vec<String>)> {
    let file = ClassesFile::load(run)?;
    let (flow, _) = load_flow(&run.join("model.safetensors"), &crate::run::device())
        .with_context(|| format!("{} has no usable model", run.display()))?;
    let config: App3Config = {
        let text = std::fs::read_to_string(run.join("config.toml"))
            .with_context(|| format!("cannot read {}/config.toml", run.display()))?;
        let table: toml::Table = text.parse()?;
        from_table(&table, &format!("{}/config.toml", run.display()), "")?
    };
    let spec = config.run.spec();
    let set = load_any(images, spec, config.run.on_bad_image)?;
    let classifier = file.classifier()?;
    let dim = spec.len();
    let device = crate::run::device();
    let x = to_unit(&set.pixels);
    let lp = class_log_probs(&classifier, &flow, &x, dim, &device);
    let bpd: Vec<f64> = log_prob_rows(&flow, &x, dim, &device)
        .iter()
        .map(|&l| bits_per_dim_8bit(f64::from(l), dim))
        .collect();
    let k = file.classes.len();
    let out = (0..set.len())
        .map(|i| {
            let probs: Vec<f32> = lp[i * k..(i + 1) * k].iter().map(|v| v.exp()).collect();
            let best = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(j, _)| j);
            Prediction {
                path: set.paths[i].clone(),
                folder: set.classes[i].clone(),
                predicted: file.classes[best].clone(),
                probabilities: probs,
                bits_per_dim: bpd[i],
            }
        })
        .collect();
    Ok((out, file.classes))
}
