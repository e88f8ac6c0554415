//! Invertible neural networks for inverse problems (Ardizzone et al. 2019, "Analyzing inverse
//! problems with invertible neural networks"), and the conditional alternative (cINN).
//!
//! An INN maps the input side of a [`Partition`], `[x | pad]` or `[x | eps]`, to the output
//! side `[y | z]`. `forward` learns the forward process `x -> y` with a supervised loss, and
//! makes `(y, z)` jointly look like `(y, N(0, I))` (maximum mean discrepancy, MMD); `inverse`
//! then turns an observation `y` and fresh `z ~ N(0, I)` into samples of the posterior
//! `p(x | y)`, which a second MMD term matches to the data. A cINN instead models `p(x | y)`
//! as a flow over `x` conditioned on `y`, trained by maximum likelihood.
//!
//! Data for both come as [`Batch`]es whose `x` rows are the input side's data columns, then
//! its noise columns (`[x | eps]`, each in block order), and whose `y` rows are the
//! observations. Padding is made here.

mod conditional;
mod given_y;
mod mmd;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use conditional::ConditionalObjective;
pub use mmd::{mmd_imq, mmd_imq_host};

use crate::Flow;
use crate::flow::standard_normal;
use crate::partition::{Partition, Role, Side};
use crate::train::{Batch, Loss, Objective};

/// Weights and noise of the INN objective; defaults from Ardizzone et al.'s code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InnLossConfig {
    /// Supervised fit of `y` (and output padding to zero) in the forward direction.
    pub weight_y: f64,
    /// MMD of the forward output `(y, z)` against `(y, N(0, I))`.
    pub weight_latent: f64,
    /// MMD of `inverse(y, z ~ N(0, I))` against the data `x`.
    pub weight_x: f64,
    /// Reconstruction of the whole input (padding included) from `inverse(y, z)` with the `z`
    /// of the forward pass: it keeps the input padding at zero.
    pub weight_reconstruction: f64,
    /// Maximum likelihood of the input under `(y, z) ~ (y, N(0, I))`: the mean of
    /// `(|z|^2 / 2 - log|det J|) / dim` (Kruse et al. 2021). Unlike the joint MMD it does not
    /// weaken as `y` grows, so it is the term that makes `z` independent of a long noisy `y`.
    pub weight_likelihood: f64,
    /// Independence of `z` from the observations in their first two moments: the mean squared
    /// batch cross-covariance of `z` and of `z * z` with `y`. Zero when `z | y` has mean 0 and
    /// a covariance that does not change with `y`, which the joint MMD hardly sees.
    pub weight_independence: f64,
    /// MMD of the inverse's data and noise together, `inverse(y, z ~ N(0, I))`, against the
    /// data rows `[x | eps]`. The posterior's `x` paired with the noise that explains `y` is a
    /// draw of the prior and of `N(0, I)`; matching `x` alone lets the network give prior draws
    /// of `x` and absorb `y` in noise values no simulator would make.
    pub weight_noise: f64,
    /// Maximum likelihood of `x` given the observed `y`, for networks whose first layer makes
    /// `y` from the noise given `x` alone (`model.permutation = "blocks"`): the rest of the
    /// network run on `[x | y]` instead of its own fit of `y`, the mean of
    /// `(|z|^2 / 2 - log|det J|) / x_dim`. The couplings that make `z` then learn `p(x | y)` as
    /// a cINN does, and no error of the fitted `y` reaches them or is learnt as information
    /// about `x`.
    pub weight_likelihood_given_y: f64,
    /// Widths of the inverse multiquadric kernels.
    pub kernel_widths: Vec<f64>,
    /// Standard deviation of the noise added to `y` during training.
    pub y_noise: f64,
    /// Standard deviation of the noise in padding dimensions during training.
    pub pad_noise: f64,
}

impl Default for InnLossConfig {
    fn default() -> Self {
        Self {
            weight_y: 3.0,
            weight_latent: 300.0,
            weight_x: 400.0,
            weight_reconstruction: 3.0,
            weight_likelihood: 0.0,
            weight_independence: 0.0,
            weight_noise: 0.0,
            weight_likelihood_given_y: 0.0,
            kernel_widths: vec![0.05, 0.2, 0.9],
            y_noise: 0.01,
            pad_noise: 0.05,
        }
    }
}

impl InnLossConfig {
    /// Check values; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("weight_y", self.weight_y),
            ("weight_latent", self.weight_latent),
            ("weight_x", self.weight_x),
            ("weight_reconstruction", self.weight_reconstruction),
            ("weight_likelihood", self.weight_likelihood),
            ("weight_independence", self.weight_independence),
            ("weight_noise", self.weight_noise),
            ("weight_likelihood_given_y", self.weight_likelihood_given_y),
            ("y_noise", self.y_noise),
            ("pad_noise", self.pad_noise),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{key} must be 0 or positive, got {v}"));
            }
        }
        if self.kernel_widths.is_empty()
            || self.kernel_widths.iter().any(|c| c.is_nan() || *c <= 0.0)
        {
            return Err(format!(
                "kernel_widths must be positive numbers, at least one, got {:?}",
                self.kernel_widths
            ));
        }
        Ok(())
    }
}

/// The seed of the validation loss's draws: fixed, so epochs compare.
const VALIDATION_SEED: u64 = 0x05EE_D0F7_A11D;

/// A seed for the draw `stream` of global step `step`.
fn draw_seed(seed: u64, step: u64, stream: u64) -> u64 {
    let mut h = seed ^ 0x243F_6A88_85A3_08D3;
    for v in [step, stream] {
        h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

fn noise(n: usize, k: usize, std: f64, seed: u64, like: &Tensor<2>) -> Tensor<2> {
    standard_normal(n, k, seed, &like.device())
        .cast(like.dtype())
        .mul_scalar(std)
}

fn mse(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    (a - b).square().mean()
}

/// The mean squared entry of the batch cross-covariance of `a` (`[n, k]`) and `b` (`[n, m]`).
/// Shape `[1]`.
pub fn cross_covariance_sq(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let n = a.dims()[0] as f64;
    let a = a.clone() - a.mean_dim(0);
    let b = b.clone() - b.mean_dim(0);
    a.transpose().matmul(b).div_scalar(n).square().mean()
}

/// `mean(|z|^2 / 2 - logdet) / dim`: the negative log-likelihood per dimension of the input
/// when `z` is standard normal given `y`, up to the constants and the `y` term (the supervised
/// fit). Shape `[1]`.
pub fn latent_nll(z: Tensor<2>, logdet: Tensor<1>, dim: usize) -> Tensor<1> {
    let half_sq = z.square().sum_dim(1).squeeze_dim::<1>(1).mul_scalar(0.5);
    (half_sq - logdet).mean().div_scalar(dim as f64)
}

/// The INN objective on a [`Partition`]: input `[x | eps | pad]` blocks, output
/// `[y | z | pad]` blocks, in any order the partition gives.
#[derive(Clone, Debug)]
pub struct InnObjective {
    /// Both sides of the network.
    pub partition: Partition,
    /// Weights and noise.
    pub config: InnLossConfig,
}

impl InnObjective {
    /// Data columns (`x`) per sample.
    pub fn x_dim(&self) -> usize {
        self.partition.role_size(Side::Input, Role::Data)
    }

    /// Noise columns (`eps`) per sample.
    pub fn noise_dim(&self) -> usize {
        self.partition.role_size(Side::Input, Role::Noise)
    }

    /// Observations per sample.
    pub fn y_dim(&self) -> usize {
        self.partition.role_size(Side::Output, Role::Observation)
    }

    /// Latent dimensions.
    pub fn z_dim(&self) -> usize {
        self.partition.role_size(Side::Output, Role::Latent)
    }

    /// The network's input from data rows `[x | eps]` and padding of `pad_std`.
    fn input(&self, x: &Tensor<2>, pad_std: f64, seed: u64) -> Tensor<2> {
        let [n, _] = x.dims();
        let (dx, de) = (self.x_dim(), self.noise_dim());
        self.partition.assemble(Side::Input, |role| match role {
            Role::Data => x.clone().narrow(1, 0, dx),
            Role::Noise => x.clone().narrow(1, dx, de),
            _ => {
                let k = self.partition.role_size(Side::Input, Role::Pad);
                noise(n, k, pad_std, seed, x)
            }
        })
    }

    /// The network's output side from `y`, `z` and padding of `pad_std`.
    fn output(&self, y: &Tensor<2>, z: Tensor<2>, pad_std: f64, seed: u64) -> Tensor<2> {
        let [n, _] = y.dims();
        let mut z = Some(z);
        self.partition.assemble(Side::Output, |role| match role {
            Role::Observation => y.clone(),
            Role::Latent => z.take().expect("one latent role"),
            _ => {
                let k = self.partition.role_size(Side::Output, Role::Pad);
                noise(n, k, pad_std, seed, y)
            }
        })
    }

    fn loss_parts(
        &self,
        flow: &Flow,
        x: Tensor<2>,
        y: Tensor<2>,
        seed: u64,
        step: u64,
    ) -> (Tensor<1>, Vec<(&'static str, Tensor<1>)>) {
        let c = &self.config;
        let [n, m] = y.dims();
        let k = self.z_dim();
        let s = |stream| draw_seed(seed, step, stream);
        let input = self.input(&x, c.pad_noise, s(0));
        let y_noisy = y.clone() + noise(n, m, c.y_noise, s(1), &y);

        // Forward: fit y, and make (z, y) look like (N(0, I), y). As in the original, the MMD
        // sees y without its gradient, so it shapes z alone.
        let (out, logdet) = flow.forward(input.clone(), None);
        let p = &self.partition;
        let y_hat = p
            .gather(Side::Output, Role::Observation, &out)
            .expect("an observation block");
        let z_hat = p
            .gather(Side::Output, Role::Latent, &out)
            .expect("a latent block");
        let mut fit_y = mse(y_hat.clone(), y_noisy.clone());
        if let Some(pad) = p.gather(Side::Output, Role::Pad, &out) {
            fit_y = fit_y + pad.square().mean();
        }
        let prior = noise(n, k, 1.0, s(2), &y);
        let latent = mmd_imq(
            Tensor::cat(vec![z_hat.clone(), y_hat.detach()], 1),
            Tensor::cat(vec![prior, y_noisy.clone()], 1),
            &c.kernel_widths,
        );

        // Inverse: posterior samples for fresh z must look like the data, and the forward
        // pass's own z must give back the input.
        let y_again = y.clone() + noise(n, m, c.y_noise, s(3), &y);
        let fresh = self.output(&y_again, noise(n, k, 1.0, s(4), &y), c.pad_noise, s(5));
        let (x_gen, _) = flow.inverse(fresh, None);
        let dx = self.x_dim();
        let x_data = x.clone().narrow(1, 0, dx);
        let gen_data = p
            .gather(Side::Input, Role::Data, &x_gen)
            .expect("a data block");
        let gen_noise = p.gather(Side::Input, Role::Noise, &x_gen);
        let match_noise = match gen_noise {
            Some(gen_noise) if c.weight_noise > 0.0 => Some(mmd_imq(
                Tensor::cat(vec![gen_data.clone(), gen_noise], 1),
                x.clone(),
                &c.kernel_widths,
            )),
            _ => None,
        };
        let match_x = mmd_imq(gen_data, x_data, &c.kernel_widths);
        let z_back = z_hat.clone().detach() + noise(n, k, c.y_noise, s(6), &y);
        let cycle = self.output(&y_again, z_back, c.pad_noise, s(7));
        let (x_back, _) = flow.inverse(cycle, None);
        let reconstruction = mse(x_back, input);

        let mut total = fit_y.clone().mul_scalar(c.weight_y)
            + latent.clone().mul_scalar(c.weight_latent)
            + match_x.clone().mul_scalar(c.weight_x)
            + reconstruction.clone().mul_scalar(c.weight_reconstruction);
        let mut parts = vec![
            ("fit_y", fit_y),
            ("mmd_latent", latent),
            ("mmd_x", match_x),
            ("reconstruction", reconstruction),
        ];
        if let Some(m) = match_noise {
            total = total + m.clone().mul_scalar(c.weight_noise);
            parts.push(("mmd_noise", m));
        }
        if c.weight_independence > 0.0 {
            let dependence = cross_covariance_sq(z_hat.clone(), y.clone())
                + cross_covariance_sq(z_hat.clone().square(), y);
            total = total + dependence.clone().mul_scalar(c.weight_independence);
            parts.push(("dependence", dependence));
        }
        if c.weight_likelihood > 0.0 {
            let nll = latent_nll(z_hat, logdet, p.dim());
            total = total + nll.clone().mul_scalar(c.weight_likelihood);
            parts.push(("nll", nll));
        }
        if c.weight_likelihood_given_y > 0.0 {
            let nll = self.nll_given_y(flow, &x, &y_noisy, c.pad_noise, s(8));
            total = total + nll.clone().mul_scalar(c.weight_likelihood_given_y);
            parts.push(("nll_given_y", nll));
        }
        (total, parts)
    }

    /// `n` samples of the posterior `p(x | y_obs)` for one observation (`y_dim` values):
    /// `inverse(y_obs, z ~ N(0, I))`, with zero padding. `[n, x_dim]`.
    pub fn posterior(
        &self,
        flow: &Flow,
        y_obs: &[f32],
        n: usize,
        seed: u64,
        device: &Device,
    ) -> Tensor<2> {
        self.posterior_at(flow, y_obs, n, 1.0, seed, device)
    }

    /// [`InnObjective::posterior`] with `z` drawn at `temperature` (below 1: more typical
    /// samples).
    pub fn posterior_at(
        &self,
        flow: &Flow,
        y_obs: &[f32],
        n: usize,
        temperature: f64,
        seed: u64,
        device: &Device,
    ) -> Tensor<2> {
        let y = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(y_obs.to_vec(), [1, y_obs.len()]),
            device,
        )
        .expand([n, y_obs.len()]);
        let z = standard_normal(n, self.z_dim(), seed, device).mul_scalar(temperature);
        let out = self.output(&y, z, 0.0, seed);
        let (x, _) = flow.inverse(out, None);
        self.partition
            .gather(Side::Input, Role::Data, &x)
            .expect("a data block")
    }

    /// The forward model the network learnt: `y` predicted for data rows `[x | eps]`, with zero
    /// padding. `[n, y_dim]`.
    pub fn predict_y(&self, flow: &Flow, x: Tensor<2>) -> Tensor<2> {
        let input = self.input(&x, 0.0, 0);
        let (out, _) = flow.forward(input, None);
        self.partition
            .gather(Side::Output, Role::Observation, &out)
            .expect("an observation block")
    }
}

impl Objective for InnObjective {
    fn name(&self) -> &'static str {
        "inn_loss"
    }

    fn is_likelihood(&self) -> bool {
        false
    }

    fn flow_dim(&self, dim: usize, y_dim: usize) -> Result<usize, String> {
        let (dx, de, dy) = (self.x_dim(), self.noise_dim(), self.y_dim());
        if dim != dx + de || y_dim != dy {
            return Err(format!(
                "the partition {} takes {dx} data and {de} noise columns and {dy} observations, \
                 but the data have {dim} columns and {y_dim} observations",
                self.partition
            ));
        }
        Ok(self.partition.dim())
    }

    fn init_input(
        &self,
        x: Tensor<2>,
        _y: Option<Tensor<2>>,
        seed: u64,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        (
            self.input(&x, self.config.pad_noise, draw_seed(seed, 0, 99)),
            None,
        )
    }

    fn loss(&self, flow: &Flow, x: Tensor<2>, y: Option<Tensor<2>>, seed: u64, step: u64) -> Loss {
        let y = y.expect("INN data carry observations");
        let (total, parts) = self.loss_parts(flow, x, y, seed, step);
        Loss { total, parts }
    }

    fn validate(
        &self,
        flow: &Flow,
        data: &Batch,
        dim: usize,
        y_dim: usize,
        device: &Device,
    ) -> (f64, Vec<(String, f64)>) {
        // MMD needs a batch; average over fixed chunks with fixed draws.
        let n = data.x.len() / dim;
        let chunk = 1000.min(n);
        let mut total = 0.0;
        let mut parts: Vec<(String, f64)> = Vec::new();
        let mut chunks = 0;
        for (i, start) in (0..n).step_by(chunk).enumerate() {
            let m = chunk.min(n - start);
            if m < chunk / 2 && i > 0 {
                break;
            }
            let (x, y) = data
                .rows(start, m, dim, y_dim)
                .to_tensors(dim, y_dim, device);
            let (t, p) = self.loss_parts(
                flow,
                x,
                y.expect("observations"),
                VALIDATION_SEED,
                u64::MAX - i as u64,
            );
            total += t.into_scalar::<f64>();
            for (j, (k, v)) in p.into_iter().enumerate() {
                let v = v.into_scalar::<f64>();
                match parts.get_mut(j) {
                    Some((_, acc)) => *acc += v,
                    None => parts.push((k.to_string(), v)),
                }
            }
            chunks += 1;
        }
        let c = chunks.max(1) as f64;
        (
            total / c,
            parts.into_iter().map(|(k, v)| (k, v / c)).collect(),
        )
    }
}
