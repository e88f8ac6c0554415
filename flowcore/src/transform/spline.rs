//! The monotone rational-quadratic spline of neural spline flows (Durkan et al. 2019), on
//! `[-bound, bound]` with identity (linear) tails outside, slope 1 at the bound.
//!
//! Each feature gets `3K - 1` raw parameters: `K` bin widths, `K` bin heights (softmax, each at
//! least its minimum) and the `K - 1` derivatives at the interior knots (softplus, at least the
//! minimum); zero raw parameters give the identity. Inputs are clamped into the interval before
//! the spline arithmetic, so that points outside it, or exactly on a knot, give finite values
//! and finite gradients through both branches of the final selection; the inverse keeps its
//! discriminant positive where rounding would make it negative (nflows #71, pyro #3139).

use burn::prelude::*;
use burn::tensor::activation::{softmax, softplus};
use serde::{Deserialize, Serialize};

use crate::{FlowError, Result};

fn bins() -> usize {
    8
}
fn bound() -> f64 {
    3.0
}
fn minimum() -> f64 {
    1e-3
}

/// A rational-quadratic spline's shape: bins, interval and the minimum bin width, bin height and
/// derivative.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spline {
    /// Bins `K` (at least 2).
    #[serde(default = "bins")]
    pub bins: usize,
    /// The spline acts on `[-bound, bound]`, the identity outside.
    #[serde(default = "bound")]
    pub bound: f64,
    /// Smallest bin width, as a fraction of the interval.
    #[serde(default = "minimum")]
    pub min_bin_width: f64,
    /// Smallest bin height, as a fraction of the interval.
    #[serde(default = "minimum")]
    pub min_bin_height: f64,
    /// Smallest derivative at a knot.
    #[serde(default = "minimum")]
    pub min_derivative: f64,
}

impl Default for Spline {
    fn default() -> Self {
        Self {
            bins: bins(),
            bound: bound(),
            min_bin_width: minimum(),
            min_bin_height: minimum(),
            min_derivative: minimum(),
        }
    }
}

impl Spline {
    /// Raw parameters per feature: widths, heights, interior derivatives.
    pub fn num_params(&self) -> usize {
        3 * self.bins - 1
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(FlowError::config(format!("rational_quadratic: {what}")));
        if self.bins < 2 {
            return bad(format!("bins must be at least 2, got {}", self.bins));
        }
        if !(self.bound.is_finite() && self.bound > 0.0) {
            return bad(format!(
                "bound must be a positive number, got {}",
                self.bound
            ));
        }
        for (key, min) in [
            ("min_bin_width", self.min_bin_width),
            ("min_bin_height", self.min_bin_height),
        ] {
            if !(min >= 0.0 && min * self.bins as f64 <= 1.0 - 1e-6) {
                return bad(format!(
                    "{key} must lie in [0, 1/bins) = [0, {}), got {min}",
                    1.0 / self.bins as f64
                ));
            }
        }
        if !(self.min_derivative > 0.0 && self.min_derivative < 1.0) {
            return bad(format!(
                "min_derivative must lie in (0, 1), got {}",
                self.min_derivative
            ));
        }
        Ok(())
    }

    /// Data to latent: `x` `[batch, d]` with raw parameters `[batch, 3K - 1, d]`; the output and
    /// the elementwise log-derivative.
    pub fn forward(&self, x: Tensor<2>, params: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        self.apply(x, params, false)
    }

    /// Latent to data, the inverse of [`Spline::forward`] for the same parameters.
    pub fn inverse(&self, z: Tensor<2>, params: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        self.apply(z, params, true)
    }

    fn apply(&self, input: Tensor<2>, params: Tensor<3>, inverse: bool) -> (Tensor<2>, Tensor<2>) {
        super::spline_kernel::apply(self, &input, &params, inverse)
            .unwrap_or_else(|| self.apply_ops(input, params, inverse))
    }

    /// [`Spline::apply`] of burn operations, for every backend.
    pub(super) fn apply_ops(
        &self,
        input: Tensor<2>,
        params: Tensor<3>,
        inverse: bool,
    ) -> (Tensor<2>, Tensor<2>) {
        let [batch, d] = input.dims();
        let (k, m) = (self.bins, batch * d);
        // One row per value: its 3K - 1 parameters.
        let p = params.swap_dims(1, 2).reshape([m, 3 * k - 1]);
        let (knots_x, widths) = self.knots(p.clone().narrow(1, 0, k), self.min_bin_width);
        let (knots_y, heights) = self.knots(p.clone().narrow(1, k, k), self.min_bin_height);
        let derivatives = self.derivatives(p.narrow(1, 2 * k, k - 1));
        let v = input.reshape([m, 1]);
        let inside = v.clone().abs().lower_equal_elem(self.bound);
        let vc = v.clone().clamp(-self.bound, self.bound);
        // The bin: how many interior knots lie at or below the value.
        let search = if inverse { &knots_y } else { &knots_x };
        let bin = vc
            .clone()
            .expand([m, k - 1])
            .greater_equal(search.clone().narrow(1, 1, k - 1))
            .int()
            .sum_dim(1);
        let at = |t: &Tensor<2>| t.clone().gather(1, bin.clone());
        let (xk, wk) = (at(&knots_x), at(&widths));
        let (yk, hk) = (at(&knots_y), at(&heights));
        let dk = at(&derivatives);
        let dk1 = derivatives.gather(1, bin.clone().add_scalar(1));
        let s = hk.clone() / wk.clone();
        let curvature = dk1.clone() + dk.clone() - s.clone().mul_scalar(2.0);
        let (out, theta) = if inverse {
            let delta = vc - yk;
            let a = hk.clone() * (s.clone() - dk.clone()) + delta.clone() * curvature.clone();
            let b = hk.clone() * dk.clone() - delta.clone() * curvature.clone();
            let c = s.clone().neg() * delta;
            let disc = (b.clone().powi_scalar(2) - a * c.clone().mul_scalar(4.0))
                .clamp_min(f32::MIN_POSITIVE as f64);
            let theta = (c.mul_scalar(2.0) / (b.neg() - disc.sqrt())).clamp(0.0, 1.0);
            (xk + theta.clone() * wk, theta)
        } else {
            let theta = ((vc - xk) / wk).clamp(0.0, 1.0);
            let mix = theta.clone() * theta.clone().neg().add_scalar(1.0);
            let num = hk * (s.clone() * theta.clone().powi_scalar(2) + dk.clone() * mix.clone());
            let den = s.clone() + curvature.clone() * mix;
            (yk + num / den, theta)
        };
        // log dy/dx at theta: ln(s^2 (d1 t^2 + 2 s t (1-t) + d0 (1-t)^2)) - 2 ln(den).
        let one_minus = theta.clone().neg().add_scalar(1.0);
        let mix = theta.clone() * one_minus.clone();
        let den = s.clone() + curvature * mix.clone();
        let slope = s.clone().powi_scalar(2)
            * (dk1 * theta.powi_scalar(2)
                + s.mul_scalar(2.0) * mix
                + dk * one_minus.powi_scalar(2));
        let mut logdet = slope.log() - den.log().mul_scalar(2.0);
        if inverse {
            logdet = logdet.neg();
        }
        let out = out.mask_where(inside.clone().bool_not(), v);
        let logdet = logdet.mask_fill(inside.bool_not(), 0.0);
        (out.reshape([batch, d]), logdet.reshape([batch, d]))
    }

    /// Knots `[m, K + 1]` from `-bound` to `bound` and bin sizes `[m, K]`, from raw sizes
    /// `[m, K]`, each bin at least `min` of the interval.
    fn knots(&self, raw: Tensor<2>, min: f64) -> (Tensor<2>, Tensor<2>) {
        let k = raw.dims()[1];
        let fractions = softmax(raw, 1)
            .mul_scalar(1.0 - min * k as f64)
            .add_scalar(min);
        let interior = fractions
            .cumsum(1)
            .narrow(1, 0, k - 1)
            .mul_scalar(2.0 * self.bound)
            .sub_scalar(self.bound);
        // The ends exactly at the bound: the cumulative sum's rounding must not leave a gap.
        let one = interior.clone().narrow(1, 0, 1).ones_like();
        let ends = |value: f64| one.clone().mul_scalar(value);
        let knots = Tensor::cat(vec![ends(-self.bound), interior, ends(self.bound)], 1);
        let sizes = knots.clone().narrow(1, 1, k) - knots.clone().narrow(1, 0, k);
        (knots, sizes)
    }

    /// Derivatives `[m, K + 1]` at every knot: 1 at the two ends (the tails' slope), and at the
    /// interior knots `min + softplus(raw + c)`, with `c` such that a zero raw value gives 1.
    fn derivatives(&self, raw: Tensor<2>) -> Tensor<2> {
        let min = self.min_derivative;
        let c = ((1.0 - min).exp() - 1.0).ln();
        let interior = softplus(raw.add_scalar(c), 1.0).add_scalar(min);
        let one = interior.clone().narrow(1, 0, 1).ones_like();
        Tensor::cat(vec![one.clone(), interior, one], 1)
    }
}
