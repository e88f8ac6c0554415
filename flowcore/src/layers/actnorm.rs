//! ActNorm (Glow): a per-channel affine map whose first values come from data, so that the
//! first batch leaves it with zero mean and unit variance per channel.

use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layer::{BuildLayer, positive};
use crate::tensor_util::broadcast_logdet;
use crate::{Bijector, DataInit, Result};

fn one() -> usize {
    1
}

/// ActNorm over `channels` channels of `spatial` values each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActNormSpec {
    /// Channels (features, for dense data).
    pub channels: usize,
    /// Values per channel (1 for dense data).
    #[serde(default = "one")]
    pub spatial: usize,
}

impl ActNormSpec {
    /// ActNorm of dense vectors: every one of `features` a channel of its own.
    pub fn dense(features: usize) -> Self {
        Self {
            channels: features,
            spatial: 1,
        }
    }
}

impl BuildLayer for ActNormSpec {
    type Layer = ActNorm;

    fn build(&self, device: &Device) -> Result<ActNorm> {
        positive("act_norm channels", self.channels)?;
        positive("act_norm spatial", self.spatial)?;
        Ok(ActNorm::new(self.channels, self.spatial, device))
    }
}

/// `z = (x + bias) * exp(log_scale)` per channel; for dense input every feature is a channel.
#[derive(Module, Debug)]
pub struct ActNorm {
    bias: Param<Tensor<1>>,
    log_scale: Param<Tensor<1>>,
    #[module(skip)]
    channels: usize,
    #[module(skip)]
    spatial: usize,
    #[module(skip)]
    initialized: bool,
}

impl ActNorm {
    /// `channels` channels of `spatial` values each (`spatial = 1` for dense features). Starts
    /// as the identity and not initialised.
    pub fn new(channels: usize, spatial: usize, device: &Device) -> Self {
        Self {
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            log_scale: Param::from_tensor(Tensor::zeros([channels], device)),
            channels,
            spatial,
            initialized: false,
        }
    }

    /// Whether the data-dependent initialisation has run (or was loaded).
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    fn logdet(&self, batch: usize) -> Tensor<1> {
        let ld = self.log_scale.val().sum().mul_scalar(self.spatial as f64);
        broadcast_logdet(ld, batch)
    }

    fn per_channel(&self, t: Tensor<1>) -> Tensor<3> {
        t.reshape([1, self.channels, 1])
    }
}

impl Bijector for ActNorm {
    fn forward(&self, x: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let [batch, dim] = x.dims();
        let x = x.reshape([batch, self.channels, self.spatial]);
        let z =
            (x + self.per_channel(self.bias.val())) * self.per_channel(self.log_scale.val()).exp();
        (z.reshape([batch, dim]), self.logdet(batch))
    }

    fn inverse(&self, z: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let [batch, dim] = z.dims();
        let z = z.reshape([batch, self.channels, self.spatial]);
        let x = z * self.per_channel(self.log_scale.val()).neg().exp()
            - self.per_channel(self.bias.val());
        (x.reshape([batch, dim]), self.logdet(batch).neg())
    }

    fn dim(&self) -> usize {
        self.channels * self.spatial
    }
}

impl DataInit for ActNorm {
    fn initialize(mut self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Self, Tensor<2>) {
        if !self.initialized {
            let [batch, _] = x.dims();
            // Statistics over batch and pixels, per channel, from the data alone.
            let per_channel = x
                .clone()
                .detach()
                .reshape([batch, self.channels, self.spatial])
                .swap_dims(0, 1)
                .reshape([self.channels, batch * self.spatial]);
            let (var, mean) = per_channel.var_mean_bias(1);
            let mean = mean.reshape([self.channels]);
            let log_scale = var
                .reshape([self.channels])
                .add_scalar(1e-6)
                .log()
                .mul_scalar(-0.5);
            // Keep each parameter's identity and gradient tracking; only its value changes.
            let replace = |old: Tensor<1>, new: Tensor<1>| {
                let grad = old.is_require_grad();
                new.detach().set_require_grad(grad)
            };
            self.bias = self.bias.map(|old| replace(old, mean.neg()));
            self.log_scale = self.log_scale.map(|old| replace(old, log_scale));
            self.initialized = true;
        }
        let z = self.forward(x, cond).0;
        (self, z)
    }

    fn init_flags(&self, flags: &mut Vec<bool>) {
        flags.push(self.initialized);
    }

    fn set_init_flags(&mut self, flags: &mut dyn Iterator<Item = bool>) {
        if let Some(f) = flags.next() {
            self.initialized = f;
        }
    }
}
