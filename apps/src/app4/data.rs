//! Application 4's data: a labelled toy distribution drawn fresh for every batch, or the points
//! of a CSV file with a label column and a held-out share.

use std::path::Path;

use anyhow::{Context, Result, bail};
use flowcore::train::{Batch, DataSource};
use flowdata::{Toy, batch_rng, read_labelled_points_csv};
use rand::Rng;

use super::RunGroup;
use crate::shared::classify::one_hot;
use crate::shared::points::{split_rows, take_rows};

pub(super) enum Labelled {
    Toy {
        toy: Toy,
        seed: u64,
        validation: usize,
    },
    File {
        name: String,
        dim: usize,
        classes: Vec<String>,
        train: (Vec<f32>, Vec<usize>),
        validation: (Vec<f32>, Vec<usize>),
        seed: u64,
    },
}

impl Labelled {
    pub(super) fn new(run: &RunGroup, seed: u64) -> Result<Self> {
        if !run.points.is_empty() {
            let lp = read_labelled_points_csv(Path::new(&run.points), &run.label_column)
                .context("run.points")?;
            if lp.class_names.len() < 2 {
                bail!(
                    "{}: every point has the label `{}`; a classifier needs at least 2 classes",
                    run.points,
                    lp.class_names.first().map_or("", String::as_str)
                );
            }
            let dim = lp.points.dim;
            let (val, train) = split_rows(&run.points, lp.points.n, run.validation_size, seed)?;
            let take = |rows: &[usize]| -> (Vec<f32>, Vec<usize>) {
                (
                    take_rows(&lp.points.values, dim, rows),
                    rows.iter().map(|&i| lp.labels[i]).collect(),
                )
            };
            return Ok(Self::File {
                name: run.points.clone(),
                dim,
                classes: lp.class_names.clone(),
                validation: take(&val),
                train: take(&train),
                seed,
            });
        }
        let toy: Toy = run
            .dataset
            .parse()
            .map_err(|e| anyhow::anyhow!("run.dataset: {e}"))?;
        if toy.classes().is_none() {
            bail!(
                "run.dataset: `{toy}` has no classes; use gmm, moons or gmm3d, or --points with \
                 a label column"
            );
        }
        Ok(Self::Toy {
            toy,
            seed,
            validation: run.validation_size.max(1),
        })
    }

    pub(super) fn name(&self) -> String {
        match self {
            Self::Toy { toy, .. } => toy.to_string(),
            Self::File { name, .. } => name.clone(),
        }
    }

    pub(super) fn classes(&self) -> Vec<String> {
        match self {
            Self::Toy { toy, .. } => (0..toy.classes().unwrap_or(1))
                .map(|k| format!("class{k}"))
                .collect(),
            Self::File { classes, .. } => classes.clone(),
        }
    }

    pub(super) fn labelled_validation(&self) -> (Vec<f32>, Vec<usize>) {
        match self {
            // A stream no training step uses: steps count up from 0.
            Self::Toy {
                toy,
                seed,
                validation,
            } => toy.sample_labelled(
                *validation,
                &mut batch_rng(*seed ^ 0x5A5A_5A5A, u64::MAX - 1),
            ),
            Self::File { validation, .. } => validation.clone(),
        }
    }
}

impl DataSource for Labelled {
    fn dim(&self) -> usize {
        match self {
            Self::Toy { toy, .. } => toy.dim(),
            Self::File { dim, .. } => *dim,
        }
    }

    fn y_dim(&self) -> usize {
        self.classes().len()
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let k = self.y_dim();
        let (x, labels) = match self {
            Self::Toy { toy, seed, .. } => {
                toy.sample_labelled(batch_size, &mut batch_rng(*seed, step))
            }
            Self::File {
                dim, train, seed, ..
            } => {
                let mut rng = batch_rng(*seed, step);
                let n = train.1.len();
                let picks: Vec<usize> = (0..batch_size).map(|_| rng.random_range(0..n)).collect();
                (
                    picks
                        .iter()
                        .flat_map(|&i| train.0[i * *dim..(i + 1) * *dim].iter().copied())
                        .collect(),
                    picks.iter().map(|&i| train.1[i]).collect(),
                )
            }
        };
        Ok(Batch {
            x,
            y: one_hot(&labels, k),
        })
    }

    fn validation(&mut self) -> Result<Batch, String> {
        let (x, labels) = self.labelled_validation();
        Ok(Batch {
            x,
            y: one_hot(&labels, self.y_dim()),
        })
    }
}
