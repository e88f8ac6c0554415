//! Application 2's data: the training images, the validation images (those of `val/` of the
//! training classes, else a held-out tail of `train/`), and the training batches.

use std::sync::Arc;

use anyhow::Result;
use flowcore::train::{Batch, DataSource, TrainingConfig};
use flowdata::images::{Augment, ImageBatches, ImageSet, to_unit};

use crate::shared::images::ImageRun;

/// The images of a run.
pub(super) struct RunImages {
    /// What the model learns.
    pub train: Arc<ImageSet>,
    /// The training classes: folders of these names are normal, others outliers.
    pub normal: Vec<String>,
    /// The validation images, pixels.
    pub val_pixels: Vec<u8>,
    /// `val/`, scored after training, when the root has it.
    pub val_set: Option<ImageSet>,
    /// The training augmentation, `flip = "auto"` decided.
    pub augment: Augment,
}

impl RunImages {
    pub(super) fn load(images: &ImageRun) -> Result<Self> {
        let spec = images.spec();
        let (train_set, val_set) = images.load()?;
        // Checked now, not after training: the run ends by scoring val/.
        if val_set.is_none() {
            anyhow::bail!(
                "{}: no val/ folder to score; application 2 scores the images of val/<class>/ \
                 after training (folders of the training classes and others)",
                images.images
            );
        }
        let normal = train_set.class_names();
        // Validation: val/ images of the training classes, else a held-out slice of train/.
        let (train_set, val_pixels) = match &val_set {
            Some(v) if !normal_rows(v, &normal).is_empty() => {
                let idx = normal_rows(v, &normal);
                (train_set, pixels_of(v, &idx))
            }
            _ => {
                let n_val = ((train_set.len() as f64 * images.validation_fraction) as usize)
                    .clamp(1, train_set.len().saturating_sub(1).max(1));
                let mut rest = train_set;
                let cut = (rest.len() - n_val) * spec.len();
                let val = rest.pixels.split_off(cut);
                rest.paths.truncate(rest.len() - n_val);
                rest.classes.truncate(rest.paths.len());
                (rest, val)
            }
        };
        tracing::info!(
            "{}: {} training images of {:?}, {} validation images{}",
            images.images,
            train_set.len(),
            normal,
            val_pixels.len() / spec.len(),
            if train_set.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} unreadable skipped", train_set.skipped.len())
            }
        );
        let augment = images.augment.resolve(&train_set, "run.augment");
        Ok(Self {
            train: Arc::new(train_set),
            normal,
            val_pixels,
            val_set,
            augment,
        })
    }

    /// The data source of training.
    pub(super) fn source(&self, images: &ImageRun, training: &TrainingConfig) -> Images {
        self.source_with(images, training, self.augment)
    }

    /// The data source of training with another augmentation (the background model's).
    pub(super) fn source_with(
        &self,
        images: &ImageRun,
        training: &TrainingConfig,
        augment: Augment,
    ) -> Images {
        Images {
            batches: images.batches(self.train.clone(), augment, training),
            validation: to_unit(&self.val_pixels),
            dim: images.spec().len(),
        }
    }
}

/// The images of `set` of the training classes.
fn normal_rows(set: &ImageSet, normal: &[String]) -> Vec<usize> {
    (0..set.len())
        .filter(|&i| normal.contains(&set.classes[i]))
        .collect()
}

/// The pixels of the images `idx` of `set`, image after image.
pub(super) fn pixels_of(set: &ImageSet, idx: &[usize]) -> Vec<u8> {
    idx.iter().flat_map(|&i| set.image(i).to_vec()).collect()
}

/// Dequantised training batches and the validation images, in `[0, 1)`.
pub(super) struct Images {
    batches: ImageBatches,
    validation: Vec<f32>,
    dim: usize,
}

impl DataSource for Images {
    fn dim(&self) -> usize {
        self.dim
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        Ok(Batch::unlabelled(
            self.batches.batch(step, batch_size).values,
        ))
    }

    fn train_rows(
        &mut self,
        step: u64,
        global: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Batch, String> {
        Ok(Batch::unlabelled(
            self.batches.rows(step, global, rows).values,
        ))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        Ok(Batch::unlabelled(self.validation.clone()))
    }

    fn discretization_nats(&self) -> f64 {
        self.dim as f64 * 256f64.ln()
    }
}
