//! Application 3's report: accuracy, confusion and calibration on the validation images,
//! class-conditional samples, and out-of-distribution detection of unseen classes by
//! likelihood and by the model's class evidence.

use anyhow::Result;
use flowcore::classify::Classifier;
use flowdata::images::{save_grid, to_pixels, to_unit};
use serde::{Deserialize, Serialize};

use super::data::RunImages;
use super::{Report, RunGroup};
use crate::run::Reporter;
use crate::shared::classify::{Mode, class_log_probs, metrics};
use crate::shared::evidence::{ClassEvidence, class_evidence};
use crate::shared::images::{ImageRun, bits_per_dim_8bit, bits_per_dim_rows};
use crate::shared::infer::to_vec;
use crate::shared::plot::{RocCurve, histograms, history_curves, roc_curves};
use crate::shared::scores::{auroc, roc_curve};

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
    /// AUROC of the entropy of the class posterior `p(y | x)`.
    #[serde(default)]
    pub auroc_posterior_entropy: Option<f64>,
    /// AUROC of `-max_k log p(x | k)` in bits/dim (a class-conditional base only).
    #[serde(default)]
    pub auroc_max_class_bits_per_dim: Option<f64>,
}

pub(super) fn report(
    images: &ImageRun,
    run: &RunGroup,
    mode: Mode,
    data: &RunImages,
    classifier: &Classifier,
    r: &mut Reporter,
) -> Result<Report> {
    let spec = images.spec();
    let dim = spec.len();
    let device = crate::run::device();
    let flow = r.flow.clone();
    let classes = &data.classes;
    let val_x = to_unit(&data.val_pixels);
    let lp = class_log_probs(classifier, &flow, &val_x, dim, &device);
    let m = metrics(&lp, &data.val_labels, classes);

    // Class-conditional samples: a row per class.
    let per_row = run.samples_per_class.max(1);
    let mut grid = Vec::new();
    for c in 0..classes.len() {
        if let Some(x) = classifier.sample_class(
            &flow,
            c,
            classes.len(),
            per_row,
            run.temperature,
            r.training.seed + c as u64,
            &device,
        ) {
            grid.extend(to_vec(x.into_data()).chunks(dim).map(to_pixels));
        }
    }
    save_grid(&r.figure("class_samples.png"), &grid, spec, per_row, 3)?;

    // Out-of-distribution detection when val/ has other classes: by bits/dim, and by the
    // class-conditional model's own evidence (likelihood alone fails on simpler images).
    let ood = match data.unseen() {
        Some((unseen_pixels, folders)) => {
            let seen_bpd = bits_per_dim_rows(&flow, &data.val_pixels, spec, &device);
            let unseen_bpd = bits_per_dim_rows(&flow, &unseen_pixels, spec, &device);
            let outlier: Vec<bool> = (0..seen_bpd.len() + unseen_bpd.len())
                .map(|i| i >= seen_bpd.len())
                .collect();
            let evidence: Vec<ClassEvidence> = [&data.val_pixels, &unseen_pixels]
                .into_iter()
                .flat_map(|p| class_evidence(classifier, &flow, &to_unit(p), dim, &device))
                .collect();
            let mut scores: Vec<(&str, Vec<f64>)> = vec![
                (
                    "bits/dim",
                    seen_bpd.iter().chain(&unseen_bpd).copied().collect(),
                ),
                (
                    "posterior entropy",
                    evidence.iter().map(|e| e.posterior_entropy).collect(),
                ),
            ];
            if let Some(max_ll) = evidence
                .iter()
                .map(|e| e.max_class_log_likelihood)
                .collect::<Option<Vec<f64>>>()
            {
                scores.push((
                    "max-class bits/dim",
                    max_ll.iter().map(|&l| bits_per_dim_8bit(l, dim)).collect(),
                ));
            }
            let aurocs: Vec<Option<f64>> = scores.iter().map(|(_, v)| auroc(v, &outlier)).collect();
            histograms(
                &r.figure("ood_bits_per_dim.png"),
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
                &r.figure("ood_roc.png"),
                "unseen classes against the training classes",
                &scores
                    .iter()
                    .zip(&aurocs)
                    .map(|((name, v), a)| RocCurve {
                        name: name.to_string(),
                        points: roc_curve(v, &outlier),
                        auroc: a.unwrap_or(f64::NAN),
                    })
                    .collect::<Vec<_>>(),
            )?;
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            Some(OodReport {
                folders,
                images: unseen_bpd.len(),
                auroc_bits_per_dim: aurocs[0],
                seen_bits_per_dim: mean(&seen_bpd),
                unseen_bits_per_dim: mean(&unseen_bpd),
                auroc_posterior_entropy: aurocs[1],
                auroc_max_class_bits_per_dim: aurocs.get(2).copied().flatten(),
            })
        }
        None => None,
    };
    history_curves(&r.figure("loss.png"), "loss per epoch", &r.outcome.history)?;
    r.metric("val_accuracy", m.accuracy);
    r.metric(
        "val_expected_calibration_error",
        m.expected_calibration_error,
    );
    if let Some(o) = &ood {
        for (key, value) in [
            ("ood_auroc_bits_per_dim", o.auroc_bits_per_dim),
            ("ood_auroc_posterior_entropy", o.auroc_posterior_entropy),
            (
                "ood_auroc_max_class_bits_per_dim",
                o.auroc_max_class_bits_per_dim,
            ),
        ] {
            if let Some(a) = value {
                r.metric(key, a);
            }
        }
    }
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
    Ok(Report {
        images: images.images.clone(),
        mode,
        classes: classes.clone(),
        metrics: m,
        ood,
        run: r.record(),
    })
}
