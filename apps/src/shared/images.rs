//! What the image applications (2 and 3) share: the `[run]` keys that say which images, at
//! what size and how they are read ([`ImageRun`]), loading `train/` and `val/`, and bits per
//! dimension of 8-bit images.

use std::sync::Arc;

use anyhow::Result;
use burn::prelude::*;
use flowcore::layers::ImageShape;
use flowcore::train::{self, TrainingConfig};
use flowcore::{DataShape, Flow};
use flowdata::images::{
    Augment, ImageBatches, ImageRoot, ImageSet, ImageSpec, OnBadImage, load_split, mirror_check,
    to_unit,
};
use serde::{Deserialize, Serialize};

use super::infer::log_prob_rows;
use crate::run::cli::ConfigFlags;

/// The flags of `train` that choose the images.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ImageFlags {
    /// Image root with train/<class>/ and val/<class>/ (run.images).
    #[arg(long)]
    images: Option<String>,
}

impl ConfigFlags for ImageFlags {
    fn sets(self) -> Vec<String> {
        self.images
            .map(|i| vec![format!("run.images={}", toml::Value::String(i))])
            .unwrap_or_default()
    }
}

/// The `[run]` keys of the image applications.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRun {
    /// The image root with `train/<class>/` and `val/<class>/`: a folder,
    /// `s3://bucket/prefix`, or `embedded:fashion-mnist` (`embedded:fashion-mnist-classes`).
    pub images: String,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Images are resized to `height x width`.
    pub height: usize,
    /// See `height`.
    pub width: usize,
    /// `skip` (report and go on) or `stop`.
    pub on_bad_image: OnBadImage,
    /// Training augmentation.
    #[serde(default)]
    pub augment: AugmentConfig,
    /// Batches prepared ahead of the training step.
    pub prefetch: usize,
    /// Held out of `train/` for validation when `val/` has none of the training classes.
    pub validation_fraction: f64,
}

impl ImageRun {
    /// The size images are read at.
    pub fn spec(&self) -> ImageSpec {
        ImageSpec {
            channels: self.channels,
            height: self.height,
            width: self.width,
        }
    }

    /// The shape of the data, for the model.
    pub fn data_shape(&self) -> DataShape {
        DataShape::image(ImageShape::new(self.channels, self.height, self.width))
    }

    /// The images of `train/`, and those of `val/` when the root has that folder.
    pub fn load(&self) -> Result<(ImageSet, Option<ImageSet>)> {
        let root = ImageRoot::parse(&self.images)?;
        let spec = self.spec();
        let train_set = load_split(&root, "train", spec, self.on_bad_image)?;
        let val_set = match load_split(&root, "val", spec, self.on_bad_image) {
            Ok(v) => Some(v),
            Err(flowdata::DataError::Invalid(msg)) if msg.contains("no `val/`") => None,
            Err(e) => return Err(e.into()),
        };
        Ok((train_set, val_set))
    }

    /// Seeded, dequantised training batches of `set` augmented by `augment` (see
    /// [`AugmentConfig::resolve`]), prepared ahead.
    pub fn batches(
        &self,
        set: Arc<ImageSet>,
        augment: Augment,
        training: &TrainingConfig,
    ) -> ImageBatches {
        ImageBatches::new(
            set,
            augment,
            training.seed,
            training.batch_size,
            self.prefetch,
        )
    }
}

/// `run.augment.flip`: `true`, `false`, or `"auto"`, which flips when mirrored training images
/// lie as near the set as the images themselves ([`mirror_check`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FlipValue", into = "FlipValue")]
pub enum Flip {
    /// Never.
    #[default]
    Off,
    /// Left-right with probability 1/2.
    On,
    /// Decided from the training images.
    Auto,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum FlipValue {
    Fixed(bool),
    Word(String),
}

impl TryFrom<FlipValue> for Flip {
    type Error = String;

    fn try_from(v: FlipValue) -> Result<Self, String> {
        match v {
            FlipValue::Fixed(b) => Ok(if b { Flip::On } else { Flip::Off }),
            FlipValue::Word(w) if w == "auto" => Ok(Flip::Auto),
            FlipValue::Word(w) => Err(format!("flip must be true, false or \"auto\", got \"{w}\"")),
        }
    }
}

impl From<Flip> for FlipValue {
    fn from(f: Flip) -> Self {
        match f {
            Flip::Off => FlipValue::Fixed(false),
            Flip::On => FlipValue::Fixed(true),
            Flip::Auto => FlipValue::Word("auto".into()),
        }
    }
}

/// `[run.augment]`: [`Augment`] with `flip` possibly left to the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Mirror left-right: `true`, `false` or `"auto"`.
    pub flip: Flip,
    /// Rotate by up to this many degrees either way.
    pub rotate_degrees: f64,
    /// Scale by a factor in `[1 - zoom, 1 + zoom]`.
    pub zoom: f64,
}

impl AugmentConfig {
    /// Images mirrored for `flip = "auto"`, at most: enough for the quartiles, and a second
    /// or less on a few thousand 28 x 28 images.
    const MIRROR_PROBES: usize = 200;

    /// Check the values; errors name `key` (`run.augment`, say) and the value.
    pub fn validate(&self, key: &str) -> Result<()> {
        if !(self.rotate_degrees.is_finite() && (0.0..=180.0).contains(&self.rotate_degrees)) {
            anyhow::bail!(
                "{key}.rotate_degrees must lie in [0, 180], got {}",
                self.rotate_degrees
            );
        }
        // A factor of 1 - zoom at or below 0 would shrink an image to a point or mirror it.
        if !(self.zoom.is_finite() && (0.0..1.0).contains(&self.zoom)) {
            anyhow::bail!("{key}.zoom must lie in [0, 1), got {}", self.zoom);
        }
        Ok(())
    }

    /// The augmentation for training on `set`: `flip = "auto"` decided by [`mirror_check`],
    /// and the decision logged with its figures under `key` (`run.augment`, say).
    pub fn resolve(&self, set: &ImageSet, key: &str) -> Augment {
        let flip = match self.flip {
            Flip::Off => false,
            Flip::On => true,
            Flip::Auto => {
                let c = mirror_check(set, Self::MIRROR_PROBES);
                let on = c.flips_suit();
                tracing::info!(
                    "{key}.flip = \"auto\": {} ({} mirrored images lie {:.2}x (median) and \
                     {:.2}x (upper quartile) as far from the training images as the images \
                     themselves; flips need at most {:.2}x)",
                    if on { "flipping" } else { "not flipping" },
                    c.probes,
                    c.median_ratio,
                    c.upper_quartile_ratio,
                    flowdata::images::MirrorCheck::THRESHOLD
                );
                on
            }
        };
        Augment {
            flip,
            rotate_degrees: self.rotate_degrees,
            zoom: self.zoom,
        }
    }
}

/// Bits per dimension of 8-bit data from `log p(x)` of its `[0, 1)` scaling.
pub fn bits_per_dim_8bit(log_prob: f64, dim: usize) -> f64 {
    train::bits_per_dim(-log_prob + dim as f64 * 256f64.ln(), dim)
}

/// Bits per dimension of each image of `pixels` (8-bit, `spec`) under `flow`.
pub fn bits_per_dim_rows(flow: &Flow, pixels: &[u8], spec: ImageSpec, device: &Device) -> Vec<f64> {
    let dim = spec.len();
    log_prob_rows(flow, &to_unit(pixels), dim, device)
        .into_iter()
        .map(|lp| bits_per_dim_8bit(f64::from(lp), dim))
        .collect()
}
