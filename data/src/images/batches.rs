//! Training batches: seeded, augmented, dequantised, drawn per row so that any split of a batch
//! over ranks makes the same rows, and prepared ahead of the training step on a thread.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{ImageSet, ImageSpec};
use crate::{batch_rng, row_rng};
/// Random augmentation of training images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Rotate by up to this many degrees either way.
    pub rotate_degrees: f64,
    /// Scale by a factor in `[1 - zoom, 1 + zoom]`.
    pub zoom: f64,
}

impl Augment {
    fn is_identity(&self) -> bool {
        !self.flip && self.rotate_degrees == 0.0 && self.zoom == 0.0
    }

    /// Apply to one `C x H x W` image: a random affine map about the centre, bilinear, edges
    /// clamped.
    pub fn apply<R: Rng>(&self, img: &[u8], spec: ImageSpec, rng: &mut R) -> Vec<u8> {
        if self.is_identity() {
            return img.to_vec();
        }
        let flip = self.flip && rng.random::<bool>();
        let angle = if self.rotate_degrees > 0.0 {
            rng.random_range(-self.rotate_degrees..=self.rotate_degrees)
                .to_radians()
        } else {
            0.0
        };
        let scale = if self.zoom > 0.0 {
            rng.random_range(1.0 - self.zoom..=1.0 + self.zoom)
        } else {
            1.0
        };
        let (h, w) = (spec.height, spec.width);
        let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        let (sin, cos) = angle.sin_cos();
        let mut out = vec![0u8; img.len()];
        for y in 0..h {
            for x in 0..w {
                // The source point of output (x, y): undo scale and rotation, then the flip.
                let (dx, dy) = ((x as f64 - cx) / scale, (y as f64 - cy) / scale);
                let mut sx = cos * dx + sin * dy + cx;
                let sy = -sin * dx + cos * dy + cy;
                if flip {
                    sx = w as f64 - 1.0 - sx;
                }
                let sx = sx.clamp(0.0, w as f64 - 1.0);
                let sy = sy.clamp(0.0, h as f64 - 1.0);
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
                for c in 0..spec.channels {
                    let at = |yy: usize, xx: usize| f64::from(img[c * h * w + yy * w + xx]);
                    let v = at(y0, x0) * (1.0 - fx) * (1.0 - fy)
                        + at(y0, x1) * fx * (1.0 - fy)
                        + at(y1, x0) * (1.0 - fx) * fy
                        + at(y1, x1) * fx * fy;
                    out[c * h * w + y * w + x] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }
}

/// Uniform dequantisation: `(pixel + u) / 256`, `u ~ U[0, 1)`, into `[0, 1)`.
pub fn dequantize<R: Rng>(pixels: &[u8], rng: &mut R, out: &mut Vec<f32>) {
    out.extend(
        pixels
            .iter()
            .map(|&p| ((f64::from(p) + rng.random::<f64>()) / 256.0) as f32),
    );
}

/// Pixels to `[0, 1)` at the centre of each bin, `(pixel + 1/2) / 256`: the deterministic
/// input for scoring and validation.
pub fn to_unit(pixels: &[u8]) -> Vec<f32> {
    pixels
        .iter()
        .map(|&p| ((f64::from(p) + 0.5) / 256.0) as f32)
        .collect()
}

/// A training batch: dequantised pixels and which images of the set they are.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageBatch {
    /// Row-major `[batch, C*H*W]` in `[0, 1)`.
    pub values: Vec<f32>,
    /// The index in the set of each row's image (its class is `set.classes[i]`).
    pub indices: Vec<usize>,
}

/// Batch `step` of `batch_size` images drawn with replacement, augmented and dequantised; a
/// function of `(seed, step)` only.
pub fn train_batch(
    set: &ImageSet,
    augment: &Augment,
    seed: u64,
    step: u64,
    batch_size: usize,
) -> ImageBatch {
    train_rows(set, augment, seed, step, batch_size, 0..batch_size)
}

/// Rows `rows` of [`train_batch`]`(set, augment, seed, step, global)`, making only those: which
/// images is drawn for the whole batch from `(seed, step)` (cheap), each row's augmentation and
/// dequantisation noise from the row's own stream.
pub fn train_rows(
    set: &ImageSet,
    augment: &Augment,
    seed: u64,
    step: u64,
    global: usize,
    rows: std::ops::Range<usize>,
) -> ImageBatch {
    let spec = set.spec.expect("an image set has a spec");
    assert!(rows.end <= global, "rows {rows:?} of a batch of {global}");
    let mut pick = batch_rng(seed, step);
    let chosen: Vec<usize> = (0..global)
        .map(|_| pick.random_range(0..set.len()))
        .collect();
    let mut values = Vec::with_capacity(rows.len() * spec.len());
    let mut indices = Vec::with_capacity(rows.len());
    for row in rows {
        let i = chosen[row];
        let mut rng = row_rng(seed, step, row);
        let img = augment.apply(set.image(i), spec, &mut rng);
        dequantize(&img, &mut rng, &mut values);
        indices.push(i);
    }
    ImageBatch { values, indices }
}

/// Training batches made on a worker thread, `depth` steps ahead of the consumer: whole
/// batches, or one rank's rows of them.
pub struct ImageBatches {
    set: std::sync::Arc<ImageSet>,
    augment: Augment,
    seed: u64,
    global: usize,
    rows: std::ops::Range<usize>,
    depth: usize,
    next: u64,
    rx: Option<Receiver<(u64, ImageBatch)>>,
    worker: Option<JoinHandle<()>>,
}

impl ImageBatches {
    /// Batches of `set`.
    pub fn new(
        set: std::sync::Arc<ImageSet>,
        augment: Augment,
        seed: u64,
        batch_size: usize,
        depth: usize,
    ) -> Self {
        Self {
            set,
            augment,
            seed,
            global: batch_size,
            rows: 0..batch_size,
            depth: depth.max(1),
            next: u64::MAX,
            rx: None,
            worker: None,
        }
    }

    fn start(&mut self, from: u64) {
        self.stop();
        let (tx, rx): (SyncSender<(u64, ImageBatch)>, _) = sync_channel(self.depth);
        let (set, augment, seed) = (self.set.clone(), self.augment, self.seed);
        let (global, rows) = (self.global, self.rows.clone());
        self.worker = Some(std::thread::spawn(move || {
            for step in from.. {
                let batch = train_rows(&set, &augment, seed, step, global, rows.clone());
                if tx.send((step, batch)).is_err() {
                    break;
                }
            }
        }));
        self.rx = Some(rx);
        self.next = from;
    }

    fn stop(&mut self) {
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }

    /// The batch of `step`: from the worker when it is the next one, else the worker restarts
    /// there (after a resume, or when the batch size changed).
    pub fn batch(&mut self, step: u64, batch_size: usize) -> ImageBatch {
        self.rows(step, batch_size, 0..batch_size)
    }

    /// Rows `rows` of the batch of `step` of `global` images (see [`train_rows`]).
    pub fn rows(&mut self, step: u64, global: usize, rows: std::ops::Range<usize>) -> ImageBatch {
        if global != self.global || rows != self.rows {
            (self.global, self.rows) = (global, rows);
            self.next = u64::MAX;
        }
        if step != self.next || self.rx.is_none() {
            self.start(step);
        }
        let received = self.rx.as_ref().and_then(|rx| rx.recv().ok());
        match received {
            Some((s, batch)) if s == step => {
                self.next = step + 1;
                batch
            }
            _ => {
                self.next = u64::MAX;
                let rows = self.rows.clone();
                train_rows(&self.set, &self.augment, self.seed, step, global, rows)
            }
        }
    }
}

impl Drop for ImageBatches {
    fn drop(&mut self) {
        self.stop();
    }
}
