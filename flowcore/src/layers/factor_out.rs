//! Multiscale factor-out (RealNVP, Glow): the first `active` features go on through the inner
//! layers, the rest leave the flow here as latent features, unchanged.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layer::{BuildLayer, Layer, LayerSpec, build_chain, specs_cond_dim};
use crate::tensor_util::cat_features;
use crate::{Bijector, Chain, DataInit, FlowError, Result};

/// Multiscale factor-out: `layers` act on the first `active` of `dim` features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorOutSpec {
    /// Features in.
    pub dim: usize,
    /// Features that go on through `layers`.
    pub active: usize,
    /// The inner layers.
    pub layers: Vec<LayerSpec>,
}

impl BuildLayer for FactorOutSpec {
    type Layer = FactorOut;

    fn build(&self, device: &Device) -> Result<FactorOut> {
        let (dim, active) = (self.dim, self.active);
        if active == 0 || active >= dim {
            return Err(FlowError::config(format!(
                "factor_out must keep between 1 and {} of its {dim} features active, got {active}",
                dim.saturating_sub(1)
            )));
        }
        let inner = build_chain(&self.layers, device)?;
        if inner.dim() != active {
            return Err(FlowError::config(format!(
                "factor_out keeps {active} features active but its inner layers map {}",
                inner.dim()
            )));
        }
        Ok(FactorOut { inner, active, dim })
    }

    fn cond_dim(&self) -> usize {
        specs_cond_dim(&self.layers)
    }
}

/// The layers of a [`FactorOutSpec`] on the first `active` features, the rest passed through.
#[derive(Module, Debug)]
pub struct FactorOut {
    inner: Chain<Layer>,
    #[module(skip)]
    active: usize,
    #[module(skip)]
    dim: usize,
}

impl FactorOut {
    fn split(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        (
            x.clone().narrow(1, 0, self.active),
            x.narrow(1, self.active, self.dim - self.active),
        )
    }
}

impl Bijector for FactorOut {
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let (a, rest) = self.split(x);
        let (z, ld) = self.inner.forward(a, cond);
        (cat_features(vec![z, rest]), ld)
    }

    fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let (a, rest) = self.split(z);
        let (x, ld) = self.inner.inverse(a, cond);
        (cat_features(vec![x, rest]), ld)
    }

    fn inverse_without_logdet(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        let (a, rest) = self.split(z);
        cat_features(vec![self.inner.inverse_without_logdet(a, cond), rest])
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

impl DataInit for FactorOut {
    fn initialize(self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Self, Tensor<2>) {
        let (a, rest) = self.split(x);
        let (inner, z) = self.inner.initialize(a, cond);
        let out = cat_features(vec![z, rest]);
        (Self { inner, ..self }, out)
    }

    fn init_flags(&self, flags: &mut Vec<bool>) {
        self.inner.init_flags(flags);
    }

    fn set_init_flags(&mut self, flags: &mut dyn Iterator<Item = bool>) {
        self.inner.set_init_flags(flags);
    }
}
