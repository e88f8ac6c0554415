//! What the point applications (1 and 4) share: the `[run]` keys that say which points
//! ([`PointRun`]), and the points themselves ([`PointSet`]): a toy distribution drawn fresh for
//! every batch, or the rows of a CSV file with a held-out share, with or without labels.

use std::path::Path;

use anyhow::{Context, Result, bail};
use flowcore::train::{Batch, DataSource};
use flowdata::{Toy, batch_rng, read_labelled_points_csv, read_points_csv};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::classify::one_hot;
use crate::run::cli::ConfigFlags;

/// The `[run]` keys of the point applications.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointRun {
    /// Toy dataset: `moons`, `moons:NOISE`, `mvn`, `gmm`, `helix`, `helix:NOISE`, `gmm3d` (for a
    /// classifier, one with classes: `gmm`, `moons`, `gmm3d`).
    pub dataset: String,
    /// A CSV of points to learn instead of the toy dataset ("" for none).
    #[serde(default)]
    pub points: String,
    /// Validation points (toy data: drawn once; CSV: this many held out, at most a fifth).
    pub validation_size: usize,
    /// Points in each figure.
    pub plot_points: usize,
}

/// The flags of `train` that choose the points.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PointFlags {
    /// Toy dataset (run.dataset): moons, moons:NOISE, mvn, gmm, helix, gmm3d; with classes:
    /// gmm, moons, gmm3d.
    #[arg(long)]
    dataset: Option<String>,
    /// Learn the points of this CSV instead of a toy dataset (run.points).
    #[arg(long)]
    points: Option<std::path::PathBuf>,
}

impl ConfigFlags for PointFlags {
    fn sets(self) -> Vec<String> {
        let mut sets = Vec::new();
        if let Some(d) = self.dataset {
            sets.push(format!("run.dataset={d}"));
            sets.push("run.points=\"\"".to_string());
        }
        if let Some(p) = self.points {
            sets.push(format!(
                "run.points={}",
                toml::Value::String(p.display().to_string())
            ));
        }
        sets
    }
}

/// Where the points come from.
enum Source {
    Toy {
        toy: Toy,
        validation: usize,
    },
    File {
        name: String,
        dim: usize,
        classes: Vec<String>,
        train: (Vec<f32>, Vec<usize>),
        validation: (Vec<f32>, Vec<usize>),
    },
}

/// The points of a run; labelled ones carry a one-hot label per point as `y`.
pub struct PointSet {
    source: Source,
    labelled: bool,
    seed: u64,
}

impl PointSet {
    /// The points `run` names, drawn from `seed`, without labels.
    pub fn unlabelled(run: &PointRun, seed: u64) -> Result<Self> {
        let source = if run.points.is_empty() {
            Source::Toy {
                toy: toy(run)?,
                validation: run.validation_size.max(1),
            }
        } else {
            let pts = read_points_csv(Path::new(&run.points))
                .with_context(|| "run.points".to_string())?;
            pts.check_outliers(&run.points).context("run.points")?;
            file(run, pts.dim, Vec::new(), &pts.values, &[], seed)?
        };
        Ok(Self {
            source,
            labelled: false,
            seed,
        })
    }

    /// The points `run` names with their classes: a toy set's components, or the column
    /// `label_column` of the CSV.
    pub fn labelled(run: &PointRun, label_column: &str, seed: u64) -> Result<Self> {
        let source = if run.points.is_empty() {
            let toy = toy(run)?;
            if toy.classes().is_none() {
                bail!(
                    "run.dataset: `{toy}` has no classes; use gmm, moons or gmm3d, or --points \
                     with a label column"
                );
            }
            Source::Toy {
                toy,
                validation: run.validation_size.max(1),
            }
        } else {
            let lp = read_labelled_points_csv(Path::new(&run.points), label_column)
                .context("run.points")?;
            if lp.class_names.len() < 2 {
                bail!(
                    "{}: every point has the label `{}`; a classifier needs at least 2 classes",
                    run.points,
                    lp.class_names.first().map_or("", String::as_str)
                );
            }
            let p = &lp.points;
            file(
                run,
                p.dim,
                lp.class_names.clone(),
                &p.values,
                &lp.labels,
                seed,
            )?
        };
        Ok(Self {
            source,
            labelled: true,
            seed,
        })
    }

    /// The toy set, or the file.
    pub fn name(&self) -> String {
        match &self.source {
            Source::Toy { toy, .. } => toy.to_string(),
            Source::File { name, .. } => name.clone(),
        }
    }

    /// The toy set, when the points are drawn from one.
    pub fn toy(&self) -> Option<&Toy> {
        match &self.source {
            Source::Toy { toy, .. } => Some(toy),
            Source::File { .. } => None,
        }
    }

    /// Entropy of the data in nats, where known: the best NLL a model can reach.
    pub fn entropy(&self) -> Option<f64> {
        self.toy().and_then(Toy::entropy)
    }

    /// The class names, in label order (a toy set's are `class0, class1, ...`).
    pub fn classes(&self) -> Vec<String> {
        match &self.source {
            Source::Toy { toy, .. } => (0..toy.classes().unwrap_or(1))
                .map(|k| format!("class{k}"))
                .collect(),
            Source::File { classes, .. } => classes.clone(),
        }
    }

    /// The validation points and their labels (0 for unlabelled toy sets; none for an
    /// unlabelled file).
    pub fn labelled_validation(&self) -> (Vec<f32>, Vec<usize>) {
        match &self.source {
            // A stream no training step uses: steps count up from 0.
            Source::Toy { toy, validation } => toy.sample_labelled(
                *validation,
                &mut batch_rng(self.seed ^ 0x5A5A_5A5A, u64::MAX - 1),
            ),
            Source::File { validation, .. } => validation.clone(),
        }
    }

    fn batch(&self, x: Vec<f32>, labels: &[usize]) -> Batch {
        if self.labelled {
            Batch {
                x,
                y: one_hot(labels, self.classes().len()),
            }
        } else {
            Batch::unlabelled(x)
        }
    }
}

impl DataSource for PointSet {
    fn dim(&self) -> usize {
        match &self.source {
            Source::Toy { toy, .. } => toy.dim(),
            Source::File { dim, .. } => *dim,
        }
    }

    fn y_dim(&self) -> usize {
        if self.labelled {
            self.classes().len()
        } else {
            0
        }
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let mut rng = batch_rng(self.seed, step);
        let (x, labels) = match &self.source {
            Source::Toy { toy, .. } => toy.sample_labelled(batch_size, &mut rng),
            Source::File { dim, train, .. } => {
                let n = train.0.len() / *dim;
                let picks: Vec<usize> = (0..batch_size).map(|_| rng.random_range(0..n)).collect();
                let labels = if train.1.is_empty() {
                    Vec::new()
                } else {
                    picks.iter().map(|&i| train.1[i]).collect()
                };
                (take_rows(&train.0, *dim, &picks), labels)
            }
        };
        Ok(self.batch(x, &labels))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        let (x, labels) = self.labelled_validation();
        Ok(self.batch(x, &labels))
    }
}

fn toy(run: &PointRun) -> Result<Toy> {
    run.dataset
        .parse()
        .map_err(|e| anyhow::anyhow!("run.dataset: {e}"))
}

/// The rows of a file (`values`, `[n, dim]`, with `labels` or none), split into training and
/// held-out validation rows: a seeded shuffle, of which `validation_size` rows (at most a
/// fifth, at least one) are held out. Fewer than 10 points are an error.
fn file(
    run: &PointRun,
    dim: usize,
    classes: Vec<String>,
    values: &[f32],
    labels: &[usize],
    seed: u64,
) -> Result<Source> {
    let n = values.len() / dim.max(1);
    if n < 10 {
        bail!("{}: {n} points are too few to train on", run.points);
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut batch_rng(seed, u64::MAX));
    let n_val = run.validation_size.min(n / 5).max(1);
    let take = |rows: &[usize]| -> (Vec<f32>, Vec<usize>) {
        let l = if labels.is_empty() {
            Vec::new()
        } else {
            rows.iter().map(|&i| labels[i]).collect()
        };
        (take_rows(values, dim, rows), l)
    };
    Ok(Source::File {
        name: run.points.clone(),
        dim,
        classes,
        validation: take(&order[..n_val]),
        train: take(&order[n_val..]),
    })
}

/// The rows `rows` of `values` (`[n, dim]`), row-major.
pub fn take_rows(values: &[f32], dim: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&i| values[i * dim..(i + 1) * dim].iter().copied())
        .collect()
}
