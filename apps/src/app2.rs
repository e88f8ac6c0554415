//! Application 2: image generation and anomaly detection. A Glow (or RealNVP) learns the
//! images of `ROOT/train/<class>/` by maximum likelihood on dequantised pixels; the run gets
//! bits/dim, samples at several temperatures, reconstructions, latent interpolations and
//! latent statistics, and the validation folders are scored for outliers with three scores:
//! bits/dim, a complexity-corrected score and a typicality score.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use flowcore::checkpoint::{load_flow, save_flow};
use flowcore::tracking::Tracker;
use flowcore::train::{
    self, Batch, Collective, DataSource, EpochStats, SingleProcess, TrainingConfig,
};
use flowcore::{ArchitectureConfig, BaseConfig, Flow};
use flowdata::images::{
    Augment, ImageBatches, ImageRoot, ImageSet, ImageSpec, OnBadImage, load_any, load_split,
    png_bits, save_grid, to_pixels, to_unit,
};
use serde::{Deserialize, Serialize};

use crate::config::{from_table, group, resolve_options};
use crate::infer::{encode_rows, log_prob_rows, rows, to_vec};
use crate::plot::{RocCurve, histograms, nll_curves, roc_curves};
use crate::run::{RunPlace, close_run, fit_tracked, fit_worker, open_run};
use crate::scores::{auroc, quantile, roc_curve};

pub use crate::run::TrainOptions;

/// The binary's name, used as the `app` tag.
pub const APP: &str = "train_flowmodels2";

/// The default config, `apps/configs/app2.toml`, embedded.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/app2.toml");

/// The outlier scores, in the order of [`ImageScore::values`]; higher is more anomalous.
pub const SCORE_NAMES: [&str; 3] = ["bits_per_dim", "complexity_corrected", "typicality"];

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
    /// The image root with `train/<class>/` and `val/<class>/`: a folder, or
    /// `embedded:fashion-mnist`.
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
    /// Temperatures of the sample grid.
    pub temperatures: Vec<f64>,
    /// Thresholds are this quantile of the training images' scores.
    pub score_quantile: f64,
    /// Training images scored for the thresholds and the typicality reference.
    pub reference_images: usize,
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

/// The whole app-2 config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App2Config {
    /// Run, data and output settings.
    pub run: RunGroup,
    /// The training engine.
    pub training: TrainingConfig,
    /// The flow.
    pub model: ArchitectureConfig,
}

/// What the scores of the training images say: the thresholds and the typical bits/dim.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reference {
    /// The training classes: folders of these names are normal, others outliers.
    pub normal_classes: Vec<String>,
    /// Mean bits/dim of the training images scored.
    pub mean_bits_per_dim: f64,
    /// Their standard deviation.
    pub std_bits_per_dim: f64,
    /// The quantile the thresholds are taken at.
    pub quantile: f64,
    /// One threshold per score of [`SCORE_NAMES`].
    pub thresholds: Vec<f64>,
    /// Training images scored.
    pub images: usize,
    /// Image size the model takes.
    pub spec: ImageSpec,
}

/// One image's scores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageScore {
    /// Where it came from.
    pub path: String,
    /// Its folder (class).
    pub folder: String,
    /// Scores in the order of [`SCORE_NAMES`].
    pub values: [f64; 3],
}

/// One score over a scored set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoreStat {
    /// Which score.
    pub name: String,
    /// Above this an image is flagged.
    pub threshold: f64,
    /// Area under the ROC curve, outlier folders against normal ones, when both are present.
    pub auroc: Option<f64>,
}

/// One folder of a scored set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FolderStat {
    /// The folder.
    pub folder: String,
    /// Whether it is a training class.
    pub normal: bool,
    /// Images.
    pub images: usize,
    /// Mean of each score.
    pub mean: Vec<f64>,
    /// Fraction flagged by each score's threshold.
    pub flagged: Vec<f64>,
}

/// What scoring wrote and found; also `<csv stem>_summary.json` beside the CSV.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoreSummary {
    /// The images scored.
    pub source: String,
    /// The CSV of per-image scores.
    pub csv: PathBuf,
    /// This summary, as JSON beside the CSV.
    pub summary: PathBuf,
    /// Per score.
    pub scores: Vec<ScoreStat>,
    /// Per folder.
    pub folders: Vec<FolderStat>,
    /// Images skipped as unreadable.
    pub skipped: Vec<(String, String)>,
    /// Figures written (ROC, histograms).
    pub figures: Vec<PathBuf>,
    /// Images scored per second.
    pub images_per_sec: f64,
}

impl ScoreSummary {
    /// The score with the highest AUROC, if any has one.
    pub fn best(&self) -> Option<&ScoreStat> {
        self.scores
            .iter()
            .filter(|s| s.auroc.is_some())
            .max_by(|a, b| a.auroc.unwrap_or(0.0).total_cmp(&b.auroc.unwrap_or(0.0)))
    }
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The image root.
    pub images: String,
    /// Training images, and how many were skipped.
    pub train_images: usize,
    /// Unreadable training images skipped.
    pub train_skipped: usize,
    /// Validation images of the training classes.
    pub val_images: usize,
    /// Validation bits/dim (8-bit, all preprocessing log-dets included).
    pub val_bits_per_dim: f64,
    /// Largest |x - decode(encode(x))| over the reconstructed images, in [0, 1] units.
    pub reconstruction_max_abs_err: f64,
    /// Mean optimizer steps per second.
    pub steps_per_sec: f64,
    /// Per-epoch statistics.
    pub history: Vec<EpochStats>,
    /// Figures, relative to the run directory.
    pub figures: Vec<String>,
    /// The scores of the validation folders.
    pub scores: ScoreSummary,
    /// The local tracking run.
    pub tracking_run: PathBuf,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

struct Images {
    batches: ImageBatches,
    validation: Vec<f32>,
    dim: usize,
}

impl DataSource for Images {
    fn dim(&self) -> usize {
        self.dim
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        Ok(Batch::unlabelled(
            self.batches.batch(step, batch_size).values,
        ))
    }

    fn train_rows(
        &mut self,
        step: u64,
        global: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Batch, String> {
        Ok(Batch::unlabelled(
            self.batches.rows(step, global, rows).values,
        ))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        Ok(Batch::unlabelled(self.validation.clone()))
    }

    fn discretization_nats(&self) -> f64 {
        self.dim as f64 * 256f64.ln()
    }
}

/// Bits per dimension of 8-bit data from `log p(x)` of its `[0, 1)` scaling.
pub fn bits_per_dim_8bit(log_prob: f64, dim: usize) -> f64 {
    train::bits_per_dim(-log_prob + dim as f64 * 256f64.ln(), dim)
}

fn resolve(opts: &TrainOptions) -> Result<(App2Config, toml::Table)> {
    let (mut table, origin) = resolve_options(DEFAULT_CONFIG, opts)?;
    let run: RunGroup = group(&table, "run", &origin)?;
    if let Some(toml::Value::Table(model)) = table.get_mut("model") {
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
    let config: App2Config = from_table(&table, &origin, "")?;
    Ok((config, table))
}

/// Split the validation images: those of the training classes, for validation NLL.
fn normal_rows(set: &ImageSet, normal: &[String]) -> Vec<usize> {
    (0..set.len())
        .filter(|&i| normal.contains(&set.classes[i]))
        .collect()
}

fn pixels_of(set: &ImageSet, idx: &[usize]) -> Vec<u8> {
    idx.iter().flat_map(|&i| set.image(i).to_vec()).collect()
}

/// Train application 2 as configured, then report and score the validation folders.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    train_ranked(opts, &SingleProcess)?.context("one process is rank 0")
}

/// [`train`] as one rank of a data-parallel run over `ranks`: every rank loads the image set and
/// makes (decodes, augments, dequantises) only its rows of each batch; rank 0 writes the run,
/// reports, scores and returns the summary, the others return `None`.
pub fn train_ranked(opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
    let (config, table) = resolve(opts)?;
    let spec = config.run.spec();
    let root = ImageRoot::parse(&config.run.images)?;
    let train_set = load_split(&root, "train", spec, config.run.on_bad_image)?;
    let normal = train_set.class_names();
    let val_set = match load_split(&root, "val", spec, config.run.on_bad_image) {
        Ok(v) => Some(v),
        Err(flowdata::DataError::Invalid(msg)) if msg.contains("no `val/`") => None,
        Err(e) => return Err(e.into()),
    };
    // Validation: val/ images of the training classes, else a held-out slice of train/.
    let (train_set, val_pixels, val_count) = match &val_set {
        Some(v) if !normal_rows(v, &normal).is_empty() => {
            let idx = normal_rows(v, &normal);
            (train_set, pixels_of(v, &idx), idx.len())
        }
        _ => {
            let n_val = ((train_set.len() as f64 * config.run.validation_fraction) as usize)
                .clamp(1, train_set.len().saturating_sub(1).max(1));
            let mut rest = train_set.clone();
            let cut = (rest.len() - n_val) * spec.len();
            let val = rest.pixels.split_off(cut);
            rest.paths.truncate(rest.len() - n_val);
            rest.classes.truncate(rest.paths.len());
            (rest, val, n_val)
        }
    };
    tracing::info!(
        "{}: {} training images of {:?}, {} validation images{}",
        config.run.images,
        train_set.len(),
        normal,
        val_count,
        if train_set.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable skipped", train_set.skipped.len())
        }
    );

    let images = |set: &Arc<ImageSet>| Images {
        batches: ImageBatches::new(
            set.clone(),
            config.run.augment,
            config.training.seed,
            config.training.batch_size,
            config.run.prefetch,
        ),
        validation: to_unit(&val_pixels),
        dim: spec.len(),
    };
    let train_set = Arc::new(train_set);
    if !ranks.is_root() {
        let (ml, base) = (train::MaximumLikelihood, BaseConfig::default());
        let mut data = images(&train_set);
        fit_worker(
            &config.model,
            &base,
            &ml,
            &mut data,
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
        vec![("images".into(), config.run.images.clone())],
    )?;
    let mut data = images(&train_set);
    let result = fit_tracked(
        &config.model,
        &BaseConfig::default(),
        &train::MaximumLikelihood,
        &mut data,
        &config.training,
        &run_dir,
        opts,
        &mut tracker,
        ranks,
    )
    .and_then(|outcome| {
        report(
            &config,
            &run_dir,
            &train_set,
            &val_pixels,
            val_set.as_ref(),
            &normal,
            &outcome,
            &mut tracker,
        )
    });
    let report = close_run(tracker, &run_dir, result, |r, local, _| {
        r.tracking_run = local;
    })?;
    Ok(Some(TrainSummary { run_dir, report }))
}

fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let omega = (dot / (na * nb).max(1e-12)).clamp(-1.0, 1.0).acos();
    if omega.abs() < 1e-6 {
        return a
            .iter()
            .zip(b)
            .map(|(x, y)| ((1.0 - t) * f64::from(*x) + t * f64::from(*y)) as f32)
            .collect();
    }
    let (wa, wb) = (
        ((1.0 - t) * omega).sin() / omega.sin(),
        (t * omega).sin() / omega.sin(),
    );
    a.iter()
        .zip(b)
        .map(|(x, y)| (wa * f64::from(*x) + wb * f64::from(*y)) as f32)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn report(
    config: &App2Config,
    run_dir: &Path,
    train_set: &ImageSet,
    val_pixels: &[u8],
    val_set: Option<&ImageSet>,
    normal: &[String],
    outcome: &train::FitOutcome,
    tracker: &mut Tracker,
) -> Result<Report> {
    let spec = config.run.spec();
    let dim = spec.len();
    let device = crate::run::device();
    let flow = outcome.flow.valid();
    save_flow(
        &outcome.flow,
        &run_dir.join("model.safetensors"),
        serde_json::json!({ "app": APP, "images": config.run.images, "spec": spec }),
    )?;
    let val_x = to_unit(val_pixels);
    let n_val = val_x.len() / dim;
    let lp = log_prob_rows(&flow, &val_x, dim, &device);
    let val_bpd = lp
        .iter()
        .map(|&l| bits_per_dim_8bit(f64::from(l), dim))
        .sum::<f64>()
        / n_val as f64;
    let mut figures = Vec::new();

    // Samples at each temperature, one row per temperature.
    let per_row = 8;
    let mut grid = Vec::new();
    for (row, &t) in config.run.temperatures.iter().enumerate() {
        let x = flow.sample(per_row, t, config.training.seed + row as u64, None, &device);
        grid.extend(to_vec(x.into_data()).chunks(dim).map(to_pixels));
    }
    save_grid(&run_dir.join("samples.png"), &grid, spec, per_row, 3)?;
    figures.push("samples.png".to_string());

    // Reconstructions: originals above, decode(encode(x)) below.
    let k = per_row.min(n_val);
    let originals = &val_x[..k * dim];
    let z = encode_rows(&flow, originals, dim, &device);
    let back = to_vec(flow.decode(rows(&z, dim, &device), None).into_data());
    let recon_err = originals
        .iter()
        .zip(&back)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    let mut grid: Vec<Vec<u8>> = originals.chunks(dim).map(to_pixels).collect();
    grid.extend(back.chunks(dim).map(to_pixels));
    save_grid(&run_dir.join("reconstructions.png"), &grid, spec, k, 3)?;
    figures.push("reconstructions.png".to_string());

    // Interpolation between two validation images: linear (top) and spherical (bottom).
    if k >= 2 {
        let (z0, z1) = (&z[..dim], &z[dim..2 * dim]);
        let steps = 8;
        let mut zs = Vec::new();
        for t in (0..steps).map(|i| i as f64 / (steps - 1) as f64) {
            zs.extend(
                z0.iter()
                    .zip(z1)
                    .map(|(a, b)| ((1.0 - t) * f64::from(*a) + t * f64::from(*b)) as f32),
            );
        }
        for t in (0..steps).map(|i| i as f64 / (steps - 1) as f64) {
            zs.extend(slerp(z0, z1, t));
        }
        let xs = to_vec(flow.decode(rows(&zs, dim, &device), None).into_data());
        let grid: Vec<Vec<u8>> = xs.chunks(dim).map(to_pixels).collect();
        save_grid(&run_dir.join("interpolation.png"), &grid, spec, steps, 3)?;
        figures.push("interpolation.png".to_string());
    }

    // Per-dimension latent mean and standard deviation over the validation images.
    let z_all = encode_rows(&flow, &val_x, dim, &device);
    let mut mean = vec![0.0f64; dim];
    let mut sq = vec![0.0f64; dim];
    for row in z_all.chunks(dim) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += f64::from(v);
            sq[j] += f64::from(v).powi(2);
        }
    }
    let std: Vec<f64> = (0..dim)
        .map(|j| {
            let m = mean[j] / n_val as f64;
            (sq[j] / n_val as f64 - m * m).max(0.0).sqrt()
        })
        .collect();
    let mean: Vec<f64> = mean.iter().map(|m| m / n_val as f64).collect();
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let latent = serde_json::json!({
        "images": n_val,
        "mean_of_means": avg(&mean),
        "mean_abs_mean": avg(&mean.iter().map(|m| m.abs()).collect::<Vec<_>>()),
        "mean_std": avg(&std),
        "mean": mean,
        "std": std,
    });
    flowcore::checkpoint::write_atomic(
        &run_dir.join("latent_stats.json"),
        serde_json::to_string_pretty(&latent)?.as_bytes(),
    )?;

    let train_curve: Vec<f64> = outcome
        .history
        .iter()
        .map(|e| bits_per_dim_8bit(-e.train_loss, dim))
        .collect();
    let val_curve: Vec<f64> = outcome
        .history
        .iter()
        .filter_map(|e| e.val_bits_per_dim)
        .collect();
    nll_curves(
        &run_dir.join("bits_per_dim.png"),
        &train_curve,
        &val_curve,
        None,
    )?;
    figures.push("bits_per_dim.png".to_string());

    // The reference: scores of training images give the thresholds and the typical bits/dim.
    let n_ref = config.run.reference_images.min(train_set.len()).max(1);
    let stride = (train_set.len() / n_ref).max(1);
    let ref_idx: Vec<usize> = (0..train_set.len()).step_by(stride).take(n_ref).collect();
    let ref_pixels = pixels_of(train_set, &ref_idx);
    let ref_bpd = bits_per_dim_rows(&flow, &ref_pixels, spec, &device);
    let mean_bpd = avg(&ref_bpd);
    let std_bpd =
        (ref_bpd.iter().map(|b| (b - mean_bpd).powi(2)).sum::<f64>() / ref_bpd.len() as f64).sqrt();
    let ref_scores: Vec<[f64; 3]> = ref_bpd
        .iter()
        .zip(ref_pixels.chunks(dim))
        .map(|(&b, px)| score_values(b, px, spec, mean_bpd))
        .collect();
    let q = config.run.score_quantile;
    let reference = Reference {
        normal_classes: normal.to_vec(),
        mean_bits_per_dim: mean_bpd,
        std_bits_per_dim: std_bpd,
        quantile: q,
        thresholds: (0..3)
            .map(|s| quantile(&ref_scores.iter().map(|v| v[s]).collect::<Vec<_>>(), q))
            .collect(),
        images: ref_idx.len(),
        spec,
    };
    flowcore::checkpoint::write_atomic(
        &run_dir.join("reference.json"),
        serde_json::to_string_pretty(&reference)?.as_bytes(),
    )?;

    // Score the validation folders.
    let scores = match val_set {
        Some(v) => score_set(
            &flow,
            &reference,
            v,
            &format!("{}/val", config.run.images),
            &run_dir.join("scores").join("scores.csv"),
        )?,
        None => bail!("{}: no val/ folder to score", config.run.images),
    };

    let steps_per_sec = outcome.steps_per_sec(config.training.batch_size);
    for f in &figures {
        tracker.log_artifact(&run_dir.join(f), Some("plots"));
    }
    for f in scores.figures.iter().chain([&scores.csv, &scores.summary]) {
        tracker.log_artifact(f, Some("scores"));
    }
    for f in ["reference.json", "latent_stats.json", "config.toml"] {
        tracker.log_artifact(&run_dir.join(f), Some("report"));
    }
    let last_step = (outcome.history.len() * config.training.steps_per_epoch) as u64;
    tracker.log_metric("final_val_bits_per_dim", val_bpd, last_step);
    for s in &scores.scores {
        if let Some(a) = s.auroc {
            tracker.log_metric(&format!("auroc_{}", s.name), a, last_step);
        }
    }
    tracker.flush();
    Ok(Report {
        images: config.run.images.clone(),
        train_images: train_set.len(),
        train_skipped: train_set.skipped.len(),
        val_images: n_val,
        val_bits_per_dim: val_bpd,
        reconstruction_max_abs_err: recon_err,
        steps_per_sec,
        history: outcome.history.clone(),
        figures,
        scores,
        tracking_run: PathBuf::new(),
    })
}

fn bits_per_dim_rows(flow: &Flow, pixels: &[u8], spec: ImageSpec, device: &Device) -> Vec<f64> {
    let dim = spec.len();
    log_prob_rows(flow, &to_unit(pixels), dim, device)
        .into_iter()
        .map(|lp| bits_per_dim_8bit(f64::from(lp), dim))
        .collect()
}

/// The three scores of one image from its bits/dim.
fn score_values(bpd: f64, pixels: &[u8], spec: ImageSpec, typical_bpd: f64) -> [f64; 3] {
    let complexity = png_bits(pixels, spec) as f64 / spec.len() as f64;
    [bpd, bpd - complexity, (bpd - typical_bpd).abs()]
}

/// Score every image of `set`; write the per-image CSV to `csv_path` and beside it
/// `<stem>_summary.json`, `<stem>_roc.png` and `<stem>_hist_<score>.png`.
pub fn score_set(
    flow: &Flow,
    reference: &Reference,
    set: &ImageSet,
    source: &str,
    csv_path: &Path,
) -> Result<ScoreSummary> {
    let out_dir = csv_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = csv_path
        .file_stem()
        .map_or_else(|| "scores".to_string(), |s| s.to_string_lossy().to_string());
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let spec = reference.spec;
    let device = crate::run::device();
    let started = std::time::Instant::now();
    let bpd = bits_per_dim_rows(flow, &set.pixels, spec, &device);
    let rows: Vec<ImageScore> = (0..set.len())
        .map(|i| ImageScore {
            path: set.paths[i].clone(),
            folder: set.classes[i].clone(),
            values: score_values(bpd[i], set.image(i), spec, reference.mean_bits_per_dim),
        })
        .collect();
    let images_per_sec = set.len() as f64 / started.elapsed().as_secs_f64();

    let csv_path = csv_path.to_path_buf();
    let mut csv = format!(
        "path,folder,outlier,{},flagged_by_{}\n",
        SCORE_NAMES.join(","),
        SCORE_NAMES[0]
    );
    let is_outlier = |r: &ImageScore| !reference.normal_classes.contains(&r.folder);
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            csv_field(&r.path),
            csv_field(&r.folder),
            is_outlier(r),
            r.values[0],
            r.values[1],
            r.values[2],
            r.values[0] > reference.thresholds[0]
        ));
    }
    flowcore::checkpoint::write_atomic(&csv_path, csv.as_bytes())?;

    let labels: Vec<bool> = rows.iter().map(is_outlier).collect();
    let mut folders: Vec<String> = rows.iter().map(|r| r.folder.clone()).collect();
    folders.sort();
    folders.dedup();
    let mut stats = Vec::new();
    let mut curves = Vec::new();
    let mut figures = Vec::new();
    for (s, name) in SCORE_NAMES.iter().enumerate() {
        let values: Vec<f64> = rows.iter().map(|r| r.values[s]).collect();
        let auc = auroc(&values, &labels);
        if let Some(a) = auc {
            curves.push(RocCurve {
                name: name.to_string(),
                points: roc_curve(&values, &labels),
                auroc: a,
            });
        }
        stats.push(ScoreStat {
            name: name.to_string(),
            threshold: reference.thresholds[s],
            auroc: auc,
        });
        let groups: Vec<(String, Vec<f64>)> = folders
            .iter()
            .map(|f| {
                (
                    f.clone(),
                    rows.iter()
                        .filter(|r| &r.folder == f)
                        .map(|r| r.values[s])
                        .collect(),
                )
            })
            .collect();
        let path = out_dir.join(format!("{stem}_hist_{name}.png"));
        histograms(
            &path,
            &format!("{name} per folder"),
            &groups,
            Some(reference.thresholds[s]),
        )?;
        figures.push(path);
    }
    if !curves.is_empty() {
        let path = out_dir.join(format!("{stem}_roc.png"));
        roc_curves(
            &path,
            "ROC: outlier folders against the training classes",
            &curves,
        )?;
        figures.push(path);
    }
    let folder_stats = folders
        .iter()
        .map(|f| {
            let members: Vec<&ImageScore> = rows.iter().filter(|r| &r.folder == f).collect();
            let n = members.len().max(1) as f64;
            FolderStat {
                folder: f.clone(),
                normal: reference.normal_classes.contains(f),
                images: members.len(),
                mean: (0..3)
                    .map(|s| members.iter().map(|r| r.values[s]).sum::<f64>() / n)
                    .collect(),
                flagged: (0..3)
                    .map(|s| {
                        members
                            .iter()
                            .filter(|r| r.values[s] > reference.thresholds[s])
                            .count() as f64
                            / n
                    })
                    .collect(),
            }
        })
        .collect();
    let summary_path = out_dir.join(format!("{stem}_summary.json"));
    let summary = ScoreSummary {
        source: source.to_string(),
        csv: csv_path,
        summary: summary_path.clone(),
        scores: stats,
        folders: folder_stats,
        skipped: set.skipped.clone(),
        figures,
        images_per_sec,
    };
    flowcore::checkpoint::write_atomic(
        &summary_path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Score the images at `images` (a folder with `<class>/` subfolders or images, or
/// `embedded:fashion-mnist/val`, or `s3://bucket/prefix`) with the model of the run in `run`;
/// the CSV goes to `csv_path`, the summary and figures beside it.
pub fn score(
    run: &Path,
    images: &str,
    csv_path: &Path,
    on_bad: OnBadImage,
) -> Result<ScoreSummary> {
    let model = run.join("model.safetensors");
    let reference_path = run.join("reference.json");
    if !model.exists() || !reference_path.exists() {
        bail!(
            "{} has no model.safetensors and reference.json: is it a finished app-2 run directory?",
            run.display()
        );
    }
    let reference: Reference = serde_json::from_str(
        &std::fs::read_to_string(&reference_path)
            .with_context(|| format!("cannot read {}", reference_path.display()))?,
    )
    .with_context(|| format!("{} is not a score reference", reference_path.display()))?;
    let (flow, _) = load_flow(&model, &crate::run::device())?;
    let set = load_any(images, reference.spec, on_bad)?;
    score_set(&flow, &reference, &set, images, csv_path)
}

/// The scores table for a terminal.
pub fn format_table(summary: &ScoreSummary) -> String {
    let mut out = format!(
        "{:<16} {:>7} {:>8} {:>14} {:>12} {:>9}\n",
        "folder", "images", "bits/dim", "complexity-cor", "typicality", "flagged"
    );
    for f in &summary.folders {
        out.push_str(&format!(
            "{:<16} {:>7} {:>8.4} {:>14.4} {:>12.4} {:>8.1}%\n",
            format!("{}{}", f.folder, if f.normal { "" } else { " *" }),
            f.images,
            f.mean[0],
            f.mean[1],
            f.mean[2],
            100.0 * f.flagged[0]
        ));
    }
    out.push_str("(* not a training class; flagged: bits/dim above the training quantile)\n");
    for s in &summary.scores {
        out.push_str(&format!(
            "AUROC {:<22} {}   threshold {:.4}\n",
            s.name,
            s.auroc.map_or("-".to_string(), |a| format!("{a:.4}")),
            s.threshold
        ));
    }
    out
}
