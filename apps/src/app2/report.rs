//! Application 2's report: validation bits/dim, samples at several temperatures,
//! reconstructions, latent interpolations, latent statistics, curves, and the scores of the
//! validation folders.

use anyhow::{Result, bail};
use flowcore::Flow;
use flowdata::images::{save_grid, to_pixels, to_unit};

use super::data::{RunImages, pixels_of};
use super::measures::{Models, Scorer};
use super::score::{reference, score_set};
use super::{Report, RunGroup};
use crate::run::Reporter;
use crate::shared::images::{ImageRun, bits_per_dim_8bit};
use crate::shared::infer::{encode_rows, log_prob_rows, rows, to_vec};
use crate::shared::plot::nll_curves;

/// Held-out images the thresholds need before they are taken from them, not from training.
const MIN_HELD_OUT_REFERENCE: usize = 50;

pub(super) fn report(
    images: &ImageRun,
    run: &RunGroup,
    data: &RunImages,
    levels: Vec<std::ops::Range<usize>>,
    background: Option<&Flow>,
    r: &mut Reporter,
) -> Result<Report> {
    let spec = images.spec();
    let dim = spec.len();
    let device = crate::run::device();
    let flow = r.flow.clone();
    let val_pixels = &data.val_pixels;
    let val_x = to_unit(val_pixels);
    let n_val = val_x.len() / dim;
    let lp = log_prob_rows(&flow, &val_x, dim, &device);
    let val_bpd = lp
        .iter()
        .map(|&l| bits_per_dim_8bit(f64::from(l), dim))
        .sum::<f64>()
        / n_val as f64;

    // Samples at each temperature, one row per temperature.
    let per_row = 8;
    let mut grid = Vec::new();
    for (row, &t) in run.temperatures.iter().enumerate() {
        let x = flow.sample(per_row, t, r.training.seed + row as u64, None, &device);
        grid.extend(to_vec(x.into_data()).chunks(dim).map(to_pixels));
    }
    save_grid(&r.figure("samples.png"), &grid, spec, per_row, 3)?;

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
    save_grid(&r.figure("reconstructions.png"), &grid, spec, k, 3)?;

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
        save_grid(&r.figure("interpolation.png"), &grid, spec, steps, 3)?;
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
    r.write_json("latent_stats.json", &latent)?;

    let train_curve: Vec<f64> = r
        .outcome
        .history
        .iter()
        .map(|e| bits_per_dim_8bit(-e.train_loss, dim))
        .collect();
    let val_curve: Vec<f64> = r
        .outcome
        .history
        .iter()
        .filter_map(|e| e.val_bits_per_dim)
        .collect();
    nll_curves(
        &r.figure("bits_per_dim.png"),
        &train_curve,
        &val_curve,
        None,
    )?;

    // The reference gives the thresholds and the typical bits/dim. Held-out images of the
    // training classes when there are enough: a model that memorised a small training folder
    // scores its own images lower than any new one, and thresholds from them flag a quarter
    // of new normal images at the 0.95 quantile (80 sneakers: 26%).
    let (ref_pixels, ref_source) = if n_val >= MIN_HELD_OUT_REFERENCE {
        (val_pixels.clone(), "held-out")
    } else {
        let n = data.train.len();
        let stride = (n / run.reference_images.clamp(1, n.max(1))).max(1);
        let idx: Vec<usize> = (0..n).step_by(stride).collect();
        (pixels_of(&data.train, &idx), "training")
    };
    let models = Models {
        flow: &flow,
        background,
    };
    let scorer = Scorer {
        spec,
        typical_bits_per_dim: 0.0,
        levels,
        background: background.is_some(),
    };
    let mut reference = reference(
        models,
        &ref_pixels,
        ref_source,
        scorer,
        &data.normal,
        run.reference_images,
        run.score_quantile,
    );

    // Score the validation folders; where they hold outliers, the score that separates them
    // best flags images, here and in later `score` runs.
    let scores = match &data.val_set {
        Some(v) => score_set(
            models,
            &reference,
            v,
            &format!("{}/val", images.images),
            &r.path("scores").join("scores.csv"),
            true,
        )?,
        None => bail!("{}: no val/ folder to score", images.images),
    };
    reference.recommended = scores.flagged_by.clone();
    r.write_json("reference.json", &reference)?;
    for f in scores.figures.iter().chain([&scores.csv, &scores.summary]) {
        r.artifact(f, Some("scores"));
    }
    r.metric("final_val_bits_per_dim", val_bpd);
    for s in &scores.scores {
        if let Some(a) = s.auroc {
            r.metric(&format!("auroc_{}", s.name), a);
        }
        if let Some(f) = s.fpr_at_95_tpr {
            r.metric(&format!("fpr95_{}", s.name), f);
        }
    }
    Ok(Report {
        images: images.images.clone(),
        train_images: data.train.len(),
        train_skipped: data.train.skipped.len(),
        val_images: n_val,
        val_bits_per_dim: val_bpd,
        reconstruction_max_abs_err: recon_err,
        flipped: data.augment.flip,
        scores,
        run: r.record(),
    })
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
