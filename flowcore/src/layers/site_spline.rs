//! A monotone spline applied to every value on its own, with its own parameters (not a
//! network's output): the per-site layer of lattice flows (normflow's and Albergo et al.'s).
//! On the whole real line: a sigmoid into `(0, 1)`, a rational-quadratic spline of `[0, 1]` onto
//! itself, and a logit back. Optionally odd (`f(-x) = -f(x)`) for a field theory with the
//! `phi -> -phi` symmetry.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};
use serde::{Deserialize, Serialize};

use crate::layer::{BuildLayer, positive};
use crate::tensor_util::row_sum;
use crate::transform::Spline;
use crate::{Bijector, DataInit, FlowError, Result};

fn eight() -> usize {
    8
}
fn yes() -> bool {
    true
}

/// A per-value spline on the real line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSplineSpec {
    /// Values it maps (in a lattice flow, left out: the lattice's sites).
    #[serde(default)]
    pub dim: usize,
    /// Spline bins (even when `symmetric`).
    #[serde(default = "eight")]
    pub bins: usize,
    /// An odd map, `f(-x) = -f(x)`: the bins mirror about 0.
    #[serde(default)]
    pub symmetric: bool,
    /// One spline for every value (a translation-invariant theory); otherwise one per value.
    #[serde(default = "yes")]
    pub shared: bool,
}

impl BuildLayer for SiteSplineSpec {
    type Layer = SiteSpline;

    fn build(&self, device: &Device) -> Result<SiteSpline> {
        positive("site_spline dim", self.dim)?;
        let spline = Spline {
            bins: self.bins,
            bound: 0.5,
            ..Spline::default()
        };
        spline.validate()?;
        if self.symmetric && !self.bins.is_multiple_of(2) {
            return Err(FlowError::config(format!(
                "a symmetric site_spline needs an even number of bins, got {}",
                self.bins
            )));
        }
        let raw = if self.symmetric {
            3 * self.bins / 2
        } else {
            spline.num_params()
        };
        let groups = if self.shared { 1 } else { self.dim };
        Ok(SiteSpline {
            raw: Param::from_tensor(Tensor::zeros([groups, raw], device)),
            dim: self.dim,
            spline,
            symmetric: self.symmetric,
        })
    }
}

/// `logit(0.5 + S(sigmoid(x) - 0.5))` with a rational-quadratic `S` on `[-0.5, 0.5]`; zero
/// parameters give the identity. In f32 it inverts to 1e-4 for `|x|` up to about 8, where the
/// sigmoid has not yet rounded to 1.
#[derive(Module, Debug)]
pub struct SiteSpline {
    /// Raw spline parameters, `[groups, raw]`.
    raw: Param<Tensor<2>>,
    #[module(skip)]
    dim: usize,
    #[module(skip)]
    spline: Spline,
    #[module(skip)]
    symmetric: bool,
}

impl SiteSpline {
    /// The spline's `3K - 1` raw parameters per group, mirrored from the free half when
    /// symmetric: equal widths and heights at mirrored bins, equal derivatives at mirrored
    /// knots, the middle knot at 0.
    fn full(&self) -> Tensor<2> {
        let raw = self.raw.val();
        if !self.symmetric {
            return raw;
        }
        let half = self.spline.bins / 2;
        let mirror = |t: Tensor<2>| Tensor::cat(vec![t.clone(), t.flip([1])], 1);
        let widths = mirror(raw.clone().narrow(1, 0, half));
        let heights = mirror(raw.clone().narrow(1, half, half));
        let derivs = raw.narrow(1, 2 * half, half);
        let derivs = if half == 1 {
            derivs
        } else {
            let outer = derivs.clone().narrow(1, 0, half - 1);
            let middle = derivs.narrow(1, half - 1, 1);
            Tensor::cat(vec![outer.clone(), middle, outer.flip([1])], 1)
        };
        Tensor::cat(vec![widths, heights, derivs], 1)
    }

    /// `[batch, 3K - 1, dim]` parameters for a batch.
    fn params(&self, batch: usize, like: &Tensor<2>) -> Tensor<3> {
        let full = self.full().cast(like.dtype());
        let [groups, k] = full.dims();
        if groups == 1 {
            full.reshape([1, k, 1]).expand([batch, k, self.dim])
        } else {
            full.swap_dims(0, 1)
                .reshape([1, k, self.dim])
                .expand([batch, k, self.dim])
        }
    }

    fn run(&self, input: Tensor<2>, inverse: bool) -> (Tensor<2>, Tensor<1>) {
        let [batch, _] = input.dims();
        let params = self.params(batch, &input);
        // Into (0, 1): log of the sigmoid's derivative, ln s(x) + ln s(-x).
        let into = |x: Tensor<2>| {
            let ld = log_sigmoid(x.clone()) + log_sigmoid(x.clone().neg());
            (sigmoid(x), ld)
        };
        // Back out: logit(u) and ln dlogit/du = -ln u - ln(1 - u).
        let out_of = |u: Tensor<2>| {
            let u = u.clamp(1e-12, 1.0 - 1e-7);
            let (lu, l1u) = (u.clone().log(), u.neg().add_scalar(1.0).log());
            (lu.clone() - l1u.clone(), (lu + l1u).neg())
        };
        let (u, ld_in) = into(input);
        let centred = u.sub_scalar(0.5);
        let (s, ld_spline) = if inverse {
            self.spline.inverse(centred, params)
        } else {
            self.spline.forward(centred, params)
        };
        let (out, ld_out) = out_of(s.add_scalar(0.5));
        (out, row_sum(ld_in + ld_spline + ld_out))
    }
}

impl Bijector for SiteSpline {
    fn forward(&self, x: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.run(x, false)
    }

    fn inverse(&self, z: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.run(z, true)
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

impl DataInit for SiteSpline {}
