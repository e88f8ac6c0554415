//! The fully connected parameter network of dense couplings.

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::dense::dense;
use super::{Activation, BuildNet, Conditioner, NetIo, append_cond};
use crate::{FlowError, Result};

/// Fully connected layers of the given widths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSpec {
    /// Hidden widths, e.g. `[512, 512]`.
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: Activation,
}

impl BuildNet for MlpSpec {
    type Net = Mlp;

    fn build(&self, io: NetIo, cond_dim: usize, device: &Device) -> Result<Mlp> {
        let (inputs, outputs) = io.dense()?;
        if self.hidden.contains(&0) {
            return Err(FlowError::config("mlp hidden widths must be positive"));
        }
        Ok(Mlp::new(
            inputs + cond_dim,
            &self.hidden,
            outputs,
            self.activation,
            device,
        ))
    }
}

/// A linear layer that starts at zero: the last layer of every network.
pub(crate) fn zero_linear(inputs: usize, outputs: usize, device: &Device) -> Linear {
    LinearConfig::new(inputs, outputs)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// Fully connected network; the last layer starts at zero.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    #[module(skip)]
    activation: Activation,
}

impl Mlp {
    /// `inputs -> hidden[0] -> ... -> outputs`.
    pub fn new(
        inputs: usize,
        hidden: &[usize],
        outputs: usize,
        activation: Activation,
        device: &Device,
    ) -> Self {
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut width = inputs;
        for &h in hidden {
            layers.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        layers.push(zero_linear(width, outputs, device));
        Self { layers, activation }
    }

    /// `[batch, inputs] -> [batch, outputs]`.
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = dense(layer, x, (i < last).then_some(self.activation));
        }
        x
    }
}

impl Conditioner for Mlp {
    fn predict(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        self.forward(append_cond(x, cond))
    }
}
