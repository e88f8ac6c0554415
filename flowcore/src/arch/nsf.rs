//! Neural spline flows (Durkan et al. 2019) on dense vectors: couplings whose transform is a
//! rational-quadratic spline, masks alternating, a learnt LU-parametrised linear map (or a
//! permutation) between them; conditional when the data carry a condition.

use serde::{Deserialize, Serialize};

use super::{Architecture, DataShape, DenseNet, ResidualOptions, derive_seed};
use crate::layer::LayerSpec;
use crate::layers::{CouplingSpec, LuLinearSpec, Mask, PermutationKind, PermuteSpec};
use crate::nets::Activation;
use crate::transform::{Spline, Transform};
use crate::{FlowError, Result};

/// What mixes the features between two spline couplings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NsfMixing {
    /// A learnt linear map, LU-parametrised, starting as the identity (nflows' `LULinear`).
    #[default]
    LuLinear,
    /// Reverse the features.
    Reverse,
    /// A seeded random permutation per gap.
    Random,
}

/// A neural spline flow of `num_layers` spline couplings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NsfConfig {
    /// Features; 0 (or absent): those of the data.
    #[serde(default)]
    pub dim: usize,
    /// Number of couplings.
    #[serde(default = "super::five_layers")]
    pub num_layers: usize,
    /// Hidden widths of every coupling's network.
    #[serde(default = "super::two_hidden_of_128")]
    pub hidden_units: Vec<usize>,
    /// MLP or residual MLP (as wide as the first width, a block per further width).
    #[serde(default)]
    pub net: DenseNet,
    /// Layer normalisation in residual blocks.
    #[serde(default)]
    pub layer_norm: bool,
    /// Batch normalisation in residual blocks (running statistics kept in checkpoints).
    #[serde(default)]
    pub batch_norm: bool,
    /// The condition fed to every residual block, not only to the first layer.
    #[serde(default)]
    pub cond_every_block: bool,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: Activation,
    /// The spline: bins, bound, minimum bin size and derivative.
    #[serde(default)]
    pub spline: Spline,
    /// What mixes features between couplings.
    #[serde(default)]
    pub mixing: NsfMixing,
    /// Seed of the random permutations.
    #[serde(default)]
    pub seed: u64,
    /// Size of the optional condition (0: unconditional).
    #[serde(default)]
    pub cond_dim: usize,
}

impl Architecture for NsfConfig {
    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        let bad = |what: String| Err(FlowError::config(format!("nsf: {what}")));
        if self.dim < 2 {
            return bad(format!("dim must be at least 2, got {}", self.dim));
        }
        if self.num_layers == 0 {
            return bad("num_layers must be at least 1".into());
        }
        let net = self
            .net
            .spec(
                self.hidden_units.clone(),
                ResidualOptions {
                    layer_norm: self.layer_norm,
                    batch_norm: self.batch_norm,
                    cond_every_block: self.cond_every_block,
                },
                self.activation,
            )
            .map_err(|e| FlowError::config(format!("nsf: {e}")))?;
        let mut specs = Vec::new();
        for i in 0..self.num_layers {
            if i > 0 {
                specs.push(match self.mixing {
                    NsfMixing::LuLinear => LuLinearSpec { dim: self.dim }.into(),
                    NsfMixing::Reverse | NsfMixing::Random => PermuteSpec {
                        dim: self.dim,
                        permutation: if self.mixing == NsfMixing::Random {
                            PermutationKind::Random
                        } else {
                            PermutationKind::Reverse
                        },
                        seed: derive_seed(self.seed, i),
                    }
                    .into(),
                });
            }
            specs.push(
                CouplingSpec {
                    mask: Mask::Half {
                        dim: self.dim,
                        flip: i % 2 == 1,
                    },
                    transform: Transform::RationalQuadratic(self.spline),
                    net: net.clone(),
                    cond_dim: self.cond_dim,
                    z2: false,
                }
                .into(),
            );
        }
        Ok(specs)
    }

    fn with_data_shape(mut self, shape: &DataShape) -> Self {
        shape.fill_dense(&mut self.dim, &mut self.cond_dim);
        self
    }

    fn cond_dim(&self) -> usize {
        self.cond_dim
    }
}
