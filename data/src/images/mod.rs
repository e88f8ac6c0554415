//! Image folders: `ROOT/train/<class>/*` and `ROOT/val/<class>/*`, PNG or JPEG, grey or RGB,
//! decoded on worker threads (rayon) and resized to the configured size. Images are kept as
//! 8-bit `C x H x W`; [`ImageBatches`] draws seeded, augmented, dequantised batches ahead of the
//! training step on its own thread.
//!
//! [`roots`]: where images come from; [`load`]: listing and decoding; [`batches`]: training
//! batches; [`png`]: PNG output (grids, compressed sizes).

mod batches;
mod load;
mod mirror;
mod png;
mod roots;

use serde::{Deserialize, Serialize};

pub use batches::{
    Augment, ImageBatch, ImageBatches, dequantize, to_unit, train_batch, train_rows,
};
pub use load::{decode, load_any, load_folder, load_s3, load_split};
pub use mirror::{MirrorCheck, mirror_check};
pub use png::{deflate_bits, png_bits, save_grid, to_pixels};
pub use roots::{EMBEDDED, EMBEDDED_CLASSES, EMBEDDED_ROOT, EmbeddedSet, ImageRoot};

/// Size and colour of decoded images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageSpec {
    /// Values per image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether an image has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What to do with an image that cannot be read or decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadImage {
    /// Report it with its path and go on without it.
    #[default]
    Skip,
    /// Stop with an error naming it.
    Stop,
}

/// Decoded images of one folder tree.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    /// Size of every image.
    pub spec: Option<ImageSpec>,
    /// `n * spec.len()` bytes, image after image, each `C x H x W`.
    pub pixels: Vec<u8>,
    /// Where each image came from.
    pub paths: Vec<String>,
    /// The folder (class) of each image.
    pub classes: Vec<String>,
    /// Images that were skipped, with why.
    pub skipped: Vec<(String, String)>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.spec.map_or(0, |s| s.len());
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The distinct classes, sorted.
    pub fn class_names(&self) -> Vec<String> {
        let mut c = self.classes.clone();
        c.sort();
        c.dedup();
        c
    }
}
