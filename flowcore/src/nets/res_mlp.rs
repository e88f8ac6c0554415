//! The residual MLP parameter network: optional layer or batch normalisation in each block, and
//! the condition fed to the first layer only or to every block (as the residual conditioners of
//! FlashSim-style spline flows).
//!
//! Batch normalisation uses the batch's statistics while training (on an autodiff device) and
//! its running statistics otherwise; the running statistics are part of the module, so
//! checkpoints keep them. In data-parallel training each rank keeps its own, and rank 0's are
//! saved.

use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::dense::dense;
use super::mlp::zero_linear;
use super::{Activation, BuildNet, Conditioner, NetIo, append_cond};
use crate::{FlowError, Result};

fn is_false(b: &bool) -> bool {
    !*b
}

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
    /// Batch normalisation at the start of each block (instead of layer normalisation).
    #[serde(default, skip_serializing_if = "is_false")]
    pub batch_norm: bool,
    /// Feed the condition to every block, not only to the first layer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cond_every_block: bool,
}

impl BuildNet for ResMlpSpec {
    type Net = ResMlp;

    fn build(&self, io: NetIo, cond_dim: usize, device: &Device) -> Result<ResMlp> {
        let (inputs, outputs) = io.dense()?;
        if self.width == 0 {
            return Err(FlowError::config("res_mlp width must be positive"));
        }
        if self.norm && self.batch_norm {
            return Err(FlowError::config(
                "res_mlp: choose layer normalisation (norm) or batch_norm, not both",
            ));
        }
        let width = self.width;
        let block_cond = if self.cond_every_block { cond_dim } else { 0 };
        let blocks = (0..self.blocks)
            .map(|_| ResBlock {
                norm: self.norm.then(|| LayerNormConfig::new(width).init(device)),
                first: LinearConfig::new(width + block_cond, width).init(device),
                second: LinearConfig::new(width, width).init(device),
                batch_norm: self
                    .batch_norm
                    .then(|| BatchNormConfig::new(width).init(device)),
            })
            .collect();
        Ok(ResMlp {
            input: LinearConfig::new(inputs + cond_dim, width).init(device),
            blocks,
            output: zero_linear(width, outputs, device),
            activation: self.activation,
            cond_every_block: block_cond > 0,
        })
    }
}

/// One pre-activation residual block: `h + W2 act(W1 [act(norm(h)) | c])`, the condition `c`
/// only when every block takes it.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm: Option<LayerNorm>,
    first: Linear,
    second: Linear,
    batch_norm: Option<BatchNorm>,
}

/// Residual MLP; the output layer starts at zero.
#[derive(Module, Debug)]
pub struct ResMlp {
    input: Linear,
    blocks: Vec<ResBlock>,
    output: Linear,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    cond_every_block: bool,
}

impl Conditioner for ResMlp {
    fn predict(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        let mut h = dense(&self.input, append_cond(x, cond), None);
        for block in &self.blocks {
            let mut r = match (&block.norm, &block.batch_norm) {
                (Some(norm), _) => norm.forward(h.clone()),
                (None, Some(bn)) => bn.forward(h.clone()),
                (None, None) => h.clone(),
            };
            r = self.activation.apply(r);
            if self.cond_every_block {
                r = append_cond(r, cond);
            }
            let hidden = dense(&block.first, r, Some(self.activation));
            r = dense(&block.second, hidden, None);
            h = h + r;
        }
        dense(&self.output, self.activation.apply(h), None)
    }
}
