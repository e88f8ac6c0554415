//! Maximum mean discrepancy with inverse multiquadric kernels: between tensors, for training,
//! and between host samples, for evaluation.

use burn::prelude::*;

/// The biased estimate of the squared MMD between the samples `a` (`[n, d]`) and `b`
/// (`[m, d]`) with a sum of inverse multiquadric kernels `k(u, v) = c^2 / (c^2 + |u - v|^2)`,
/// one per width `c`. Shape `[1]`.
pub fn mmd_imq(a: Tensor<2>, b: Tensor<2>, widths: &[f64]) -> Tensor<1> {
    let sq = |t: &Tensor<2>| t.clone().square().sum_dim(1); // [n, 1]
    let dist = |u: &Tensor<2>, v: &Tensor<2>| {
        let cross = u.clone().matmul(v.clone().transpose()).mul_scalar(2.0);
        (sq(u) + sq(v).transpose() - cross).clamp_min(0.0)
    };
    let (daa, dbb, dab) = (dist(&a, &a), dist(&b, &b), dist(&a, &b));
    let kernel = |d: Tensor<2>| {
        widths
            .iter()
            .map(|&c| {
                let c2 = c * c;
                d.clone().add_scalar(c2).recip().mul_scalar(c2)
            })
            .reduce(|s, k| s + k)
            .expect("at least one kernel width")
            .mean()
    };
    kernel(daa) + kernel(dbb) - kernel(dab).mul_scalar(2.0)
}

/// The unbiased estimate of the squared MMD with the kernels of [`mmd_imq`], on host samples
/// (row-major, `dim` columns), in f64; for evaluation. Pairs of a sample with itself are left
/// out, so two samples of one distribution score 0 on average (and can score slightly below).
pub fn mmd_imq_host(a: &[f32], b: &[f32], dim: usize, widths: &[f64]) -> f64 {
    let kernel = |u: &[f32], v: &[f32]| {
        let d: f64 = u
            .iter()
            .zip(v)
            .map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2))
            .sum();
        widths.iter().map(|c| c * c / (c * c + d)).sum::<f64>()
    };
    let (ra, rb): (Vec<&[f32]>, Vec<&[f32]>) = (a.chunks(dim).collect(), b.chunks(dim).collect());
    let within = |r: &[&[f32]]| {
        let n = r.len();
        let mut total = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                total += kernel(r[i], r[j]);
            }
        }
        2.0 * total / (n * n.saturating_sub(1)).max(1) as f64
    };
    let mut cross = 0.0;
    for u in &ra {
        for v in &rb {
            cross += kernel(u, v);
        }
    }
    within(&ra) + within(&rb) - 2.0 * cross / (ra.len() * rb.len()).max(1) as f64
}
