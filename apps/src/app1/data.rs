//! Application 1's data: a toy distribution drawn fresh for every batch, or the points of a
//! CSV file with a held-out share.

use anyhow::{Context, Result};
use flowcore::train::{Batch, DataSource};
use flowdata::{Toy, batch_rng, read_points_csv};
use rand::Rng;

use super::RunGroup;
use crate::shared::points::{split_rows, take_rows};

pub(super) enum Points {
    Toy {
        toy: Toy,
        seed: u64,
        validation: usize,
    },
    File {
        name: String,
        dim: usize,
        train: Vec<f32>,
        validation: Vec<f32>,
        seed: u64,
    },
}

impl Points {
    pub(super) fn new(run: &RunGroup, seed: u64) -> Result<Self> {
        if !run.points.is_empty() {
            let pts = read_points_csv(std::path::Path::new(&run.points))
                .with_context(|| "run.points".to_string())?;
            let (val, train) = split_rows(&run.points, pts.n, run.validation_size, seed)?;
            return Ok(Self::File {
                name: run.points.clone(),
                dim: pts.dim,
                validation: take_rows(&pts.values, pts.dim, &val),
                train: take_rows(&pts.values, pts.dim, &train),
                seed,
            });
        }
        let toy: Toy = run
            .dataset
            .parse()
            .map_err(|e| anyhow::anyhow!("run.dataset: {e}"))?;
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

    pub(super) fn entropy(&self) -> Option<f64> {
        match self {
            Self::Toy { toy, .. } => toy.entropy(),
            Self::File { .. } => None,
        }
    }
}

impl DataSource for Points {
    fn dim(&self) -> usize {
        match self {
            Self::Toy { toy, .. } => toy.dim(),
            Self::File { dim, .. } => *dim,
        }
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let mut rng = match self {
            Self::Toy { seed, .. } | Self::File { seed, .. } => batch_rng(*seed, step),
        };
        Ok(Batch::unlabelled(match self {
            Self::Toy { toy, .. } => toy.sample(batch_size, &mut rng),
            Self::File { dim, train, .. } => {
                let n = train.len() / *dim;
                (0..batch_size)
                    .flat_map(|_| {
                        let i = rng.random_range(0..n);
                        train[i * *dim..(i + 1) * *dim].to_vec()
                    })
                    .collect()
            }
        }))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        Ok(Batch::unlabelled(match self {
            // A stream no training step uses: steps count up from 0.
            Self::Toy {
                toy,
                seed,
                validation,
            } => toy.sample(
                *validation,
                &mut batch_rng(*seed ^ 0x5A5A_5A5A, u64::MAX - 1),
            ),
            Self::File { validation, .. } => validation.clone(),
        }))
    }
}
