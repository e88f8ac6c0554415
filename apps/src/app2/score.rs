//! Outlier scores of a set of images under a trained model (see [`super::measures`] for what
//! each score is): thresholds from held-out (else training) images ([`Reference`]), the score
//! recommended for flagging, and per-folder statistics, ROC curves and histograms.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flowdata::images::{ImageSet, ImageSpec, OnBadImage, load_any};
use serde::{Deserialize, Serialize};

use super::background::BACKGROUND_FILE;
use super::measures::{Measured, Models, Scorer, TYPICALITY};
use crate::shared::csv::csv_field;
use crate::shared::plot::{RocCurve, histograms, roc_curves};
use crate::shared::scores::{auroc, fpr_at_tpr, quantile, roc_curve};

/// The score that flags images when no other is recommended.
pub const DEFAULT_SCORE: &str = "bits_per_dim";

/// What the scores of the reference images say: the thresholds and the typical bits/dim.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reference {
    /// The training classes: folders of these names are normal, others outliers.
    pub normal_classes: Vec<String>,
    /// Mean bits/dim of the reference images.
    pub mean_bits_per_dim: f64,
    /// Their standard deviation.
    pub std_bits_per_dim: f64,
    /// The quantile the thresholds are taken at.
    pub quantile: f64,
    /// The scores, in CSV order.
    #[serde(default = "legacy_names")]
    pub names: Vec<String>,
    /// One threshold per score of `names`.
    pub thresholds: Vec<f64>,
    /// Images scored for it.
    pub images: usize,
    /// Which images: `held-out` (of the training classes, not trained on) or `training`.
    #[serde(default = "training_source")]
    pub source: String,
    /// The score that flags images: the one that separated the run's validation folders best
    /// (`bits_per_dim` when they had no outliers).
    #[serde(default = "default_score")]
    pub recommended: String,
    /// Each level's latents in `z` for a multiscale Glow, the first level first.
    #[serde(default)]
    pub levels: Vec<Range<usize>>,
    /// Whether the run has a background model (`background.safetensors`).
    #[serde(default)]
    pub background: bool,
    /// Image size the model takes.
    pub spec: ImageSpec,
}

impl Reference {
    /// How images are measured against it.
    pub fn scorer(&self) -> Scorer {
        Scorer {
            spec: self.spec,
            typical_bits_per_dim: self.mean_bits_per_dim,
            levels: self.levels.clone(),
            background: self.background,
        }
    }

    /// The threshold of score `name` (NaN, flagging nothing, for a score it predates).
    pub fn threshold(&self, name: &str) -> f64 {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.thresholds.get(i).copied())
            .unwrap_or(f64::NAN)
    }
}

fn legacy_names() -> Vec<String> {
    ["bits_per_dim", "complexity_corrected", "typicality"]
        .map(String::from)
        .to_vec()
}

fn default_score() -> String {
    DEFAULT_SCORE.into()
}

fn training_source() -> String {
    "training".into()
}

/// One image's scores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageScore {
    /// Where it came from.
    pub path: String,
    /// Its folder (class).
    pub folder: String,
    /// Its measures and scores, in the order of the summary's `scores`.
    pub measured: Measured,
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
    /// The false positive rate at 95% true positive rate, likewise.
    #[serde(default)]
    pub fpr_at_95_tpr: Option<f64>,
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
    /// Mean of each score, in the order of the summary's `scores`.
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
    /// The score whose threshold flags images (the CSV's `flagged` column, the table's).
    #[serde(default = "default_score")]
    pub flagged_by: String,
    /// The levels' mean latent NLL per dimension per folder, when the model has levels.
    #[serde(default)]
    pub level_nll: Vec<(String, Vec<f64>)>,
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

    /// The index of score `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.scores.iter().position(|s| s.name == name)
    }
}

/// The reference of a trained model: the scores of up to `n` of the images `pixels` (evenly
/// spread over them; `source` says which they are) give the thresholds at quantile `q` and the
/// typical bits/dim. `scorer`: how images are measured, its typical bits/dim to be found.
pub(super) fn reference(
    models: Models,
    pixels: &[u8],
    source: &str,
    mut scorer: Scorer,
    normal: &[String],
    n: usize,
    q: f64,
) -> Reference {
    let spec = scorer.spec;
    let dim = spec.len();
    let available = pixels.len() / dim;
    let n_ref = n.min(available).max(1);
    let stride = (available / n_ref).max(1);
    let ref_pixels: Vec<u8> = (0..available)
        .step_by(stride)
        .take(n_ref)
        .flat_map(|i| &pixels[i * dim..(i + 1) * dim])
        .copied()
        .collect();
    let device = crate::run::device();
    let mut measured = scorer.measure(models, &ref_pixels, &device);
    let count = measured.len().max(1) as f64;
    let mean_bpd = measured.iter().map(|m| m.bits_per_dim).sum::<f64>() / count;
    let std_bpd = (measured
        .iter()
        .map(|m| (m.bits_per_dim - mean_bpd).powi(2))
        .sum::<f64>()
        / count)
        .sqrt();
    // Typicality is measured from the mean just found.
    scorer.typical_bits_per_dim = mean_bpd;
    for m in &mut measured {
        m.scores[TYPICALITY] = (m.bits_per_dim - mean_bpd).abs();
    }
    let names = scorer.names();
    Reference {
        normal_classes: normal.to_vec(),
        mean_bits_per_dim: mean_bpd,
        std_bits_per_dim: std_bpd,
        quantile: q,
        thresholds: (0..names.len())
            .map(|s| quantile(&measured.iter().map(|m| m.scores[s]).collect::<Vec<_>>(), q))
            .collect(),
        names,
        images: measured.len(),
        source: source.to_string(),
        recommended: DEFAULT_SCORE.into(),
        levels: scorer.levels,
        background: scorer.background,
        spec,
    }
}

/// Score every image of `set`; write the per-image CSV to `csv_path` and beside it
/// `<stem>_summary.json`, `<stem>_roc.png` and `<stem>_hist_<score>.png`. Images are flagged
/// by the reference's recommended score, or with `recommend`, by the score that separates
/// this set's outlier folders best (when it has both kinds).
pub fn score_set(
    models: Models,
    reference: &Reference,
    set: &ImageSet,
    source: &str,
    csv_path: &Path,
    recommend: bool,
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
    let scorer = reference.scorer();
    let names = scorer.names();
    let started = std::time::Instant::now();
    if reference.background != models.background.is_some() {
        bail!(
            "the reference was made {} a background model, and scoring is asked {}",
            if reference.background {
                "with"
            } else {
                "without"
            },
            if reference.background {
                "without"
            } else {
                "with"
            }
        );
    }
    let measured = scorer.measure(models, &set.pixels, &crate::run::device());
    let rows: Vec<ImageScore> = measured
        .into_iter()
        .enumerate()
        .map(|(i, measured)| ImageScore {
            path: set.paths[i].clone(),
            folder: set.classes[i].clone(),
            measured,
        })
        .collect();
    let images_per_sec = set.len() as f64 / started.elapsed().as_secs_f64();
    let thresholds: Vec<f64> = names.iter().map(|n| reference.threshold(n)).collect();

    let is_outlier = |r: &ImageScore| !reference.normal_classes.contains(&r.folder);
    let labels: Vec<bool> = rows.iter().map(is_outlier).collect();
    let mut folders: Vec<String> = rows.iter().map(|r| r.folder.clone()).collect();
    folders.sort();
    folders.dedup();
    let mut stats = Vec::new();
    let mut curves = Vec::new();
    let mut figures = Vec::new();
    for (s, name) in names.iter().enumerate() {
        let values: Vec<f64> = rows.iter().map(|r| r.measured.scores[s]).collect();
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
            threshold: thresholds[s],
            auroc: auc,
            fpr_at_95_tpr: fpr_at_tpr(&values, &labels, 0.95),
        });
        let groups: Vec<(String, Vec<f64>)> = folders
            .iter()
            .map(|f| {
                (
                    f.clone(),
                    rows.iter()
                        .filter(|r| &r.folder == f)
                        .map(|r| r.measured.scores[s])
                        .collect(),
                )
            })
            .collect();
        let path = out_dir.join(format!("{stem}_hist_{name}.png"));
        let threshold = Some(thresholds[s]).filter(|t| t.is_finite());
        histograms(&path, &format!("{name} per folder"), &groups, threshold)?;
        figures.push(path);
    }
    let best = stats
        .iter()
        .filter(|s| s.auroc.is_some() && s.threshold.is_finite())
        .max_by(|a, b| a.auroc.unwrap_or(0.0).total_cmp(&b.auroc.unwrap_or(0.0)));
    let flagged_by = match best {
        Some(b) if recommend => b.name.clone(),
        _ => reference.recommended.clone(),
    };
    let flag = names
        .iter()
        .position(|n| *n == flagged_by)
        .with_context(|| format!("no score named {flagged_by}"))?;

    let levels = rows.first().map_or(0, |r| r.measured.level_nll.len());
    let mut csv = format!("path,folder,outlier,{}", names.join(","));
    for l in 1..=levels {
        csv.push_str(&format!(",level_{l}_nll"));
    }
    csv.push_str(&format!(",flagged_by_{flagged_by}\n"));
    for r in &rows {
        let m = &r.measured;
        csv.push_str(&format!(
            "{},{},{}",
            csv_field(&r.path),
            csv_field(&r.folder),
            is_outlier(r)
        ));
        for v in m.scores.iter().chain(&m.level_nll) {
            csv.push_str(&format!(",{v}"));
        }
        csv.push_str(&format!(",{}\n", m.scores[flag] > thresholds[flag]));
    }
    let csv_path = csv_path.to_path_buf();
    flowcore::io::write_atomic(&csv_path, csv.as_bytes())?;

    if !curves.is_empty() {
        let path = out_dir.join(format!("{stem}_roc.png"));
        roc_curves(
            &path,
            "ROC: outlier folders against the training classes",
            &curves,
        )?;
        figures.push(path);
    }
    let k = names.len();
    let mut level_nll = Vec::new();
    let folder_stats = folders
        .iter()
        .map(|f| {
            let members: Vec<&Measured> = rows
                .iter()
                .filter(|r| &r.folder == f)
                .map(|r| &r.measured)
                .collect();
            let n = members.len().max(1) as f64;
            let mean = |values: &dyn Fn(&Measured) -> f64| {
                members.iter().map(|m| values(m)).sum::<f64>() / n
            };
            if levels > 0 {
                level_nll.push((
                    f.clone(),
                    (0..levels).map(|l| mean(&|m| m.level_nll[l])).collect(),
                ));
            }
            FolderStat {
                folder: f.clone(),
                normal: reference.normal_classes.contains(f),
                images: members.len(),
                mean: (0..k).map(|s| mean(&|m| m.scores[s])).collect(),
                flagged: (0..k)
                    .map(|s| mean(&|m| f64::from(u8::from(m.scores[s] > thresholds[s]))))
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
        flagged_by,
        level_nll,
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
    crate::run::reenter_in_pool!(score(run, images, csv_path, on_bad));
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
    let background = if reference.background {
        let path = run.join(BACKGROUND_FILE);
        let (flow, _) = flowcore::checkpoint::load_flow(&path, &crate::run::device())
            .with_context(|| format!("{}: the run's background model", path.display()))?;
        Some(flow)
    } else {
        None
    };
    let set = load_any(images, reference.spec, on_bad)?;
    let models = Models {
        flow: &flow,
        background: background.as_ref(),
    };
    score_set(models, &reference, &set, images, csv_path, false)
}

/// The scores table for a terminal.
pub fn format_table(summary: &ScoreSummary) -> String {
    let flag = summary.index(&summary.flagged_by).unwrap_or(0);
    let mut out = format!(
        "{:<16} {:>7} {:>9} {:>9}\n",
        "folder", "images", "bits/dim", "flagged"
    );
    for f in &summary.folders {
        out.push_str(&format!(
            "{:<16} {:>7} {:>9.4} {:>8.1}%\n",
            format!("{}{}", f.folder, if f.normal { "" } else { " *" }),
            f.images,
            f.mean[0],
            100.0 * f.flagged[flag]
        ));
    }
    out.push_str(&format!(
        "(* not a training class; flagged: {} above the reference images' quantile)\n",
        summary.flagged_by
    ));
    out.push_str(&format!(
        "{:<22} {:>7} {:>12} {:>11}\n",
        "score", "AUROC", "FPR@95%TPR", "threshold"
    ));
    let or_dash = |v: Option<f64>| v.map_or("-".to_string(), |a| format!("{a:.4}"));
    for s in &summary.scores {
        out.push_str(&format!(
            "{:<22} {:>7} {:>12} {:>11.4}{}\n",
            s.name,
            or_dash(s.auroc),
            or_dash(s.fpr_at_95_tpr),
            s.threshold,
            if s.name == summary.flagged_by {
                "  (flags)"
            } else {
                ""
            }
        ));
    }
    out
}
