//! Generation at conditions the model never saw: samples at a held-out label against true
//! samples there (moments and the maximum mean discrepancy), and a figure of both.

use std::path::Path;

use anyhow::Result;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::model::ConditionalModel;
use crate::shared::plot::{Panel, Series, panels};

/// Generated against true samples at one condition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldOutComparison {
    /// The condition.
    pub label: Vec<f64>,
    /// Samples of each kind.
    pub n: usize,
    /// Column means of the generated samples.
    pub generated_mean: Vec<f64>,
    /// Column means of the true samples.
    pub true_mean: Vec<f64>,
    /// Column standard deviations of the generated samples.
    pub generated_std: Vec<f64>,
    /// Column standard deviations of the true samples.
    pub true_std: Vec<f64>,
    /// |generated mean - true mean| per column, in true standard deviations.
    pub mean_error_in_sigma: Vec<f64>,
    /// generated std / true std - 1, per column.
    pub std_relative_error: Vec<f64>,
    /// Squared maximum mean discrepancy (Gaussian kernel, bandwidth the median distance of the
    /// true samples; unbiased, so near 0, possibly below, for equal distributions).
    pub mmd2: f64,
}

/// Column means and standard deviations of `values` (`[n, dim]`).
pub fn moments(values: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (values.len() / dim).max(1) as f64;
    let mean: Vec<f64> = (0..dim)
        .map(|j| {
            values
                .iter()
                .skip(j)
                .step_by(dim)
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / n
        })
        .collect();
    let std = (0..dim)
        .map(|j| {
            (values
                .iter()
                .skip(j)
                .step_by(dim)
                .map(|&v| (f64::from(v) - mean[j]).powi(2))
                .sum::<f64>()
                / (n - 1.0).max(1.0))
            .sqrt()
        })
        .collect();
    (mean, std)
}

/// The unbiased squared MMD of samples `a` and `b` (`[n, dim]` each) with a Gaussian kernel of
/// bandwidth `h`.
pub fn mmd2(a: &[f32], b: &[f32], dim: usize, h: f64) -> f64 {
    let k = |p: &[f32], q: &[f32]| {
        let d2: f64 = p
            .iter()
            .zip(q)
            .map(|(&u, &v)| (f64::from(u) - f64::from(v)).powi(2))
            .sum();
        (-d2 / (2.0 * h * h)).exp()
    };
    let within = |s: &[f32]| {
        let rows: Vec<&[f32]> = s.chunks(dim).collect();
        let n = rows.len() as f64;
        let mut t = 0.0;
        for i in 0..rows.len() {
            for j in 0..rows.len() {
                if i != j {
                    t += k(rows[i], rows[j]);
                }
            }
        }
        t / (n * (n - 1.0)).max(1.0)
    };
    let ra: Vec<&[f32]> = a.chunks(dim).collect();
    let rb: Vec<&[f32]> = b.chunks(dim).collect();
    let cross = ra
        .iter()
        .map(|p| rb.iter().map(|q| k(p, q)).sum::<f64>())
        .sum::<f64>()
        / (ra.len() * rb.len()).max(1) as f64;
    within(a) + within(b) - 2.0 * cross
}

/// The median pairwise distance of (at most 500 of) the rows of `values`.
fn median_distance(values: &[f32], dim: usize) -> f64 {
    let rows: Vec<&[f32]> = values.chunks(dim).take(500).collect();
    let mut d = Vec::new();
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            let s: f64 = rows[i]
                .iter()
                .zip(rows[j])
                .map(|(&u, &v)| (f64::from(u) - f64::from(v)).powi(2))
                .sum();
            d.push(s.sqrt());
        }
    }
    d.sort_by(f64::total_cmp);
    d.get(d.len() / 2).copied().unwrap_or(1.0).max(1e-12)
}

/// Samples of `model` at `label` against `true_x` (`[n, dim]`), as many of each.
pub fn compare(
    model: &ConditionalModel,
    label: &[f64],
    true_x: &[f32],
    seed: u64,
    device: &Device,
) -> (HeldOutComparison, Vec<f32>) {
    let d = model.info.dim();
    let n = true_x.len() / d;
    let c: Vec<f32> = label.iter().map(|&v| v as f32).collect();
    let generated = model.sample(&c, n, seed, device);
    let (gm, gs) = moments(&generated, d);
    let (tm, ts) = moments(true_x, d);
    // The MMD on at most 1000 of each: it is quadratic in the samples.
    let m = n.min(1000) * d;
    let h = median_distance(true_x, d);
    let comparison = HeldOutComparison {
        label: label.to_vec(),
        n,
        mean_error_in_sigma: (0..d)
            .map(|j| (gm[j] - tm[j]).abs() / ts[j].max(1e-12))
            .collect(),
        std_relative_error: (0..d).map(|j| gs[j] / ts[j].max(1e-12) - 1.0).collect(),
        mmd2: mmd2(&generated[..m], &true_x[..m], d, h),
        generated_mean: gm,
        true_mean: tm,
        generated_std: gs,
        true_std: ts,
    };
    (comparison, generated)
}

/// A panel per condition: true samples and the model's, the first two columns of x.
pub fn figure(
    path: &Path,
    caption: &str,
    cases: &[(String, Vec<f32>, Vec<f32>)],
    dim: usize,
) -> Result<()> {
    let points = |v: &[f32]| -> Vec<Vec<(f64, f64)>> {
        vec![
            v.chunks(dim)
                .take(1000)
                .map(|r| (f64::from(r[0]), f64::from(r.get(1).copied().unwrap_or(0.0))))
                .collect(),
        ]
    };
    let mut list: Vec<Panel> = cases
        .iter()
        .map(|(title, truth, generated)| {
            Panel::new(
                title.clone(),
                "x0",
                if dim > 1 { "x1" } else { "" },
                vec![
                    Series::new(points(truth), Some(1))
                        .markers()
                        .faint(0.5)
                        .label("true"),
                    Series::new(points(generated), Some(0))
                        .markers()
                        .faint(0.5)
                        .label("model"),
                ],
            )
        })
        .collect();
    Panel::share_ranges(&mut list);
    let columns = list.len().clamp(1, 4);
    panels(path, caption, &list, columns, (420, 400))
}
