//! Nested lists of layers, as layers: a chain, and a chain run backwards (its `forward` is the
//! chain's `inverse`). The combinators themselves are [`crate::Chain`] and [`crate::Invert`].

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layer::{BuildLayer, Layer, LayerSpec, build_chain, specs_cond_dim};
use crate::{Chain, Invert, Result};

/// Layers in sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    /// The layers, data to latent.
    pub layers: Vec<LayerSpec>,
}

impl BuildLayer for ChainSpec {
    type Layer = Chain<Layer>;

    fn build(&self, device: &Device) -> Result<Chain<Layer>> {
        build_chain(&self.layers, device)
    }

    fn cond_dim(&self) -> usize {
        specs_cond_dim(&self.layers)
    }
}

/// Layers in sequence, run backwards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvertSpec {
    /// The layers whose inverse this is.
    pub layers: Vec<LayerSpec>,
}

impl BuildLayer for InvertSpec {
    type Layer = Invert<Chain<Layer>>;

    fn build(&self, device: &Device) -> Result<Invert<Chain<Layer>>> {
        Ok(Invert {
            inner: build_chain(&self.layers, device)?,
        })
    }

    fn cond_dim(&self) -> usize {
        specs_cond_dim(&self.layers)
    }
}
