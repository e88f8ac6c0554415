//! Outlier scores of images under a trained model: bits/dim, a complexity-corrected score and a
//! typicality score, thresholds from the training images ([`Reference`]), and per-folder
//! statistics, ROC curves and histograms of a scored set.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flowcore::Flow;
use flowdata::images::{ImageSet, ImageSpec, OnBadImage, load_any, png_bits};
use serde::{Deserialize, Serialize};

use super::data::pixels_of;
use crate::shared::csv::csv_field;
use crate::shared::images::bits_per_dim_rows;
use crate::shared::plot::{RocCurve, histograms, roc_curves};
use crate::shared::scores::{auroc, quantile, roc_curve};

/// The outlier scores, in the order of [`ImageScore::values`]; higher is more anomalous.
pub const SCORE_NAMES: [&str; 3] = ["bits_per_dim", "complexity_corrected", "typicality"];

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

/// The reference of a trained model: the scores of up to `n` training images (evenly spread
/// over the set) give the thresholds at quantile `q` and the typical bits/dim.
pub(super) fn reference(
    flow: &Flow,
    train_set: &ImageSet,
    spec: ImageSpec,
    normal: &[String],
    n: usize,
    q: f64,
) -> Reference {
    let dim = spec.len();
    let n_ref = n.min(train_set.len()).max(1);
    let stride = (train_set.len() / n_ref).max(1);
    let ref_idx: Vec<usize> = (0..train_set.len()).step_by(stride).take(n_ref).collect();
    let ref_pixels = pixels_of(train_set, &ref_idx);
    let ref_bpd = bits_per_dim_rows(flow, &ref_pixels, spec, &crate::run::device());
    let mean_bpd = ref_bpd.iter().sum::<f64>() / ref_bpd.len().max(1) as f64;
    let std_bpd =
        (ref_bpd.iter().map(|b| (b - mean_bpd).powi(2)).sum::<f64>() / ref_bpd.len() as f64).sqrt();
    let ref_scores: Vec<[f64; 3]> = ref_bpd
        .iter()
        .zip(ref_pixels.chunks(dim))
        .map(|(&b, px)| score_values(b, px, spec, mean_bpd))
        .collect();
    Reference {
        normal_classes: normal.to_vec(),
        mean_bits_per_dim: mean_bpd,
        std_bits_per_dim: std_bpd,
        quantile: q,
        thresholds: (0..3)
            .map(|s| quantile(&ref_scores.iter().map(|v| v[s]).collect::<Vec<_>>(), q))
            .collect(),
        images: ref_idx.len(),
        spec,
    }
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
    flowcore::io::write_atomic(&csv_path, csv.as_bytes())?;

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
    flowcore::io::write_atomic(
        &summary_path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
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
    let flow = crate::run::load_model(run, &super::APP)?;
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
