//! Masked autoregressive flows (Papamakarios et al. 2017): blocks of an autoregressive layer,
//! with the feature order reversed or shuffled between blocks; affine (MAF, by default with a
//! tanh-bounded log-scale) or rational-quadratic spline (`nsf_autoregressive`, Durkan et al.
//! 2019); as inverse autoregressive flows (IAF) with `inverse`; conditional when the data carry
//! a condition.

use serde::{Deserialize, Serialize};

use super::{Architecture, DataShape, derive_seed};
use crate::layer::LayerSpec;
use crate::layers::{AutoregressiveSpec, InvertSpec, PermutationKind, PermuteSpec};
use crate::nets::{Activation, MadeSpec};
use crate::transform::{Spline, Transform};
use crate::{FlowError, Result};

/// A stack of `num_layers` autoregressive blocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MafConfig {
    /// Features; 0 (or absent): those of the data.
    #[serde(default)]
    pub dim: usize,
    /// Number of autoregressive blocks.
    #[serde(default = "super::five_layers")]
    pub num_layers: usize,
    /// Hidden widths of every block's MADE.
    #[serde(default = "super::two_hidden_of_128")]
    pub hidden_units: Vec<usize>,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: Activation,
    /// The elementwise transform; absent: the kind's (affine with a tanh-bounded log-scale for
    /// `maf`, a rational-quadratic spline for `nsf_autoregressive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
    /// How the feature order changes between blocks: `reverse` or `random`.
    #[serde(default)]
    pub permutation: PermutationKind,
    /// Inverse autoregressive flow: every block inverted (one pass to sample, one per feature
    /// to evaluate a density).
    #[serde(default)]
    pub inverse: bool,
    /// Seed of the random permutations.
    #[serde(default)]
    pub seed: u64,
    /// Size of the optional condition (0: unconditional).
    #[serde(default)]
    pub cond_dim: usize,
}

impl MafConfig {
    fn specs(&self, kind: &str, transform: Transform) -> Result<Vec<LayerSpec>> {
        let bad = |what: String| Err(FlowError::config(format!("{kind}: {what}")));
        if self.dim == 0 {
            return bad("dim must be at least 1".into());
        }
        if self.num_layers == 0 {
            return bad("num_layers must be at least 1".into());
        }
        let made = MadeSpec {
            hidden: self.hidden_units.clone(),
            activation: self.activation,
        };
        let mut specs = Vec::new();
        for i in 0..self.num_layers {
            if i > 0 && self.dim > 1 {
                specs.push(
                    PermuteSpec {
                        dim: self.dim,
                        permutation: self.permutation,
                        seed: derive_seed(self.seed, i),
                    }
                    .into(),
                );
            }
            let block: LayerSpec = AutoregressiveSpec {
                dim: self.dim,
                transform,
                made: made.clone(),
                cond_dim: self.cond_dim,
            }
            .into();
            specs.push(if self.inverse {
                InvertSpec {
                    layers: vec![block],
                }
                .into()
            } else {
                block
            });
        }
        Ok(specs)
    }

    fn filled(mut self, shape: &DataShape) -> Self {
        shape.fill_dense(&mut self.dim, &mut self.cond_dim);
        self
    }
}

impl Architecture for MafConfig {
    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        let tanh = crate::transform::ScaleFn::Tanh { clamp: 3.0 };
        self.specs(
            "maf",
            self.transform.unwrap_or(Transform::Affine { scale: tanh }),
        )
    }

    fn with_data_shape(self, shape: &DataShape) -> Self {
        self.filled(shape)
    }

    fn cond_dim(&self) -> usize {
        self.cond_dim
    }
}

/// [`MafConfig`] whose transform is, unless given, a rational-quadratic spline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NsfAutoregressiveConfig(pub MafConfig);

impl Architecture for NsfAutoregressiveConfig {
    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        let spline = Transform::RationalQuadratic(Spline::default());
        self.0
            .specs("nsf_autoregressive", self.0.transform.unwrap_or(spline))
    }

    fn with_data_shape(self, shape: &DataShape) -> Self {
        Self(self.0.filled(shape))
    }

    fn cond_dim(&self) -> usize {
        self.0.cond_dim
    }
}
