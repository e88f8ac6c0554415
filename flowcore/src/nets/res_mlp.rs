//! The residual MLP parameter network, with optional layer normalisation.

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::mlp::zero_linear;
use super::{Activation, BuildNet, Conditioner, NetIo, append_cond};
use crate::{FlowError, Result};

/// A width-`width` residual MLP with `blocks` blocks of two linear layers each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResMlpSpec {
    /// Hidden width.
    pub width: usize,
    /// Number of residual blocks.
    pub blocks: usize,
    /// Layer normalisation at the start of each block.
    #[serde(default)]
    pub norm: bool,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: Activation,
}

impl BuildNet for ResMlpSpec {
    type Net = ResMlp;

    fn build(&self, io: NetIo, cond_dim: usize, device: &Device) -> Result<ResMlp> {
        let (inputs, outputs) = io.dense()?;
        if self.width == 0 {
            return Err(FlowError::config("res_mlp width must be positive"));
        }
        Ok(ResMlp::new(
            inputs + cond_dim,
            self.width,
            self.blocks,
            self.norm,
            outputs,
            self.activation,
            device,
        ))
    }
}

/// One pre-activation residual block: `h + W2 act(W1 act(norm(h)))`.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm: Option<LayerNorm>,
    first: Linear,
    second: Linear,
}

/// Residual MLP with optional layer normalisation; the output layer starts at zero.
#[derive(Module, Debug)]
pub struct ResMlp {
    input: Linear,
    blocks: Vec<ResBlock>,
    output: Linear,
    #[module(skip)]
    activation: Activation,
}

impl ResMlp {
    /// `inputs -> width -> blocks x residual -> outputs`.
    pub fn new(
        inputs: usize,
        width: usize,
        blocks: usize,
        norm: bool,
        outputs: usize,
        activation: Activation,
        device: &Device,
    ) -> Self {
        let blocks = (0..blocks)
            .map(|_| ResBlock {
                norm: norm.then(|| LayerNormConfig::new(width).init(device)),
                first: LinearConfig::new(width, width).init(device),
                second: LinearConfig::new(width, width).init(device),
            })
            .collect();
        Self {
            input: LinearConfig::new(inputs, width).init(device),
            blocks,
            output: zero_linear(width, outputs, device),
            activation,
        }
    }

    /// `[batch, inputs] -> [batch, outputs]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = self.input.forward(x);
        for block in &self.blocks {
            let mut r = match &block.norm {
                Some(norm) => norm.forward(h.clone()),
                None => h.clone(),
            };
            r = block.first.forward(self.activation.apply(r));
            r = block.second.forward(self.activation.apply(r));
            h = h + r;
        }
        self.output.forward(self.activation.apply(h))
    }
}

impl Conditioner for ResMlp {
    fn predict(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        self.forward(append_cond(x, cond))
    }
}
