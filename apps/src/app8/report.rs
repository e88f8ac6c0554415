//! Application 8's report: held-out conditional NLL against the truth where it is known,
//! estimation of the condition on held-out rows, generation at held-out conditions, and the
//! figures of each.

use anyhow::Result;
use flowdata::Conditional;
use serde::{Deserialize, Serialize};

use super::data::Rows;
use super::estimate::{Ascent, by_gradient, over_candidates};
use super::interpolate::{compare, figure};
use super::model::ConditionalModel;
use super::{Report, RunGroup};
use crate::run::Reporter;
use crate::shared::plot::{Panel, Series, nll_curves, panels};

/// How well `estimate` recovered the condition of held-out rows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EstimateCheck {
    /// Rows estimated.
    pub rows: usize,
    /// Discrete conditions: the fraction of rows whose condition was chosen right.
    pub accuracy: Option<f64>,
    /// The same for the true densities (the Bayes-optimal choice), when the generator is known.
    pub bayes_accuracy: Option<f64>,
    /// Continuous conditions with a known generator: the mean over rows and columns of
    /// |estimate - the true maximum-likelihood c|.
    pub mean_abs_error_to_true_ml: Option<f64>,
}

/// Samples of each kind at a held-out condition: the moments' standard errors are then
/// 1.4% of sigma (mean) and 1% (std).
const HELD_OUT_SAMPLES: usize = 10_000;

/// Rows the report estimates.
const ESTIMATED_ROWS: usize = 2000;
/// Rows the continuous estimate check takes (gradient ascent per row is slower).
const ASCENT_ROWS: usize = 100;

pub(super) fn report(run: &RunGroup, rows: &mut Rows, r: &mut Reporter) -> Result<Report> {
    let device = crate::run::device();
    let model = ConditionalModel::load(r.run_dir)?;
    let info = model.info.clone();
    let (cd, d) = (info.cond_dim(), info.dim());
    let (vc, vx) = rows.raw_validation().clone();
    let n = vx.len() / d;
    let lp = model.log_prob(&vc, &vx, &device);
    let val_nll = -lp.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let generator = info.generator()?;
    let row_c =
        |i: usize| -> Vec<f64> { vc[i * cd..(i + 1) * cd].iter().map(|&v| v.into()).collect() };
    let row_x =
        |i: usize| -> Vec<f64> { vx[i * d..(i + 1) * d].iter().map(|&v| v.into()).collect() };
    let (true_nll, entropy) = match &generator {
        Some(g) => (
            Some(
                (0..n)
                    .map(|i| -g.log_density(&row_c(i), &row_x(i)))
                    .sum::<f64>()
                    / n as f64,
            ),
            Some(
                (0..n)
                    .map(|i| g.conditional_entropy(&row_c(i)))
                    .sum::<f64>()
                    / n as f64,
            ),
        ),
        None => (None, None),
    };

    let estimate = estimate_check(&model, generator.as_ref(), &vc, &vx, r, &device)?;

    let mut interpolation = Vec::new();
    let mut cases = Vec::new();
    for (k, label) in run.held_out.iter().enumerate() {
        let truth = true_samples(generator.as_ref(), rows, label, HELD_OUT_SAMPLES, k as u64)?;
        let (cmp, generated) = compare(&model, label, &truth, r.training.seed ^ 0x1E7, &device);
        tracing::info!(
            "held-out condition {label:?}: mean off by {:?} sigma, std off by {:?}, MMD^2 {:.2e}",
            cmp.mean_error_in_sigma,
            cmp.std_relative_error,
            cmp.mmd2
        );
        cases.push((format!("held out: c = {label:?}"), truth, generated));
        interpolation.push(cmp);
    }
    if !cases.is_empty() {
        figure(
            &r.figure("interpolation.png"),
            "generated at held-out conditions (blue) against true samples (red)",
            &cases,
            d,
        )?;
    }
    samples_figure(run, rows, &model, generator.as_ref(), r, &device)?;

    // The curves are in whitened units; the entropy line is moved there.
    let history = &r.outcome.history;
    let train_curve: Vec<f64> = history.iter().map(|e| e.train_loss).collect();
    let val_curve: Vec<f64> = history.iter().map(|e| e.val_loss).collect();
    let to_whitened = info.x_whitening.log_det();
    nll_curves(
        &r.figure("nll.png"),
        &train_curve,
        &val_curve,
        entropy.map(|h| (h + to_whitened, "true conditional entropy")),
    )?;
    r.metric("final_val_nll", val_nll);
    if let Some(h) = entropy {
        r.metric("gap_to_entropy_per_dim", (val_nll - h) / d as f64);
    }
    if let Some(a) = estimate.accuracy {
        r.metric("estimate_accuracy", a);
    }
    let record = r.record();
    tracing::info!(
        "held-out NLL {val_nll:.4} nats{}",
        entropy.map_or(String::new(), |h| format!(
            " (true conditional entropy {h:.4}, gap {:+.4} per dimension)",
            (val_nll - h) / d as f64
        )) + &true_nll.map_or(String::new(), |t| format!(
            "; true NLL of the same rows {t:.4}, KL {:.4} per dimension",
            (val_nll - t) / d as f64
        ))
    );
    Ok(Report {
        source: info.source.clone(),
        dim: d,
        cond_dim: cd,
        val_nll,
        val_nll_per_dim: val_nll / d as f64,
        true_nll,
        conditional_entropy: entropy,
        gap_per_dim: entropy.map(|h| (val_nll - h) / d as f64),
        kl_per_dim: true_nll.map(|t| (val_nll - t) / d as f64),
        estimate,
        interpolation,
        run: record,
    })
}

/// Estimate the condition of held-out rows: the discrete conditions by candidates (with the
/// Bayes-optimal accuracy when the generator is known), a Gaussian mean by gradient ascent
/// against its true maximum-likelihood value.
fn estimate_check(
    model: &ConditionalModel,
    generator: Option<&Conditional>,
    vc: &[f32],
    vx: &[f32],
    r: &mut Reporter,
    device: &burn::prelude::Device,
) -> Result<EstimateCheck> {
    let (cd, d) = (model.info.cond_dim(), model.info.dim());
    let n = (vx.len() / d).min(ESTIMATED_ROWS);
    let candidates = generator
        .and_then(Conditional::candidates)
        .or_else(|| model.info.discrete_conditions.clone());
    if let Some(candidates) = candidates {
        let est = over_candidates(model, &vx[..n * d], &candidates, false, device)?;
        let same = |a: &[f64], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(u, &v)| (u - f64::from(v)).abs() < 1e-6)
        };
        let right = (0..n)
            .filter(|&i| same(&est[i].c, &vc[i * cd..(i + 1) * cd]))
            .count();
        let bayes = generator.map(|g| {
            let hits = (0..n)
                .filter(|&i| {
                    let x: Vec<f64> = vx[i * d..(i + 1) * d].iter().map(|&v| v.into()).collect();
                    let best = candidates
                        .iter()
                        .max_by(|a, b| g.log_density(a, &x).total_cmp(&g.log_density(b, &x)))
                        .expect("candidates");
                    same(best, &vc[i * cd..(i + 1) * cd])
                })
                .count();
            hits as f64 / n as f64
        });
        return Ok(EstimateCheck {
            rows: n,
            accuracy: Some(right as f64 / n as f64),
            bayes_accuracy: bayes,
            mean_abs_error_to_true_ml: None,
        });
    }
    if let Some(Conditional::GaussianMean) = generator {
        // Rows whose maximum-likelihood c (x itself) lies inside the training range.
        let inside: Vec<usize> = (0..vx.len() / d)
            .filter(|&i| vx[i * d..(i + 1) * d].iter().all(|v| v.abs() < 1.5))
            .take(ASCENT_ROWS)
            .collect();
        let x: Vec<f32> = inside
            .iter()
            .flat_map(|&i| vx[i * d..(i + 1) * d].iter().copied())
            .collect();
        let est = by_gradient(model, &x, false, Ascent::default(), device)?;
        let err = est
            .iter()
            .zip(x.chunks(d))
            .map(|(e, x)| {
                e.c.iter()
                    .zip(x)
                    .map(|(c, &v)| (c - f64::from(v)).abs())
                    .sum::<f64>()
                    / d as f64
            })
            .sum::<f64>()
            / est.len().max(1) as f64;
        // Estimated against true c, and against the true maximum-likelihood c (x itself).
        let pairs = |truth: &dyn Fn(usize) -> f64| -> Vec<Vec<(f64, f64)>> {
            vec![(0..est.len()).map(|k| (truth(k), est[k].c[0])).collect()]
        };
        let line = vec![vec![(-1.5, -1.5), (1.5, 1.5)]];
        let mut list = vec![
            Panel::new(
                "estimated c0 against the true c0",
                "true c0",
                "estimated c0",
                vec![
                    Series::new(line.clone(), None).faint(0.6),
                    Series::new(pairs(&|k| f64::from(vc[inside[k] * cd])), Some(0)).markers(),
                ],
            ),
            Panel::new(
                "estimated c0 against the maximum-likelihood c0 (= x0)",
                "maximum-likelihood c0",
                "estimated c0",
                vec![
                    Series::new(line, None).faint(0.6),
                    Series::new(pairs(&|k| f64::from(x[k * d])), Some(0)).markers(),
                ],
            ),
        ];
        Panel::share_ranges(&mut list);
        panels(
            &r.figure("estimate.png"),
            &format!(
                "estimate of c for {} held-out rows, one observation each",
                est.len()
            ),
            &list,
            2,
            (480, 440),
        )?;
        return Ok(EstimateCheck {
            rows: est.len(),
            mean_abs_error_to_true_ml: Some(err),
            ..Default::default()
        });
    }
    Ok(EstimateCheck::default())
}

/// True samples at `label`: drawn from the generator, or a CSV's rows held out there.
pub(super) fn true_samples(
    generator: Option<&Conditional>,
    rows: &Rows,
    label: &[f64],
    n: usize,
    seed: u64,
) -> Result<Vec<f32>> {
    if let Some(g) = generator {
        let mut rng = flowdata::batch_rng(seed ^ 0x7A3E, 0);
        return Ok((0..n)
            .flat_map(|_| g.sample_given(label, &mut rng))
            .map(|v| v as f32)
            .collect());
    }
    let (hc, hx) = rows.held_out_rows();
    let cd = label.len();
    let d = rows.info().dim();
    Ok((0..hx.len() / d)
        .filter(|&i| super::data::is_held_out(&hc[i * cd..(i + 1) * cd], &[label.to_vec()]))
        .flat_map(|i| hx[i * d..(i + 1) * d].iter().copied())
        .collect())
}

/// Samples at four held-out rows' conditions against the truth there (the generator's
/// draws, or the held-out rows with the nearest conditions).
fn samples_figure(
    run: &RunGroup,
    rows: &Rows,
    model: &ConditionalModel,
    generator: Option<&Conditional>,
    r: &mut Reporter,
    device: &burn::prelude::Device,
) -> Result<()> {
    let (vc, vx) = rows.raw_validation();
    let (cd, d) = (model.info.cond_dim(), model.info.dim());
    let n = vx.len() / d;
    let per = run.plot_points.clamp(50, 1000);
    let mut cases = Vec::new();
    let mut chosen: Vec<Vec<f64>> = Vec::new();
    for i in (0..n).step_by((n / 16).max(1)) {
        let c: Vec<f64> = vc[i * cd..(i + 1) * cd].iter().map(|&v| v.into()).collect();
        if chosen.contains(&c) {
            continue;
        }
        chosen.push(c.clone());
        if chosen.len() > 4 {
            break;
        }
        let truth = if let Some(g) = generator {
            true_samples(Some(g), rows, &c, per, i as u64)?
        } else {
            nearest_rows(vc, vx, cd, d, &c, per.min(n / 4).max(1))
        };
        let c32: Vec<f32> = c.iter().map(|&v| v as f32).collect();
        let generated = model.sample(&c32, truth.len() / d, r.training.seed ^ i as u64, device);
        let shown: Vec<String> = c.iter().take(3).map(|v| format!("{v:.2}")).collect();
        cases.push((
            format!(
                "c = ({}{})",
                shown.join(", "),
                if cd > 3 { ", ..." } else { "" }
            ),
            truth,
            generated,
        ));
    }
    figure(
        &r.figure("samples.png"),
        if generator.is_some() {
            "the model's samples (blue) against the true p(x | c) (red)"
        } else {
            "the model's samples (blue) against held-out rows of the nearest conditions (red)"
        },
        &cases,
        d,
    )
}

/// The `k` held-out rows whose conditions are nearest `c` (Euclidean).
fn nearest_rows(vc: &[f32], vx: &[f32], cd: usize, d: usize, c: &[f64], k: usize) -> Vec<f32> {
    let n = vx.len() / d;
    let mut order: Vec<(f64, usize)> = (0..n)
        .map(|i| {
            let dist = vc[i * cd..(i + 1) * cd]
                .iter()
                .zip(c)
                .map(|(&a, b)| (f64::from(a) - b).powi(2))
                .sum::<f64>();
            (dist, i)
        })
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    order
        .iter()
        .take(k)
        .flat_map(|&(_, i)| vx[i * d..(i + 1) * d].iter().copied())
        .collect()
}
