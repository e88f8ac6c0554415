//! The data of the inverse problems: the standardisation of parameters and observations, and
//! the simulator's pairs, fresh for every step.

use flowcore::train::{Batch, DataSource};
use flowdata::batch_rng;
use flowdata::inverse::{JointSample, Simulator, draw};
use serde::{Deserialize, Serialize};

/// Per-column mean and standard deviation of `x` and `y` under the prior: the networks see
/// standardised values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each parameter.
    pub x_mean: Vec<f64>,
    /// Standard deviation of each parameter.
    pub x_std: Vec<f64>,
    /// Mean of each observation.
    pub y_mean: Vec<f64>,
    /// Standard deviation of each observation.
    pub y_std: Vec<f64>,
}

fn moments(values: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (values.len() / dim).max(1) as f64;
    let mut mean = vec![0.0; dim];
    for row in values.chunks(dim) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n);
    }
    let mut var = vec![0.0; dim];
    for row in values.chunks(dim) {
        var.iter_mut()
            .zip(row.iter().zip(&mean))
            .for_each(|(s, (v, m))| *s += (v - m).powi(2) / n);
    }
    (mean, var.into_iter().map(|v| v.sqrt().max(1e-12)).collect())
}

fn to_unit(values: &[f64], mean: &[f64], std: &[f64]) -> Vec<f32> {
    values
        .chunks(mean.len())
        .flat_map(|r| {
            r.iter()
                .zip(mean.iter().zip(std))
                .map(|(v, (m, s))| ((v - m) / s) as f32)
        })
        .collect()
}

fn from_unit(values: &[f32], mean: &[f64], std: &[f64]) -> Vec<f64> {
    values
        .chunks(mean.len())
        .flat_map(|r| {
            r.iter()
                .zip(mean.iter().zip(std))
                .map(|(v, (m, s))| f64::from(*v) * s + m)
        })
        .collect()
}

impl Normalization {
    /// From joint draws.
    pub fn from_joint(joint: &JointSample) -> Self {
        let (x_mean, x_std) = moments(&joint.x, joint.x_dim);
        let (y_mean, y_std) = moments(&joint.y, joint.y_dim);
        Self {
            x_mean,
            x_std,
            y_mean,
            y_std,
        }
    }

    /// Parameters to standard units.
    pub fn x_to_unit(&self, x: &[f64]) -> Vec<f32> {
        to_unit(x, &self.x_mean, &self.x_std)
    }

    /// Parameters back from standard units.
    pub fn x_from_unit(&self, x: &[f32]) -> Vec<f64> {
        from_unit(x, &self.x_mean, &self.x_std)
    }

    /// Observations to standard units.
    pub fn y_to_unit(&self, y: &[f64]) -> Vec<f32> {
        to_unit(y, &self.y_mean, &self.y_std)
    }
}

/// The simulator's pairs as training data: rows `[x | eps]` standardised, with `y`
/// standardised; fresh for every step.
pub(super) struct Simulated<'a> {
    pub(super) sim: &'a dyn Simulator,
    pub(super) norm: &'a Normalization,
    pub(super) seed: u64,
    pub(super) validation_size: usize,
}

impl Simulated<'_> {
    fn pairs(&self, n: usize, rng: &mut dyn rand::RngCore) -> Batch {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let d = draw(self.sim, rng);
            x.extend(self.norm.x_to_unit(&d.x));
            x.extend(d.eps.iter().map(|e| *e as f32));
            y.extend(self.norm.y_to_unit(&d.y));
        }
        Batch { x, y }
    }
}

impl DataSource for Simulated<'_> {
    fn dim(&self) -> usize {
        self.sim.x_dim() + noise_dim(self.sim)
    }

    fn y_dim(&self) -> usize {
        self.sim.y_dim()
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        Ok(self.pairs(batch_size, &mut batch_rng(self.seed, step)))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        let mut rng = batch_rng(self.seed ^ 0x5A5A_5A5A, u64::MAX - 1);
        Ok(self.pairs(self.validation_size, &mut rng))
    }
}

pub(super) fn noise_dim(sim: &dyn Simulator) -> usize {
    if sim.noise_std() > 0.0 {
        sim.y_dim()
    } else {
        0
    }
}
