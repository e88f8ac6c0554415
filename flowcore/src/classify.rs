//! Generative classification with flows, two ways:
//!
//! - [`IbObjective`]: a class-conditional Gaussian base ([`BaseConfig::ClassGaussians`]), so
//!   `p(x | y = k) = N(f(x); mu_k, I) |det J|`, trained on `-log p(x) / D + beta * CE`, the
//!   information-bottleneck INN of Ardizzone et al. 2020; `p(y | x)` follows from Bayes' rule.
//! - The split of Ardizzone et al. 2019: an [`InnObjective`] whose observation block holds the
//!   one-hot label, so that `forward` predicts the label and `inverse([e_k | z])` draws class
//!   `k`; [`onehot_log_posterior`] turns its prediction into class probabilities.
//!
//! Labels come as one-hot rows in a batch's `y`.
//!
//! [`BaseConfig::ClassGaussians`]: crate::BaseConfig::ClassGaussians

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::Flow;
use crate::base::{class_log_posterior, log_sum_exp};
use crate::inn::InnObjective;
use crate::train::{Batch, Loss, Objective};

/// `-log p(x) / D + beta * CE(y, p(y | x))` on a flow with a class-conditional base.
#[derive(Clone, Debug)]
pub struct IbObjective {
    /// Number of classes.
    pub classes: usize,
    /// Weight of the cross-entropy against the per-dimension NLL.
    pub beta: f64,
}

impl IbObjective {
    /// `(total, nll per sample, cross-entropy, accuracy)`, all `[1]`.
    fn parts(
        &self,
        flow: &Flow,
        x: Tensor<2>,
        y: Tensor<2>,
    ) -> (Tensor<1>, Tensor<1>, Tensor<1>, Tensor<1>) {
        let d = x.dims()[1] as f64;
        let (z, logdet) = flow.forward(x, None);
        let ll = flow
            .class_log_likelihoods(z)
            .expect("the IB objective needs a class-conditional base");
        let k = ll.dims()[1] as f64;
        let nll = (log_sum_exp(ll.clone()).sub_scalar(k.ln()) + logdet)
            .mean()
            .neg();
        let log_post = class_log_posterior(ll);
        let ce = (log_post.clone() * y.clone()).sum_dim(1).mean().neg();
        let hits = log_post.argmax(1).equal(y.argmax(1)).float().mean();
        let total = nll.clone().div_scalar(d) + ce.clone().mul_scalar(self.beta);
        (total, nll, ce, hits.detach())
    }
}

impl Objective for IbObjective {
    fn name(&self) -> &'static str {
        "ib_loss"
    }

    fn is_likelihood(&self) -> bool {
        false
    }

    fn flow_dim(&self, dim: usize, y_dim: usize) -> Result<usize, String> {
        if y_dim != self.classes {
            return Err(format!(
                "labels must be one-hot rows of {} classes, got {y_dim} values per sample",
                self.classes
            ));
        }
        Ok(dim)
    }

    fn init_input(
        &self,
        x: Tensor<2>,
        _y: Option<Tensor<2>>,
        _seed: u64,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        (x, None)
    }

    fn loss(
        &self,
        flow: &Flow,
        x: Tensor<2>,
        y: Option<Tensor<2>>,
        _seed: u64,
        _step: u64,
    ) -> Loss {
        let (total, nll, ce, acc) = self.parts(flow, x, y.expect("labels"));
        Loss {
            total,
            parts: vec![("nll", nll), ("cross_entropy", ce), ("accuracy", acc)],
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
        let n = data.x.len() / dim;
        let chunk = 1024;
        let mut sums = [0.0; 4];
        for start in (0..n).step_by(chunk) {
            let m = chunk.min(n - start);
            let (x, y) = data
                .rows(start, m, dim, y_dim)
                .to_tensors(dim, y_dim, device);
            let (t, nll, ce, acc) = self.parts(flow, x, y.expect("labels"));
            for (s, v) in sums.iter_mut().zip([t, nll, ce, acc]) {
                *s += v.into_scalar::<f64>() * m as f64;
            }
        }
        let [t, nll, ce, acc] = sums.map(|s| s / n.max(1) as f64);
        (
            t,
            vec![
                ("nll".into(), nll),
                ("cross_entropy".into(), ce),
                ("accuracy".into(), acc),
            ],
        )
    }
}

/// Class log-probabilities from an INN's label prediction `y_hat` (`[n, K]`): a Gaussian of
/// standard deviation `noise` (the label noise of training) around each one-hot code,
/// normalised over the classes.
pub fn onehot_log_posterior(y_hat: Tensor<2>, noise: f64) -> Tensor<2> {
    let k = y_hat.dims()[1];
    let eye = Tensor::<2>::eye(k, &y_hat.device()).cast(y_hat.dtype());
    let sq = crate::base::class_log_likelihoods(y_hat, eye);
    log_softmax(sq.div_scalar(noise * noise), 1)
}

/// How a trained flow classifies.
#[derive(Clone, Debug)]
pub enum Classifier {
    /// By Bayes' rule on a class-conditional base.
    Ib,
    /// From the label block of an INN, with the label noise of training.
    Inn {
        /// The INN's partition (the observation block holds the labels).
        objective: InnObjective,
    },
}

impl Classifier {
    /// `log p(y = k | x)`, `[n, K]`.
    pub fn log_probs(&self, flow: &Flow, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Ib => flow
                .class_log_posterior(x, None)
                .expect("an IB classifier has a class-conditional base"),
            Self::Inn { objective } => {
                let y_hat = objective.predict_y(flow, x);
                onehot_log_posterior(y_hat, objective.config.y_noise.max(1e-3))
            }
        }
    }

    /// `n` samples of class `class` of `classes`, `[n, D]`.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_class(
        &self,
        flow: &Flow,
        class: usize,
        classes: usize,
        n: usize,
        temperature: f64,
        seed: u64,
        device: &Device,
    ) -> Option<Tensor<2>> {
        match self {
            Self::Ib => flow.sample_class(class, n, temperature, seed, device),
            Self::Inn { objective } => {
                let mut code = vec![0.0f32; classes];
                *code.get_mut(class)? = 1.0;
                Some(objective.posterior_at(flow, &code, n, temperature, seed, device))
            }
        }
    }
}
