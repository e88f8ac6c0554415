//! MADE (Germain et al. 2015): an MLP whose weights are masked so that the parameters it
//! predicts for feature `i` depend only on the features before `i` (in the natural order),
//! and on the condition, which reaches every hidden unit unmasked. The parameter network of
//! autoregressive layers.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Activation;
use super::dense::dense_with;
use super::mlp::zero_linear;
use crate::tensor_util::constant;
use crate::{FlowError, Result};

/// A MADE of the given hidden widths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MadeSpec {
    /// Hidden widths, e.g. `[128, 128]`; each at least `features - 1`, so that every feature
    /// can depend on all those before it.
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: Activation,
}

impl MadeSpec {
    /// The network for `features` features and `cond_dim` condition values, predicting
    /// `params` raw values per feature.
    pub fn build(
        &self,
        features: usize,
        cond_dim: usize,
        params: usize,
        device: &Device,
    ) -> Result<Made> {
        if self.hidden.is_empty() {
            return Err(FlowError::config("made: needs at least one hidden layer"));
        }
        // One hidden unit of every degree at least.
        let needed = features.saturating_sub(1) + usize::from(cond_dim > 0);
        if let Some(&w) = self.hidden.iter().find(|&&w| w < needed) {
            return Err(FlowError::config(format!(
                "made: a hidden width of {w} cannot carry the dependencies of {features} \
                 features{}; give at least {needed}",
                if cond_dim > 0 { " and a condition" } else { "" }
            )));
        }
        Ok(Made::new(
            features,
            cond_dim,
            &self.hidden,
            params,
            self.activation,
            device,
        ))
    }
}

/// The degrees of a MADE's hidden units, cycling through `1..D` (feature `D` never needs to be
/// seen), or `0..D` with a condition: units of degree 0 see the condition alone, so that the
/// first feature's parameters depend on it too. Inputs have degrees `1..=D`, condition inputs
/// 0.
pub fn hidden_degrees(width: usize, features: usize, conditional: bool) -> Vec<usize> {
    let lowest = if conditional {
        0
    } else {
        features.saturating_sub(1).min(1)
    };
    let count = features.saturating_sub(lowest).max(1);
    (0..width).map(|j| lowest + j % count).collect()
}

/// A 0/1 mask `[inputs, outputs]`, row-major: 1 where `connects(input degree, output degree)`.
fn mask(inputs: &[usize], outputs: &[usize], connects: impl Fn(usize, usize) -> bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(inputs.len() * outputs.len());
    for &i in inputs {
        out.extend(outputs.iter().map(|&o| f32::from(u8::from(connects(i, o)))));
    }
    out
}

/// The masked MLP; the last layer starts at zero.
#[derive(Module, Debug)]
pub struct Made {
    layers: Vec<Linear>,
    #[module(skip)]
    masks: Vec<Vec<f32>>,
    #[module(skip)]
    activation: Activation,
}

impl Made {
    fn new(
        features: usize,
        cond_dim: usize,
        hidden: &[usize],
        params: usize,
        activation: Activation,
        device: &Device,
    ) -> Self {
        // Condition inputs have degree 0: every hidden unit (degree >= 0) sees them.
        let mut degrees: Vec<usize> = (1..=features)
            .chain(std::iter::repeat_n(0, cond_dim))
            .collect();
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut masks = Vec::with_capacity(hidden.len() + 1);
        for &width in hidden {
            let next = hidden_degrees(width, features, cond_dim > 0);
            masks.push(mask(&degrees, &next, |i, o| o >= i));
            layers.push(LinearConfig::new(degrees.len(), width).init(device));
            degrees = next;
        }
        // Output unit `j * D + f` is parameter j of feature f (degree f + 1): it sees hidden
        // units of lower degree only.
        let outputs: Vec<usize> = (0..params).flat_map(|_| 1..=features).collect();
        masks.push(mask(&degrees, &outputs, |i, o| o > i));
        layers.push(zero_linear(degrees.len(), outputs.len(), device));
        Self {
            layers,
            masks,
            activation,
        }
    }

    /// `[batch, D]` features and the optional condition to `[batch, params * D]` raw
    /// parameters, parameter `j` of feature `f` at `j * D + f`.
    pub fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        let mut h = match cond {
            Some(c) => Tensor::cat(vec![x, c.clone()], 1),
            None => x,
        };
        let last = self.layers.len() - 1;
        for (i, (layer, mask)) in self.layers.iter().zip(&self.masks).enumerate() {
            let weight = layer.weight.val();
            let mask = constant(mask.clone(), weight.dims(), &weight);
            let bias = layer.bias.as_ref().map(|b| b.val());
            h = dense_with(
                weight * mask,
                bias,
                h,
                (i < last).then_some(self.activation),
            );
        }
        h
    }
}
