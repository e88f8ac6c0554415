//! Application 3's report: accuracy, confusion and calibration on the validation images,
//! class-conditional samples, and out-of-distribution detection of unseen classes by
//! likelihood.

use anyhow::Result;
use flowcore::classify::Classifier;
use flowdata::images::{save_grid, to_pixels, to_unit};
use serde::{Deserialize, Serialize};

use super::data::RunImages;
use super::{Report, RunGroup};
use crate::run::Reporter;
use crate::shared::classify::{Mode, class_log_probs, metrics};
use crate::shared::images::{ImageRun, bits_per_dim_rows};
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

    // Out-of-distribution detection by bits/dim, when val/ has other classes.
    let ood = match data.unseen() {
        Some((unseen_pixels, folders)) => {
            let seen_bpd = bits_per_dim_rows(&flow, &data.val_pixels, spec, &device);
            let unseen_bpd = bits_per_dim_rows(&flow, &unseen_pixels, spec, &device);
            let scores: Vec<f64> = seen_bpd.iter().chain(&unseen_bpd).copied().collect();
            let outlier: Vec<bool> = (0..scores.len()).map(|i| i >= seen_bpd.len()).collect();
            let a = auroc(&scores, &outlier);
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
                "unseen classes by bits/dim",
                &[RocCurve {
                    name: "bits/dim".into(),
                    points: roc_curve(&scores, &outlier),
                    auroc: a.unwrap_or(f64::NAN),
                }],
            )?;
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            Some(OodReport {
                folders,
                images: unseen_bpd.len(),
                auroc_bits_per_dim: a,
                seen_bits_per_dim: mean(&seen_bpd),
                unseen_bits_per_dim: mean(&unseen_bpd),
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
    if let Some(a) = ood.as_ref().and_then(|o| o.auroc_bits_per_dim) {
        r.metric("ood_auroc_bits_per_dim", a);
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
