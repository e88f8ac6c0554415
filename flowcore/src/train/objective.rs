//! What training minimises. [`fit`](super::fit) runs the same loop (optimizer, schedule,
//! clipping, NaN guard, checkpoints) for any [`Objective`]: maximum likelihood here, the INN
//! objective of Ardizzone et al. in [`crate::inn`].

use burn::prelude::*;

use super::Batch;
use crate::Flow;

/// A loss and its named parts (for logging; the parts need not add up to the total when they
/// are weighted).
pub struct Loss {
    /// The scalar to minimise, shape `[1]`.
    pub total: Tensor<1>,
    /// Named parts, shape `[1]` each.
    pub parts: Vec<(&'static str, Tensor<1>)>,
}

/// What training minimises.
pub trait Objective {
    /// The loss's name in metrics and logs: `nll` for maximum likelihood, so tracked metrics
    /// are `val_nll` and `epoch_train_nll`.
    fn name(&self) -> &'static str;

    /// Whether the loss is a negative log-likelihood in nats per sample, which bits/dim are
    /// reported for.
    fn is_likelihood(&self) -> bool;

    /// Features the flow maps, given the data's `dim` and `y_dim`, or why the data do not
    /// fit the objective; training checks it against the flow.
    fn flow_dim(&self, dim: usize, y_dim: usize) -> Result<usize, String>;

    /// The flow's input for data-dependent initialisation (ActNorm) from a first batch.
    fn init_input(
        &self,
        x: Tensor<2>,
        y: Option<Tensor<2>>,
        seed: u64,
    ) -> (Tensor<2>, Option<Tensor<2>>);

    /// The loss of one batch at global step `step`. Anything random in it is drawn from
    /// `(seed, step)`, so a resumed run repeats an uninterrupted one.
    fn loss(&self, flow: &Flow, x: Tensor<2>, y: Option<Tensor<2>>, seed: u64, step: u64) -> Loss;

    /// The validation loss and its parts, without gradients; lower is better. Its randomness
    /// is fixed, so epochs compare.
    fn validate(
        &self,
        flow: &Flow,
        data: &Batch,
        dim: usize,
        y_dim: usize,
        device: &Device,
    ) -> (f64, Vec<(String, f64)>);
}

/// Maximum likelihood: minimise `-log p(x)`, or `-log p(x | y)` for a conditional flow when
/// the data carry `y`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaximumLikelihood;

impl Objective for MaximumLikelihood {
    fn name(&self) -> &'static str {
        "nll"
    }

    fn is_likelihood(&self) -> bool {
        true
    }

    fn flow_dim(&self, dim: usize, _y_dim: usize) -> Result<usize, String> {
        Ok(dim)
    }

    fn init_input(
        &self,
        x: Tensor<2>,
        y: Option<Tensor<2>>,
        _seed: u64,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        (x, y)
    }

    fn loss(
        &self,
        flow: &Flow,
        x: Tensor<2>,
        y: Option<Tensor<2>>,
        _seed: u64,
        _step: u64,
    ) -> Loss {
        // Layers' penalties (a continuous flow's RNODE terms) join the likelihood here only:
        // validation and densities stay the plain negative log-likelihood.
        let (nll, penalty) =
            crate::penalty::collect(|| flow.log_prob(x, condition(flow, y).as_ref()).mean().neg());
        match penalty {
            None => Loss {
                total: nll,
                parts: Vec::new(),
            },
            Some(penalty) => Loss {
                total: nll.clone() + penalty.clone(),
                parts: vec![("nll", nll), ("penalty", penalty)],
            },
        }
    }

    fn validate(
        &self,
        flow: &Flow,
        data: &Batch,
        dim: usize,
        y_dim: usize,
        device: &Device,
    ) -> (f64, Vec<(String, f64)>) {
        (mean_nll_batch(flow, data, dim, y_dim, device), Vec::new())
    }
}

/// `y` as the flow's condition when the flow takes one; an unconditional flow ignores it.
fn condition(flow: &Flow, y: Option<Tensor<2>>) -> Option<Tensor<2>> {
    y.filter(|_| flow.config().cond_dim() > 0)
}

/// Mean `-log p(x | y)` of a batch (`-log p(x)` for an unconditional flow), in chunks, without
/// gradients.
pub fn mean_nll_batch(flow: &Flow, data: &Batch, dim: usize, y_dim: usize, device: &Device) -> f64 {
    let n = data.x.len() / dim;
    let chunk = 4096;
    let mut total = 0.0;
    for start in (0..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let (x, y) = data
            .rows(start, m, dim, y_dim)
            .to_tensors(dim, y_dim, device);
        total += flow
            .log_prob(x, condition(flow, y).as_ref())
            .sum()
            .into_scalar::<f64>();
    }
    -total / n as f64
}

/// Mean NLL of `values` (`[n, dim]`) under an unconditional `flow`, in batches, without
/// gradients.
pub fn mean_nll(flow: &Flow, values: &[f32], dim: usize, device: &Device) -> f64 {
    mean_nll_batch(flow, &Batch::unlabelled(values.to_vec()), dim, 0, device)
}
