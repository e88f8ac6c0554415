//! The logit preprocessing of RealNVP and Glow: dequantised data in `(0, 1)` is squeezed into
//! `(alpha, 1 - alpha)` and mapped to the real line, so that a Gaussian base fits it. The exact
//! log-det keeps likelihoods, and so bits/dim, comparable with the literature.

use std::mem::MaybeUninit;

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};
use serde::{Deserialize, Serialize};

use rayon::prelude::*;

use crate::flex;
use crate::layer::{BuildLayer, positive};
use crate::simd::widest;
use crate::tensor_util::row_sum;
use crate::transform::exp_ln::ln;
use crate::{Bijector, DataInit, FlowError, Result};

/// Logit preprocessing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogitSpec {
    /// Features.
    pub dim: usize,
    /// Squeeze into `(alpha, 1 - alpha)` first.
    pub alpha: f64,
}

impl BuildLayer for LogitSpec {
    type Layer = Logit;

    fn build(&self, _device: &Device) -> Result<Logit> {
        positive("logit dim", self.dim)?;
        Logit::new(self.dim, self.alpha)
    }
}

/// `z = logit(alpha + (1 - 2 alpha) x)`, for `x` in `(0, 1)`.
#[derive(Module, Debug)]
pub struct Logit {
    #[module(skip)]
    alpha: f64,
    #[module(skip)]
    dim: usize,
}

impl Logit {
    /// `alpha` in `[0, 0.5)`; RealNVP uses 0.05, Glow-style code often 1e-6.
    pub fn new(dim: usize, alpha: f64) -> Result<Self> {
        if !(0.0..0.5).contains(&alpha) {
            return Err(FlowError::config(format!(
                "logit alpha must lie in [0, 0.5), got {alpha}"
            )));
        }
        Ok(Self { alpha, dim })
    }

    /// Elementwise `log|dz/dx|` in terms of `z`: `log(1 - 2a) - log p - log(1 - p)` with
    /// `p = sigmoid(z)`, written with log-sigmoids so it stays finite for large `|z|`.
    fn elementwise_logdet(&self, z: Tensor<2>) -> Tensor<2> {
        let log_p = log_sigmoid(z.clone());
        let log_1mp = log_sigmoid(z.neg());
        (log_p + log_1mp)
            .neg()
            .add_scalar((1.0 - 2.0 * self.alpha).ln())
    }
}

impl Bijector for Logit {
    fn forward(&self, x: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        if let Some(out) = one_pass(&x, self.alpha) {
            return out;
        }
        let p = x.mul_scalar(1.0 - 2.0 * self.alpha).add_scalar(self.alpha);
        let (log_p, log_1mp) = (p.clone().log(), p.neg().add_scalar(1.0).log());
        // The log-det from the two logs z is made of, not from z's log-sigmoids: p lies in
        // [a, 1 - a] here, and log1p (which log-sigmoid calls per value) was 3% of scoring.
        let ld = (log_p.clone() + log_1mp.clone())
            .neg()
            .add_scalar((1.0 - 2.0 * self.alpha).ln());
        (log_p - log_1mp, row_sum(ld))
    }

    fn inverse(&self, z: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let ld = row_sum(self.elementwise_logdet(z.clone())).neg();
        let x = sigmoid(z)
            .sub_scalar(self.alpha)
            .div_scalar(1.0 - 2.0 * self.alpha);
        (x, ld)
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

impl DataInit for Logit {}

/// [`Logit::forward`] in one pass over the rows on the cores, when `x` holds f32 on the CPU
/// backend without autodiff; None elsewhere. Composed of burn's operations it was eight passes
/// on one core and a libm call per log, 4% of Glow 32 scoring. The arithmetic is the composed
/// one's, value by value in f32; only the row sums add in another order.
fn one_pass(x: &Tensor<2>, alpha: f64) -> Option<(Tensor<2>, Tensor<1>)> {
    if x.device().is_autodiff() {
        return None;
    }
    let [rows, dim] = x.dims();
    let values = flex::values(x)?;
    let xs = flex::slice(&values);
    let constants = [
        (1.0 - 2.0 * alpha) as f32,
        alpha as f32,
        (1.0 - 2.0 * alpha).ln() as f32,
    ];
    let mut z = Vec::<f32>::with_capacity(rows * dim);
    let mut ld = vec![0.0f32; rows];
    z.spare_capacity_mut()[..rows * dim]
        .par_chunks_mut(dim.max(1))
        .zip(xs.par_chunks(dim.max(1)))
        .zip(ld.par_iter_mut())
        .with_min_len((VALUES_PER_TASK / dim.max(1)).max(1))
        .for_each(|((z, x), ld)| {
            *ld = widest(
                #[inline(always)]
                || logit_row(z, x, constants),
            )
        });
    // SAFETY: every row above wrote its `dim` values.
    unsafe { z.set_len(rows * dim) };
    let device = x.device();
    Some((
        flex::tensor(z, [rows, dim], &device),
        flex::tensor(ld, [rows], &device),
    ))
}

/// Values per task when [`one_pass`] is split over the cores.
const VALUES_PER_TASK: usize = 16 * 1024;

/// One row's `z` written and its log-det returned, summed in 16 lanes so that the loop
/// vectorises.
#[inline(always)]
fn logit_row(z: &mut [MaybeUninit<f32>], x: &[f32], [scale, alpha, c]: [f32; 3]) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0.0f32; LANES];
    let one = |z: &mut MaybeUninit<f32>, x: f32, sum: &mut f32| {
        let p = x * scale + alpha;
        let (log_p, log_1mp) = (ln(p), ln(-p + 1.0));
        z.write(log_p - log_1mp);
        *sum += -(log_p + log_1mp) + c;
    };
    let (mut zs, mut xs) = (z.chunks_exact_mut(LANES), x.chunks_exact(LANES));
    for (z, x) in (&mut zs).zip(&mut xs) {
        for ((z, &x), sum) in z.iter_mut().zip(x).zip(&mut sums) {
            one(z, x, sum);
        }
    }
    for ((z, &x), sum) in zs
        .into_remainder()
        .iter_mut()
        .zip(xs.remainder())
        .zip(&mut sums)
    {
        one(z, x, sum);
    }
    sums.iter().sum()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// The one pass against burn's composed operations (the autodiff device's path): rows of
    /// only a remainder, of whole lanes and a remainder, and enough rows to be split; data at
    /// the edges of (0, 1) too.
    #[test]
    fn the_one_pass_logit_equals_the_composed_one() {
        let (device, ad) = (Device::flex(), Device::flex().autodiff());
        for alpha in [0.05, 1e-6] {
            let logit = Logit::new(0, alpha).unwrap();
            for [rows, dim] in [[3, 7], [5, 40], [300, 70]] {
                let x = Tensor::<2>::random([rows, dim], Distribution::Uniform(0.0, 1.0), &device)
                    .slice_assign([0..1, 0..2], Tensor::from_floats([[0.0, 1.0]], &device));
                let (z, ld) = one_pass(&x, alpha).expect("a plain f32 tensor");
                let (want_z, want_ld) = logit.forward(Tensor::from_data(x.to_data(), &ad), None);
                for (what, got, want) in [
                    ("z", z, want_z.inner()),
                    (
                        "log-det",
                        ld.unsqueeze_dim(1),
                        want_ld.inner().unsqueeze_dim(1),
                    ),
                ] {
                    let want = Tensor::<2>::from_data(want.to_data(), &device);
                    let d = (got - want.clone()).abs().max().into_scalar::<f32>();
                    let size = want.abs().max().into_scalar::<f32>().max(1.0);
                    assert!(
                        d <= 1e-6 * size,
                        "alpha {alpha}, {rows}x{dim}: {what} differs by {d}"
                    );
                }
            }
        }
        assert!(one_pass(&Tensor::<2>::zeros([2, 3], &ad), 0.05).is_none());
    }
}
