//! The hidden nonlinearities of the parameter networks.

use burn::prelude::*;
use burn::tensor::activation;
use serde::{Deserialize, Serialize};

/// Hidden-layer nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    #[default]
    Relu,
    /// Leaky ReLU with slope 0.01.
    LeakyRelu,
    /// GELU (erf form).
    Gelu,
    /// SiLU / swish.
    Silu,
    /// tanh.
    Tanh,
}

impl Activation {
    /// Apply to any tensor.
    pub fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Relu => activation::relu(x),
            // As ReLU plus a line: burn's leaky_relu selects with a mask, forward and backward,
            // which took a fifth of a lattice flow's training step.
            Self::LeakyRelu => activation::relu(x.clone()).mul_scalar(0.99) + x.mul_scalar(0.01),
            Self::Gelu => activation::gelu(x),
            Self::Silu => activation::silu(x),
            Self::Tanh => x.tanh(),
        }
    }
}
