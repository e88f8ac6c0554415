//! The proposals of the independence Metropolis chain: the trained flow's samples, optionally
//! made symmetric under `phi -> -phi` and pushed from a wider base. The chain is exact for any
//! proposal that covers the target, so these change its efficiency and its finite-length bias,
//! not its target.
//!
//! - **Symmetric** (`q_sym(phi) = (q(phi) + q(-phi)) / 2`, one more pass of the flow): a flow
//!   that is not Z2-equivariant (spline couplings, whose conditionals can be bimodal in a site
//!   given its neighbours) settles, under reverse KL, in one vacuum of the broken phase; the
//!   symmetrised proposal covers both.
//! - **Defensive base** (`(1 - f) N(0, 1) + f N(0, s^2)` per site, Hesterberg's defensive
//!   importance sampling in the latent space): where the flow sends part of the target to its
//!   base's tails, the wide draws keep the weights `w = exp(-S) / q` bounded.

use burn::prelude::*;
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ReverseKl, base_draws};
use crate::Flow;
use crate::base::standard_normal_log_prob;

/// Rows per pass of the flow (see [`ReverseKl::log_weights`]).
const CHUNK: usize = 256;

/// How the chain's proposals are drawn from a trained flow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proposal {
    /// The wide component's weight in the base, in `[0, 1)`; 0 is the flow's own N(0, 1).
    pub wide_fraction: f64,
    /// The wide component's standard deviation per site (positive).
    pub wide_scale: f64,
    /// Propose `phi` or `-phi` with equal probability, with the density of that mixture.
    pub symmetric: bool,
}

impl Default for Proposal {
    fn default() -> Self {
        Self {
            wide_fraction: 0.0,
            wide_scale: 1.0,
            symmetric: false,
        }
    }
}

impl Proposal {
    /// A checked proposal; the error names the bad value.
    pub fn new(wide_fraction: f64, wide_scale: f64, symmetric: bool) -> Result<Self, String> {
        if !(wide_fraction.is_finite() && (0.0..1.0).contains(&wide_fraction)) {
            return Err(format!(
                "the wide fraction must lie in [0, 1), got {wide_fraction}"
            ));
        }
        if !(wide_scale.is_finite() && wide_scale > 0.0) {
            return Err(format!(
                "the wide scale must be a positive number, got {wide_scale}"
            ));
        }
        Ok(Self {
            wide_fraction,
            wide_scale,
            symmetric,
        })
    }

    /// Whether the base is the flow's own N(0, 1).
    pub fn plain_base(&self) -> bool {
        self.wide_fraction == 0.0 || self.wide_scale == 1.0
    }

    /// `n` base draws `[n, sites]` from `seed`, and for each `log N(z; 0, 1) - log base(z)`.
    /// A plain base gives [`base_draws`]'s draws and zeros.
    pub fn base_draws(
        &self,
        n: usize,
        sites: usize,
        seed: u64,
        device: &Device,
    ) -> (Tensor<2>, Vec<f64>) {
        let z = base_draws(n, sites, seed, device);
        if self.plain_base() {
            return (z, vec![0.0; n]);
        }
        let mut values = host_f32(z);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xDEF3_A51F_E000_0001);
        let mut correction = Vec::with_capacity(n);
        for row in values.chunks_mut(sites) {
            if rng.random::<f64>() < self.wide_fraction {
                for v in row.iter_mut() {
                    *v *= self.wide_scale as f32;
                }
            }
            correction.push(self.log_ratio(squared_norm(row), sites));
        }
        (
            Tensor::from_data(TensorData::new(values, [n, sites]), device),
            correction,
        )
    }

    /// `log N(z; 0, 1) - log base(z)` for a draw with `|z|^2 = r2` over `sites` values.
    pub fn log_ratio(&self, r2: f64, sites: usize) -> f64 {
        if self.plain_base() {
            return 0.0;
        }
        let s2 = self.wide_scale * self.wide_scale;
        let narrow = (1.0 - self.wide_fraction).ln() - 0.5 * r2;
        let wide = self.wide_fraction.ln() - 0.5 * r2 / s2 - sites as f64 * self.wide_scale.ln();
        -0.5 * r2 - log_add_exp(narrow, wide)
    }

    /// `n` proposals of `flow` from `seed` and their log-weights `-S - log q` against
    /// `objective`'s action (f64, on the host), without gradients.
    pub fn draw(
        &self,
        flow: &Flow,
        objective: &ReverseKl,
        n: usize,
        seed: u64,
        device: &Device,
    ) -> (Tensor<2>, Vec<f64>) {
        let sites = objective.action().sites();
        let (z, correction) = self.base_draws(n, sites, seed, device);
        let mut signs = ChaCha8Rng::seed_from_u64(seed ^ 0x5167_0000_0000_0001);
        let mut fields = Vec::with_capacity(n.div_ceil(CHUNK));
        let mut log_w = Vec::with_capacity(n);
        for start in (0..n).step_by(CHUNK) {
            let m = CHUNK.min(n - start);
            let (phi, log_q, action) =
                objective.sample_with_log_q(flow, z.clone().narrow(0, start, m));
            let log_q: Vec<f64> = host_f64(log_q)
                .iter()
                .zip(&correction[start..start + m])
                .map(|(q, c)| q - c)
                .collect();
            let action = host_f64(action);
            let (phi, log_q) = if self.symmetric {
                let mirrored = self.log_q(flow, phi.clone().neg());
                let log_q = log_q
                    .iter()
                    .zip(&mirrored)
                    .map(|(a, b)| log_add_exp(*a, *b) - std::f64::consts::LN_2)
                    .collect();
                let sign: Vec<f32> = (0..m)
                    .map(|_| if signs.random::<bool>() { -1.0 } else { 1.0 })
                    .collect();
                let sign = Tensor::<2>::from_data(TensorData::new(sign, [m, 1]), device);
                (phi * sign, log_q)
            } else {
                (phi, log_q)
            };
            log_w.extend(action.iter().zip(&log_q).map(|(s, q)| -s - q));
            fields.push(phi);
        }
        (Tensor::cat(fields, 0), log_w)
    }

    /// `log q(phi)` of the flow from this base (not symmetrised), by the forward pass.
    fn log_q(&self, flow: &Flow, phi: Tensor<2>) -> Vec<f64> {
        let sites = phi.dims()[1];
        let (z, logdet) = flow.forward(phi, None);
        let r2: Vec<f64> = host_f32(z.clone())
            .chunks(sites)
            .map(squared_norm)
            .collect();
        let log_q = host_f64(standard_normal_log_prob(z) + logdet);
        log_q
            .iter()
            .zip(r2)
            .map(|(q, r2)| q - self.log_ratio(r2, sites))
            .collect()
    }
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let max = a.max(b);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + ((a - max).exp() + (b - max).exp()).ln()
}

fn squared_norm(row: &[f32]) -> f64 {
    row.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

fn host_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

fn host_f64(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default()
}
