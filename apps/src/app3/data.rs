//! Application 3's data: labelled images, the validation images of the training classes (from
//! `val/`, else a seeded held-out share of `train/`), and the images of classes the model never
//! sees, for the out-of-distribution report.

use std::sync::Arc;

use anyhow::{Result, bail};
use flowcore::train::{Batch, DataSource, TrainingConfig};
use flowdata::images::{ImageBatches, ImageSet, to_unit};
use rand::seq::SliceRandom;

use crate::shared::classify::one_hot;
use crate::shared::images::ImageRun;

/// The images of a run.
pub(super) struct RunImages {
    /// The training classes, in label order.
    pub classes: Vec<String>,
    /// What the model learns.
    pub train: Arc<ImageSet>,
    /// The validation images of the training classes, and their labels.
    pub val_pixels: Vec<u8>,
    pub val_labels: Vec<usize>,
    /// `val/`, when the root has it (its other classes are the unseen ones).
    pub val_set: Option<ImageSet>,
}

impl RunImages {
    pub(super) fn load(images: &ImageRun, seed: u64) -> Result<Self> {
        let (all_train, val_set) = images.load()?;
        let classes = all_train.class_names();
        if classes.len() < 2 {
            bail!(
                "{}: train/ has only the class folder {:?}; a classifier needs at least 2 \
                 (train/<class>/ for each class)",
                images.images,
                classes
            );
        }
        // Validation: val/ images of the training classes, else a seeded held-out share of
        // train/.
        let seen = |set: &ImageSet| -> Vec<usize> {
            (0..set.len())
                .filter(|&i| classes.contains(&set.classes[i]))
                .collect()
        };
        let (train_set, (val_pixels, val_labels)) = match &val_set {
            Some(v) if !seen(v).is_empty() => (all_train, take(v, &seen(v), &classes)),
            _ => {
                let mut order: Vec<usize> = (0..all_train.len()).collect();
                order.shuffle(&mut flowdata::batch_rng(seed, u64::MAX));
                let n_val = ((all_train.len() as f64 * images.validation_fraction) as usize)
                    .clamp(1, all_train.len() - 1);
                let held = take(&all_train, &order[..n_val], &classes);
                (subset(&all_train, &order[n_val..]), held)
            }
        };
        Ok(Self {
            classes,
            train: Arc::new(train_set),
            val_pixels,
            val_labels,
            val_set,
        })
    }

    /// The data source of training.
    pub(super) fn source(&self, images: &ImageRun, training: &TrainingConfig) -> LabelledImages {
        let classes = &self.classes;
        LabelledImages {
            batches: images.batches(
                self.train.clone(),
                images.augment.resolve(&self.train, "run.augment"),
                training,
            ),
            labels: self
                .train
                .classes
                .iter()
                .map(|c| classes.iter().position(|k| k == c).unwrap_or(0))
                .collect(),
            classes: classes.len(),
            validation: Batch {
                x: to_unit(&self.val_pixels),
                y: one_hot(&self.val_labels, classes.len()),
            },
            dim: images.spec().len(),
        }
    }

    /// The images of `val/` of classes the model never saw: their pixels and folders.
    pub(super) fn unseen(&self) -> Option<(Vec<u8>, Vec<String>)> {
        let v = self.val_set.as_ref()?;
        let unseen: Vec<usize> = (0..v.len())
            .filter(|&i| !self.classes.contains(&v.classes[i]))
            .collect();
        if unseen.is_empty() {
            return None;
        }
        let mut folders: Vec<String> = unseen.iter().map(|&i| v.classes[i].clone()).collect();
        folders.dedup();
        Some((take(v, &unseen, &self.classes).0, folders))
    }
}

/// The images of `set` at `rows` and their labels among `classes`.
fn take(set: &ImageSet, rows: &[usize], classes: &[String]) -> (Vec<u8>, Vec<usize>) {
    (
        rows.iter().flat_map(|&i| set.image(i).to_vec()).collect(),
        rows.iter()
            .map(|&i| {
                classes
                    .iter()
                    .position(|c| *c == set.classes[i])
                    .unwrap_or(0)
            })
            .collect(),
    )
}

/// A copy of `set` with only the images at `rows`.
fn subset(set: &ImageSet, rows: &[usize]) -> ImageSet {
    ImageSet {
        spec: set.spec,
        pixels: rows.iter().flat_map(|&i| set.image(i).to_vec()).collect(),
        paths: rows.iter().map(|&i| set.paths[i].clone()).collect(),
        classes: rows.iter().map(|&i| set.classes[i].clone()).collect(),
        skipped: set.skipped.clone(),
    }
}

/// Labelled training batches (one-hot labels) and the labelled validation images.
pub(super) struct LabelledImages {
    batches: ImageBatches,
    labels: Vec<usize>,
    classes: usize,
    validation: Batch,
    dim: usize,
}

impl DataSource for LabelledImages {
    fn dim(&self) -> usize {
        self.dim
    }

    fn y_dim(&self) -> usize {
        self.classes
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let b = self.batches.batch(step, batch_size);
        let labels: Vec<usize> = b.indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch {
            x: b.values,
            y: one_hot(&labels, self.classes),
        })
    }

    fn validation(&mut self) -> Result<Batch, String> {
        Ok(self.validation.clone())
    }

    fn discretization_nats(&self) -> f64 {
        self.dim as f64 * 256f64.ln()
    }
}
