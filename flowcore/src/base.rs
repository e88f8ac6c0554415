//! Base distributions of a flow: the standard normal, or one unit-covariance Gaussian per
//! class with learnt means (the class-conditional base of generative classifiers, as in the
//! information-bottleneck INN of Ardizzone et al. 2020).

use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::{FlowError, Result};

fn one() -> f64 {
    1.0
}

/// Which base distribution. Saved in checkpoints beside the architecture.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BaseConfig {
    /// `N(0, I)`.
    #[default]
    StandardNormal,
    /// `p(z) = (1/K) sum_k N(z; mu_k, I)` with learnt means `mu_k`, one per class;
    /// `p(z | y = k) = N(z; mu_k, I)`.
    ClassGaussians {
        /// Number of classes `K`.
        classes: usize,
        /// Standard deviation of the means' random initial values.
        #[serde(default = "one")]
        init_std: f64,
    },
}

impl BaseConfig {
    /// The number of classes of a class-conditional base.
    pub fn classes(&self) -> Option<usize> {
        match self {
            Self::StandardNormal => None,
            Self::ClassGaussians { classes, .. } => Some(*classes),
        }
    }

    /// The learnt parameters of this base for `dim` features: the class means `[K, dim]`.
    pub(crate) fn build(&self, dim: usize, device: &Device) -> Result<Option<Param<Tensor<2>>>> {
        match *self {
            Self::StandardNormal => Ok(None),
            Self::ClassGaussians { classes, init_std } => {
                if classes < 2 {
                    return Err(FlowError::config(format!(
                        "a class-conditional base needs at least 2 classes, got {classes}"
                    )));
                }
                if !(init_std.is_finite() && init_std >= 0.0) {
                    return Err(FlowError::config(format!(
                        "base init_std must be 0 or positive, got {init_std}"
                    )));
                }
                let init = Initializer::Normal {
                    mean: 0.0,
                    std: init_std,
                };
                Ok(Some(init.init([classes, dim], device)))
            }
        }
    }
}

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// `log N(z; 0, I)` per sample.
pub fn standard_normal_log_prob(z: Tensor<2>) -> Tensor<1> {
    let d = z.dims()[1] as f64;
    z.square()
        .sum_dim(1)
        .squeeze_dim::<1>(1)
        .mul_scalar(-0.5)
        .sub_scalar(0.5 * d * LN_2PI)
}

/// `log N(z; mu_k, I)` for every sample and class: `[n, K]` from `z` `[n, D]` and `means`
/// `[K, D]`.
pub fn class_log_likelihoods(z: Tensor<2>, means: Tensor<2>) -> Tensor<2> {
    let d = z.dims()[1] as f64;
    let z_sq = z.clone().square().sum_dim(1); // [n, 1]
    let m_sq = means.clone().square().sum_dim(1).transpose(); // [1, K]
    let cross = z.matmul(means.transpose()).mul_scalar(2.0); // [n, K]
    (z_sq + m_sq - cross)
        .mul_scalar(-0.5)
        .sub_scalar(0.5 * d * LN_2PI)
}

/// `log sum_k exp(t[:, k])` per row, stably.
pub fn log_sum_exp(t: Tensor<2>) -> Tensor<1> {
    let max = t.clone().max_dim(1).detach();
    (t - max.clone())
        .exp()
        .sum_dim(1)
        .log()
        .add(max)
        .squeeze_dim::<1>(1)
}

/// `log p(y = k | z)` under equal class priors: the log-softmax of the class likelihoods.
pub fn class_log_posterior(class_ll: Tensor<2>) -> Tensor<2> {
    log_softmax(class_ll, 1)
}
