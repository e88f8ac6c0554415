//! RealNVP on dense vectors, in the layout of TensorFlow Probability's `RealNVP` bijector (its
//! key names are accepted as aliases).

use serde::{Deserialize, Serialize};

use super::{Architecture, DataShape, derive_seed};
use crate::layer::LayerSpec;
use crate::layers::{
    ActNormSpec, CouplingSpec, LuLinearSpec, Mask, PermutationKind, Permute, PermuteSpec,
};
use crate::nets::{Activation, MlpSpec, NetSpec, ResMlpSpec};
use crate::transform::Transform;
use crate::{FlowError, Result};

/// What mixes the features between two dense couplings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mixing {
    /// Reverse the features (TFP's `Permute` with a reversed order).
    #[default]
    Reverse,
    /// A seeded random permutation per gap.
    Random,
    /// No permutation; the mask alternates halves instead (the original RealNVP).
    Alternate,
    /// A seeded random permutation and a learnt LU-parametrised linear map per gap (Glow's
    /// 1x1 convolution for vectors, starting as the identity): the couplings can route any
    /// combination of features to any output, which a fixed permutation cannot.
    LuLinear,
    /// Two blocks `[a | b]` split at `split_at`, for an INN's `[x | eps] -> [y | z]`: the
    /// first coupling transforms all of `b` given `a`, the others a seeded random half of `a`
    /// given the rest, and a rotation ends the flow as `[b | a]`. The noise block becomes the
    /// observation through one map of the parameters, as the simulator makes it, and the
    /// parameter block a latent through couplings that see the observation: the network holds
    /// a conditional flow of `x` given `y` (the cINN), and the fit of `y` reaches only the
    /// first coupling.
    Blocks,
}

/// The parameter network of a dense coupling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenseNet {
    /// Plain MLP with the hidden widths of the coupling.
    #[default]
    Mlp,
    /// Residual MLP: width = first hidden width, one block per further hidden width.
    ResMlp,
}

fn default_layers() -> usize {
    8
}
fn default_hidden() -> Vec<usize> {
    vec![256, 256]
}

/// How the blocks of a residual MLP normalise and take the condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResidualOptions {
    /// Layer normalisation at the start of each block.
    pub layer_norm: bool,
    /// Batch normalisation at the start of each block.
    pub batch_norm: bool,
    /// The condition fed to every block.
    pub cond_every_block: bool,
}

impl DenseNet {
    /// The network of these hidden widths: an MLP of them, or a residual MLP as wide as the
    /// first with a block per further width (one at least).
    pub fn spec(
        self,
        hidden: Vec<usize>,
        residual: ResidualOptions,
        activation: Activation,
    ) -> std::result::Result<NetSpec, String> {
        Ok(match self {
            Self::Mlp => MlpSpec { hidden, activation }.into(),
            Self::ResMlp => {
                let width = *hidden
                    .first()
                    .ok_or("res_mlp needs at least one hidden width")?;
                ResMlpSpec {
                    width,
                    blocks: hidden.len().saturating_sub(1).max(1),
                    norm: residual.layer_norm,
                    activation,
                    batch_norm: residual.batch_norm,
                    cond_every_block: residual.cond_every_block,
                }
                .into()
            }
        })
    }
}

/// RealNVP on dense vectors: `num_layers` couplings with a half mask (any `dim >= 2`, odd
/// included), permutations or alternating masks between them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealNvpConfig {
    /// Features; 0 (or absent): those of the data ([`Architecture::with_data_shape`]).
    #[serde(default)]
    pub dim: usize,
    /// Number of couplings.
    #[serde(default = "default_layers", alias = "num_couplings")]
    pub num_layers: usize,
    /// Hidden widths of every coupling's network (TFP's `hidden_layers`).
    #[serde(default = "default_hidden", alias = "hidden_layers")]
    pub hidden_units: Vec<usize>,
    /// Per-coupling hidden widths; overrides `hidden_units` and must have `num_layers` entries.
    #[serde(default)]
    pub hidden_per_layer: Option<Vec<Vec<usize>>>,
    /// MLP or residual MLP.
    #[serde(default)]
    pub net: DenseNet,
    /// Layer normalisation in residual blocks.
    #[serde(default)]
    pub layer_norm: bool,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: Activation,
    /// Affine (RealNVP) or additive (NICE).
    #[serde(default)]
    pub transform: Transform,
    /// What mixes features between couplings.
    #[serde(default)]
    pub permutation: Mixing,
    /// An ActNorm before every coupling.
    #[serde(default)]
    pub actnorm: bool,
    /// Seed of the random permutations.
    #[serde(default)]
    pub seed: u64,
    /// Size of the optional condition (0: unconditional).
    #[serde(default)]
    pub cond_dim: usize,
    /// The size of the first block for `permutation = "blocks"`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub split_at: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl RealNvpConfig {
    /// Defaults for `dim` features: 8 couplings of [256, 256], affine, reversed between.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            num_layers: default_layers(),
            hidden_units: default_hidden(),
            hidden_per_layer: None,
            net: DenseNet::Mlp,
            layer_norm: false,
            activation: Activation::Relu,
            transform: Transform::default(),
            permutation: Mixing::Reverse,
            actnorm: false,
            seed: 0,
            cond_dim: 0,
            split_at: 0,
        }
    }
}

impl RealNvpConfig {
    /// The two blocks of `permutation = "blocks"`, checked; `None` for the other mixings.
    fn blocks(&self) -> Result<Option<Blocks>> {
        if self.permutation != Mixing::Blocks {
            if self.split_at != 0 {
                return Err(FlowError::config(
                    "real_nvp_dense: split_at is only read with permutation = \"blocks\"",
                ));
            }
            return Ok(None);
        }
        if self.split_at == 0 || self.split_at >= self.dim {
            return Err(FlowError::config(format!(
                "real_nvp_dense: permutation = \"blocks\" needs split_at between 1 and dim - 1 \
                 = {}, got {}",
                self.dim - 1,
                self.split_at
            )));
        }
        Ok(Some(Blocks {
            dim: self.dim,
            split_at: self.split_at,
            seed: self.seed,
        }))
    }
}

/// The masks of `permutation = "blocks"`.
struct Blocks {
    dim: usize,
    split_at: usize,
    seed: u64,
}

impl Blocks {
    /// Coupling `i`'s mask: the second block given the first for the first coupling; then one
    /// half of a seeded shuffle of the first block (the other half next time) given the rest.
    fn mask(&self, i: usize) -> Mask {
        let a = self.split_at;
        if i == 0 {
            return Mask::Features {
                dim: self.dim,
                transformed: (a..self.dim).collect(),
            };
        }
        if a == 1 {
            return Mask::Features {
                dim: self.dim,
                transformed: vec![0],
            };
        }
        let m = i - 1;
        let shuffle = Permute::new(a, PermutationKind::Random, derive_seed(self.seed, m / 2));
        let (first, second) = shuffle.indices().split_at(a / 2);
        let transformed = if m.is_multiple_of(2) { first } else { second };
        Mask::Features {
            dim: self.dim,
            transformed: transformed.to_vec(),
        }
    }
}

impl Architecture for RealNvpConfig {
    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        if self.dim < 2 {
            return Err(FlowError::config(format!(
                "real_nvp_dense: dim must be at least 2, got {}",
                self.dim
            )));
        }
        if self.num_layers == 0 {
            return Err(FlowError::config(
                "real_nvp_dense: num_layers must be at least 1",
            ));
        }
        if let Some(per) = &self.hidden_per_layer
            && per.len() != self.num_layers
        {
            return Err(FlowError::config(format!(
                "real_nvp_dense: hidden_per_layer has {} entries but num_layers is {}",
                per.len(),
                self.num_layers
            )));
        }
        let blocks = self.blocks()?;
        let mut specs = Vec::new();
        for i in 0..self.num_layers {
            let hidden = match &self.hidden_per_layer {
                Some(per) => per[i].clone(),
                None => self.hidden_units.clone(),
            };
            let net = self
                .net
                .spec(
                    hidden,
                    ResidualOptions {
                        layer_norm: self.layer_norm,
                        ..ResidualOptions::default()
                    },
                    self.activation,
                )
                .map_err(|e| FlowError::config(format!("real_nvp_dense: {e}")))?;
            if self.actnorm {
                specs.push(ActNormSpec::dense(self.dim).into());
            }
            let mask = match &blocks {
                Some(blocks) => blocks.mask(i),
                None => Mask::Half {
                    dim: self.dim,
                    flip: self.permutation == Mixing::Alternate && i % 2 == 1,
                },
            };
            specs.push(
                CouplingSpec {
                    mask,
                    transform: self.transform,
                    net,
                    cond_dim: self.cond_dim,
                    z2: false,
                }
                .into(),
            );
            let last = i + 1 == self.num_layers;
            if let (true, Some(blocks)) = (last, &blocks) {
                specs.push(
                    PermuteSpec {
                        dim: self.dim,
                        permutation: PermutationKind::Rotate(blocks.split_at),
                        seed: 0,
                    }
                    .into(),
                );
            }
            if last || matches!(self.permutation, Mixing::Alternate | Mixing::Blocks) {
                continue;
            }
            specs.push(
                PermuteSpec {
                    dim: self.dim,
                    permutation: if self.permutation == Mixing::Reverse {
                        PermutationKind::Reverse
                    } else {
                        PermutationKind::Random
                    },
                    seed: derive_seed(self.seed, i),
                }
                .into(),
            );
            if self.permutation == Mixing::LuLinear {
                specs.push(LuLinearSpec { dim: self.dim }.into());
            }
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
