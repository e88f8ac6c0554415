//! A mode-covering term for training against an action: the negative log-likelihood of fields
//! drawn from the target by a Markov chain (forward KL up to a constant). Reverse KL alone is
//! mode-seeking: in the broken phase of phi^4 it under-weights the mixed fields between the
//! two vacua, and the importance weights there become heavy-tailed.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::Flow;
use crate::base::standard_normal_log_prob;

/// Fields of the target (from a chain) and the weight of their negative log-likelihood.
#[derive(Clone, Debug)]
pub struct ForwardKlTerm {
    fields: Arc<Vec<f32>>,
    sites: usize,
    /// The weight of `E_p[-log q]` beside the reverse KL.
    pub weight: f64,
    /// Fields per step.
    pub batch_size: usize,
    seed: u64,
}

impl ForwardKlTerm {
    /// `fields` holds rows of `sites` values; each step takes `batch_size` of them, chosen
    /// from `(seed, step)` so that a resumed run takes what an uninterrupted one would.
    pub fn new(
        fields: Vec<f32>,
        sites: usize,
        weight: f64,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self, String> {
        if sites == 0 || fields.is_empty() || !fields.len().is_multiple_of(sites) {
            return Err(format!(
                "the reference fields hold {} values, not whole fields of {sites} sites",
                fields.len()
            ));
        }
        if let Some(i) = fields.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "reference field {} has a non-finite value at site {}",
                i / sites,
                i % sites
            ));
        }
        if !(weight.is_finite() && weight > 0.0) {
            return Err(format!(
                "the forward KL weight must be positive, got {weight}"
            ));
        }
        if batch_size == 0 {
            return Err("the forward KL batch size must be positive".into());
        }
        Ok(Self {
            fields: Arc::new(fields),
            sites,
            weight,
            batch_size,
            seed,
        })
    }

    /// Fields held.
    pub fn len(&self) -> usize {
        self.fields.len() / self.sites
    }

    /// Whether it holds none (never, once built).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Step `step`'s fields `[batch, sites]`.
    pub fn batch(&self, step: u64, device: &Device) -> Tensor<2> {
        let n = self.len();
        let rows = self.batch_size.min(n);
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.seed
                .wrapping_mul(0xD1B5_4A32_D192_ED03)
                .wrapping_add(step),
        );
        let mut data = Vec::with_capacity(rows * self.sites);
        for i in sample(&mut rng, n, rows) {
            data.extend_from_slice(&self.fields[i * self.sites..(i + 1) * self.sites]);
        }
        Tensor::from_data(TensorData::new(data, [rows, self.sites]), device)
    }

    /// `-mean log q` over step `step`'s fields, with gradients.
    pub fn negative_log_likelihood(&self, flow: &Flow, step: u64, device: &Device) -> Tensor<1> {
        let (z, logdet) = flow.forward(self.batch(step, device), None);
        (standard_normal_log_prob(z) + logdet).mean().neg()
    }
}
