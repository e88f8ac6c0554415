//! What training reads: batches of samples drawn by step from a [`DataSource`].

use burn::prelude::*;
use burn::tensor::TensorData;

/// A batch of samples, row-major: `x` holds `n` rows of the data's features and `y`, when the
/// data carry them, `n` rows of observations, labels or conditions (empty otherwise).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// `[n, dim]`.
    pub x: Vec<f32>,
    /// `[n, y_dim]`, or empty.
    pub y: Vec<f32>,
}

impl Batch {
    /// A batch without observations.
    pub fn unlabelled(x: Vec<f32>) -> Self {
        Self { x, y: Vec::new() }
    }

    /// Rows `start..start + n`, for features `dim` and `y_dim`.
    pub fn rows(&self, start: usize, n: usize, dim: usize, y_dim: usize) -> Self {
        Self {
            x: self.x[start * dim..(start + n) * dim].to_vec(),
            y: if y_dim == 0 {
                Vec::new()
            } else {
                self.y[start * y_dim..(start + n) * y_dim].to_vec()
            },
        }
    }

    /// As tensors on `device`: `x` as `[n, dim]`, `y` as `[n, y_dim]` when there is one.
    pub fn to_tensors(
        &self,
        dim: usize,
        y_dim: usize,
        device: &Device,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let n = self.x.len() / dim.max(1);
        let x = Tensor::<2>::from_data(TensorData::new(self.x.clone(), [n, dim]), device);
        let y = (y_dim > 0)
            .then(|| Tensor::<2>::from_data(TensorData::new(self.y.clone(), [n, y_dim]), device));
        (x, y)
    }
}

/// Training data: batches drawn by step, so a resumed run sees what an uninterrupted one
/// would, and a fixed validation set.
pub trait DataSource {
    /// Features per sample.
    fn dim(&self) -> usize;
    /// Observations, labels or conditions per sample that come with the features (0: none).
    fn y_dim(&self) -> usize {
        0
    }
    /// The batch of global step `step`, `batch_size` rows.
    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String>;
    /// Rows `rows` of the batch of global step `step` of `global` rows: one rank's share in
    /// data-parallel training. The ranks' shares together must be `train_batch(step, global)`,
    /// so that any number of ranks trains on the same data; the default draws that batch and
    /// keeps the rows, a source whose rows cost real work makes only its own.
    fn train_rows(
        &mut self,
        step: u64,
        global: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Batch, String> {
        let batch = self.train_batch(step, global)?;
        Ok(batch.rows(rows.start, rows.len(), self.dim(), self.y_dim()))
    }
    /// The validation set.
    fn validation(&mut self) -> Result<Batch, String>;
    /// Nats per sample between the model's NLL and the NLL of the discrete data it was made
    /// from: `dim * ln 256` for 8-bit values dequantised and scaled to `[0, 1)`, so that
    /// bits/dim come out the standard way. 0 for continuous data.
    fn discretization_nats(&self) -> f64 {
        0.0
    }
}
