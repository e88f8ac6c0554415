//! The conditional alternative to the INN (cINN): a flow over `x` conditioned on `y`.

use burn::prelude::*;

use crate::Flow;
use crate::train::{Batch, Loss, MaximumLikelihood, Objective};

/// The cINN alternative: a flow over the data columns `x` conditioned on `y`, trained by
/// maximum likelihood; noise columns `eps` in the data are ignored (marginalised).
#[derive(Clone, Debug)]
pub struct ConditionalObjective {
    /// Data columns per sample (the first columns of the data rows).
    pub x_dim: usize,
    /// Noise columns that follow them, ignored.
    pub noise_dim: usize,
}

impl ConditionalObjective {
    fn data_columns(&self, data: &Batch, dim: usize) -> Batch {
        Batch {
            x: data
                .x
                .chunks(dim)
                .flat_map(|r| r[..self.x_dim].iter().copied())
                .collect(),
            y: data.y.clone(),
        }
    }

    /// `n` samples of `p(x | y_obs)`: the flow's inverse of `z ~ N(0, I)` given `y_obs`.
    pub fn posterior(
        &self,
        flow: &Flow,
        y_obs: &[f32],
        n: usize,
        seed: u64,
        device: &Device,
    ) -> Tensor<2> {
        let cond = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(y_obs.to_vec(), [1, y_obs.len()]),
            device,
        )
        .expand([n, y_obs.len()]);
        flow.sample(n, 1.0, seed, Some(&cond), device)
    }
}

impl Objective for ConditionalObjective {
    fn name(&self) -> &'static str {
        "nll"
    }

    fn is_likelihood(&self) -> bool {
        true
    }

    fn flow_dim(&self, dim: usize, y_dim: usize) -> Result<usize, String> {
        if dim != self.x_dim + self.noise_dim || y_dim == 0 {
            return Err(format!(
                "a conditional flow takes rows of {} data and {} noise columns with \
                 observations, but the data have {dim} columns and {y_dim} observations",
                self.x_dim, self.noise_dim
            ));
        }
        Ok(self.x_dim)
    }

    fn init_input(
        &self,
        x: Tensor<2>,
        y: Option<Tensor<2>>,
        _seed: u64,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        (x.narrow(1, 0, self.x_dim), y)
    }

    fn loss(&self, flow: &Flow, x: Tensor<2>, y: Option<Tensor<2>>, seed: u64, step: u64) -> Loss {
        MaximumLikelihood.loss(flow, x.narrow(1, 0, self.x_dim), y, seed, step)
    }

    fn validate(
        &self,
        flow: &Flow,
        data: &Batch,
        dim: usize,
        y_dim: usize,
        device: &Device,
    ) -> (f64, Vec<(String, f64)>) {
        MaximumLikelihood.validate(
            flow,
            &self.data_columns(data, dim),
            self.x_dim,
            y_dim,
            device,
        )
    }
}
