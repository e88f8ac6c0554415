//! A free list of layers: any flow the layer specs can describe.

use serde::{Deserialize, Serialize};

use super::{Architecture, DataShape};
use crate::Result;
use crate::layer::{LayerSpec, specs_cond_dim};

/// Any list of layers, data to latent; its sizes are its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerList {
    /// The layers, data to latent.
    pub layers: Vec<LayerSpec>,
}

impl Architecture for LayerList {
    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        Ok(self.layers.clone())
    }

    fn with_data_shape(self, _shape: &DataShape) -> Self {
        self
    }

    fn cond_dim(&self) -> usize {
        specs_cond_dim(&self.layers)
    }
}
