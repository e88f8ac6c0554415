//! A class-conditional model's own evidence about an input, beside its likelihood: what
//! application 3's out-of-distribution report scores unseen classes with.

use burn::prelude::*;
use flowcore::Flow;
use flowcore::classify::Classifier;

use super::infer::{rows, to_vec};

/// A class-conditional model's own evidence about one input, for out-of-distribution reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassEvidence {
    /// Entropy of `p(y | x)`, nats: high where no class explains the input.
    pub posterior_entropy: f64,
    /// `max_k log p(x | y = k)`, nats, for a class-conditional base (`ib`); the INN split has
    /// no class likelihoods.
    pub max_class_log_likelihood: Option<f64>,
}

/// [`ClassEvidence`] of every row of `values`.
pub fn class_evidence(
    classifier: &Classifier,
    flow: &Flow,
    values: &[f32],
    dim: usize,
    device: &Device,
) -> Vec<ClassEvidence> {
    let n = values.len() / dim;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(1024) {
        let m = 1024.min(n - start);
        let x = rows(&values[start * dim..(start + m) * dim], dim, device);
        let log_post = to_vec(classifier.log_probs(flow, x.clone()).into_data());
        let k = log_post.len() / m;
        let max_ll = match classifier {
            Classifier::Ib => {
                let (z, logdet) = flow.forward(x, None);
                flow.class_log_likelihoods(z)
                    .map(|ll| to_vec((ll.max_dim(1).squeeze_dim::<1>(1) + logdet).into_data()))
            }
            Classifier::Inn { .. } => None,
        };
        for i in 0..m {
            let row = &log_post[i * k..(i + 1) * k];
            let entropy = -row
                .iter()
                .map(|&l| f64::from(l).exp() * f64::from(l))
                .filter(|v| v.is_finite())
                .sum::<f64>();
            out.push(ClassEvidence {
                posterior_entropy: entropy.max(0.0),
                max_class_log_likelihood: max_ll.as_ref().map(|v| f64::from(v[i])),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowcore::{ArchitectureConfig, BaseConfig, RealNvpConfig};

    #[test]
    fn the_mixture_likelihood_lies_within_log_k_of_the_best_class() {
        // p(x) = (1/K) sum_k p(x | k), so max_k log p(x | k) - log K <= log p(x) <= max_k.
        let device = Device::flex();
        let classes = 3;
        let flow = Flow::with_base(
            ArchitectureConfig::RealNvpDense(RealNvpConfig::new(4)),
            BaseConfig::ClassGaussians {
                classes,
                init_std: 2.0,
            },
            Some(1),
            &device,
        )
        .unwrap();
        let values: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let evidence = class_evidence(&Classifier::Ib, &flow, &values, 4, &device);
        let log_p = crate::shared::infer::log_prob_rows(&flow, &values, 4, &device);
        let ln_k = (classes as f64).ln();
        for (e, lp) in evidence.iter().zip(&log_p) {
            let max = e.max_class_log_likelihood.unwrap();
            let lp = f64::from(*lp);
            assert!(
                lp <= max + 1e-4 && lp >= max - ln_k - 1e-4,
                "{lp} against {max}"
            );
            assert!((0.0..=ln_k + 1e-6).contains(&e.posterior_entropy));
        }
    }
}
