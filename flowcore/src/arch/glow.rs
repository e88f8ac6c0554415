//! Glow (Kingma & Dhariwal 2018) on images, in the layout of TensorFlow Probability's `Glow`
//! bijector (its key names are accepted as aliases).

use serde::{Deserialize, Serialize};

use super::{Architecture, DataShape, derive_seed};
use crate::layer::LayerSpec;
use crate::layers::{
    ActNormSpec, CouplingSpec, FactorOutSpec, ImageShape, InvConvSpec, LogitSpec, Mask, SqueezeSpec,
};
use crate::nets::ConvSpec;
use crate::transform::{ScaleFn, Transform};
use crate::{FlowError, Result};

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

fn glow_transform() -> Transform {
    Transform::Affine {
        scale: ScaleFn::Sigmoid,
    }
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

/// Glow (Kingma & Dhariwal 2018) multiscale: `levels` times [squeeze, `steps_per_level` x
/// (ActNorm, 1x1 conv, affine coupling), factor out half] with no factor-out after the last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlowConfig {
    /// Image channels; 0 (or absent): those of the data ([`Architecture::with_data_shape`]).
    #[serde(default)]
    pub channels: usize,
    /// Image height; 0 (or absent): that of the data.
    #[serde(default)]
    pub height: usize,
    /// Image width; 0 (or absent): that of the data.
    #[serde(default)]
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

    /// Where each level's latents lie in `z = forward(x)`, the first (finest) level first:
    /// level `l < levels - 1` factors out the tail half of its input, `[D / 2^(l+1), D / 2^l)`,
    /// and the last level keeps `[0, D / 2^(levels-1))`. The first levels carry local pixel
    /// statistics shared by all images, the last what is specific to the training data
    /// (Schirrmeister et al. 2020), which outlier scores use.
    pub fn level_latents(&self) -> Vec<std::ops::Range<usize>> {
        let dim = self.channels * self.height * self.width;
        let mut out = Vec::with_capacity(self.levels);
        let mut end = dim;
        for _ in 0..self.levels.saturating_sub(1) {
            out.push(end / 2..end);
            end /= 2;
        }
        out.push(0..end);
        out
    }

    fn level(&self, level: usize, input: ImageShape) -> Vec<LayerSpec> {
        let s = ImageShape::new(input.channels * 4, input.height / 2, input.width / 2);
        let mut specs = vec![SqueezeSpec { shape: input }.into()];
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
            specs.push(
                ActNormSpec {
                    channels: s.channels,
                    spatial: s.spatial(),
                }
                .into(),
            );
            specs.push(
                InvConvSpec {
                    channels: s.channels,
                    spatial: s.spatial(),
                    seed: derive_seed(self.seed, level * 1000 + step),
                }
                .into(),
            );
            specs.push(
                CouplingSpec {
                    mask,
                    transform: self.transform,
                    net: ConvSpec {
                        hidden_channels: self.hidden_channels,
                    }
                    .into(),
                    cond_dim: self.cond_dim,
                    z2: false,
                }
                .into(),
            );
        }
        if level + 1 < self.levels {
            let next = ImageShape::new(s.channels / 2, s.height, s.width);
            specs.push(
                FactorOutSpec {
                    dim: s.numel(),
                    active: next.numel(),
                    layers: self.level(level + 1, next),
                }
                .into(),
            );
        }
        specs
    }
}

impl Architecture for GlowConfig {
    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        let shape = ImageShape::new(self.channels, self.height, self.width);
        if shape.numel() == 0 {
            return Err(FlowError::config(format!(
                "glow: image shape {shape} is empty (channels, height and width come from the \
                 config or from image data)"
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
            specs.push(
                LogitSpec {
                    dim: shape.numel(),
                    alpha,
                }
                .into(),
            );
        }
        specs.extend(self.level(0, shape));
        Ok(specs)
    }

    fn with_data_shape(mut self, shape: &DataShape) -> Self {
        shape.fill_image(&mut self.channels, &mut self.height, &mut self.width);
        if self.cond_dim == 0 {
            self.cond_dim = shape.cond_dim;
        }
        self
    }

    fn cond_dim(&self) -> usize {
        self.cond_dim
    }
}
