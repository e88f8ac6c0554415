//! The two architectures of the original `flow_models`, built from config: RealNVP on dense
//! vectors and Glow on images, in the layouts of TensorFlow Probability's `RealNVP` and `Glow`
//! bijectors (the TFP key names are accepted as aliases), plus a free list of layers.

use serde::{Deserialize, Serialize};

use crate::layer::LayerSpec;
use crate::layers::{ImageShape, Mask, PermutationKind};
use crate::nets::{Activation, NetSpec};
use crate::transform::{ScaleFn, Transform};
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

/// RealNVP on dense vectors: `num_layers` couplings with a half mask (any `dim >= 2`, odd
/// included), permutations or alternating masks between them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealNvpConfig {
    /// Features.
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
        }
    }

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
        let mut specs = Vec::new();
        for i in 0..self.num_layers {
            let hidden = match &self.hidden_per_layer {
                Some(per) => per[i].clone(),
                None => self.hidden_units.clone(),
            };
            let net = match self.net {
                DenseNet::Mlp => NetSpec::Mlp {
                    hidden,
                    activation: self.activation,
                },
                DenseNet::ResMlp => {
                    let width = *hidden.first().ok_or_else(|| {
                        FlowError::config("real_nvp_dense: res_mlp needs at least one hidden width")
                    })?;
                    NetSpec::ResMlp {
                        width,
                        blocks: hidden.len().saturating_sub(1).max(1),
                        norm: self.layer_norm,
                        activation: self.activation,
                    }
                }
            };
            if self.actnorm {
                specs.push(LayerSpec::ActNorm {
                    channels: self.dim,
                    spatial: 1,
                });
            }
            specs.push(LayerSpec::Coupling {
                mask: Mask::Half {
                    dim: self.dim,
                    flip: self.permutation == Mixing::Alternate && i % 2 == 1,
                },
                transform: self.transform,
                net,
                cond_dim: self.cond_dim,
            });
            let last = i + 1 == self.num_layers;
            match self.permutation {
                Mixing::Reverse | Mixing::Random if !last => specs.push(LayerSpec::Permute {
                    dim: self.dim,
                    permutation: if self.permutation == Mixing::Random {
                        PermutationKind::Random
                    } else {
                        PermutationKind::Reverse
                    },
                    seed: derive_seed(self.seed, i),
                }),
                _ => {}
            }
        }
        Ok(specs)
    }
}

/// Which coupling mask Glow uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageMask {
    /// Channel halves (Glow).
    #[default]
    Channel,
    /// Alternating pixels (RealNVP's first stage).
    Checkerboard,
}

fn default_levels() -> usize {
    3
}
fn default_steps() -> usize {
    4
}
fn default_hidden_channels() -> usize {
    64
}
fn glow_transform() -> Transform {
    Transform::Affine {
        scale: ScaleFn::Sigmoid,
    }
}

/// Glow (Kingma & Dhariwal 2018) multiscale: `levels` times [squeeze, `steps_per_level` x
/// (ActNorm, 1x1 conv, affine coupling), factor out half] with no factor-out after the last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlowConfig {
    /// Image channels.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Levels (TFP's `num_glow_blocks`); each halves height and width.
    #[serde(default = "default_levels", alias = "num_glow_blocks")]
    pub levels: usize,
    /// Flow steps per level (TFP's `num_steps_per_block`).
    #[serde(default = "default_steps", alias = "num_steps_per_block")]
    pub steps_per_level: usize,
    /// Hidden channels of each coupling network.
    #[serde(default = "default_hidden_channels")]
    pub hidden_channels: usize,
    /// The coupling transform (default: affine with Glow's sigmoid scale).
    #[serde(default = "glow_transform")]
    pub transform: Transform,
    /// Channel or checkerboard masks.
    #[serde(default)]
    pub mask: ImageMask,
    /// Logit preprocessing with this alpha; none when absent.
    #[serde(default)]
    pub logit_alpha: Option<f64>,
    /// Seed of the 1x1 convolutions' permutations.
    #[serde(default)]
    pub seed: u64,
    /// Size of the optional condition (0: unconditional).
    #[serde(default)]
    pub cond_dim: usize,
}

impl GlowConfig {
    /// Defaults for one image shape: 3 levels x 4 steps x 64 channels.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
            levels: default_levels(),
            steps_per_level: default_steps(),
            hidden_channels: default_hidden_channels(),
            transform: glow_transform(),
            mask: ImageMask::Channel,
            logit_alpha: None,
            seed: 0,
            cond_dim: 0,
        }
    }

    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        let shape = ImageShape::new(self.channels, self.height, self.width);
        if shape.numel() == 0 {
            return Err(FlowError::config(format!(
                "glow: image shape {shape} is empty"
            )));
        }
        if self.levels == 0 || self.steps_per_level == 0 {
            return Err(FlowError::config(
                "glow: levels and steps_per_level must be at least 1",
            ));
        }
        let factor = 1usize
            .checked_shl(self.levels as u32)
            .filter(|f| *f <= self.height.max(self.width))
            .unwrap_or(usize::MAX);
        for (what, size) in [("height", self.height), ("width", self.width)] {
            if factor == usize::MAX || size % factor != 0 {
                let fits = (0..self.levels)
                    .take_while(|l| size % (2usize << l) == 0)
                    .count();
                return Err(FlowError::config(format!(
                    "glow: {what} {size} is not divisible by 2^{} (each of the {} levels halves it); \
                     use at most {fits} levels or resize the images",
                    self.levels, self.levels
                )));
            }
        }
        let mut specs = Vec::new();
        if let Some(alpha) = self.logit_alpha {
            specs.push(LayerSpec::Logit {
                dim: shape.numel(),
                alpha,
            });
        }
        specs.extend(self.level(0, shape));
        Ok(specs)
    }

    fn level(&self, level: usize, input: ImageShape) -> Vec<LayerSpec> {
        let s = ImageShape::new(input.channels * 4, input.height / 2, input.width / 2);
        let mut specs = vec![LayerSpec::Squeeze { shape: input }];
        for step in 0..self.steps_per_level {
            let mask = match self.mask {
                ImageMask::Channel => Mask::Channel {
                    shape: s,
                    flip: step % 2 == 1,
                },
                ImageMask::Checkerboard => Mask::Checkerboard {
                    shape: s,
                    flip: step % 2 == 1,
                },
            };
            specs.push(LayerSpec::ActNorm {
                channels: s.channels,
                spatial: s.spatial(),
            });
            specs.push(LayerSpec::InvConv {
                channels: s.channels,
                spatial: s.spatial(),
                seed: derive_seed(self.seed, level * 1000 + step),
            });
            specs.push(LayerSpec::Coupling {
                mask,
                transform: self.transform,
                net: NetSpec::Conv {
                    hidden_channels: self.hidden_channels,
                },
                cond_dim: self.cond_dim,
            });
        }
        if level + 1 < self.levels {
            let next = ImageShape::new(s.channels / 2, s.height, s.width);
            specs.push(LayerSpec::FactorOut {
                dim: s.numel(),
                active: next.numel(),
                layers: self.level(level + 1, next),
            });
        }
        specs
    }
}

fn derive_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index as u64 + 1)
}

/// Which flow to build. Saved in every checkpoint, so a checkpoint rebuilds its own model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArchitectureConfig {
    /// [`RealNvpConfig`].
    RealNvpDense(RealNvpConfig),
    /// [`GlowConfig`].
    Glow(GlowConfig),
    /// Any list of layers.
    Layers {
        /// The layers, data to latent.
        layers: Vec<LayerSpec>,
    },
}

impl ArchitectureConfig {
    /// The kind, as written in configs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RealNvpDense(_) => "real_nvp_dense",
            Self::Glow(_) => "glow",
            Self::Layers { .. } => "layers",
        }
    }

    /// The layers this architecture consists of, after checking the config.
    pub fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        match self {
            Self::RealNvpDense(c) => c.to_specs(),
            Self::Glow(c) => c.to_specs(),
            Self::Layers { layers } => Ok(layers.clone()),
        }
    }

    /// Size of the condition the flow takes (0: none).
    pub fn cond_dim(&self) -> usize {
        match self {
            Self::RealNvpDense(c) => c.cond_dim,
            Self::Glow(c) => c.cond_dim,
            Self::Layers { layers } => specs_cond_dim(layers),
        }
    }
}

fn specs_cond_dim(specs: &[LayerSpec]) -> usize {
    specs
        .iter()
        .map(|s| match s {
            LayerSpec::Coupling { cond_dim, .. } => *cond_dim,
            LayerSpec::FactorOut { layers, .. }
            | LayerSpec::Chain { layers }
            | LayerSpec::Invert { layers } => specs_cond_dim(layers),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}
