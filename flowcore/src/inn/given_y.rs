//! The likelihood of `x` given the observed `y`, for INNs whose first layer makes `y` from the
//! noise given `x` alone (`InnLossConfig::weight_likelihood_given_y`).

use burn::prelude::*;

use super::{InnObjective, latent_nll, noise};
use crate::layers::Mask;
use crate::partition::{Role, Side};
use crate::{Chain, Flow, Layer};

impl InnObjective {
    /// The negative log-likelihood of `x` given `y` per data dimension (see
    /// [`InnLossConfig::weight_likelihood_given_y`](super::InnLossConfig::weight_likelihood_given_y)): every layer after the first on
    /// `[x | y]`, which [`InnObjective::check_network`] has found to be what the first layer
    /// makes of `[x | eps]` when its fit of `y` is exact.
    pub(super) fn nll_given_y(
        &self,
        flow: &Flow,
        x: &Tensor<2>,
        y: &Tensor<2>,
        pad_std: f64,
        seed: u64,
    ) -> Tensor<1> {
        let [n, _] = x.dims();
        let dx = self.x_dim();
        let given = self.partition.assemble(Side::Input, |role| match role {
            Role::Data => x.clone().narrow(1, 0, dx),
            Role::Noise => y.clone(),
            _ => {
                let k = self.partition.role_size(Side::Input, Role::Pad);
                noise(n, k, pad_std, seed, x)
            }
        });
        let (out, logdet) = Chain::run_forward(&flow.bijector().layers[1..], given);
        let z = self
            .partition
            .gather(Side::Output, Role::Latent, &out)
            .expect("a latent block");
        latent_nll(z, logdet, dx)
    }

    /// For [`InnLossConfig::weight_likelihood_given_y`](super::InnLossConfig::weight_likelihood_given_y): the network's first layer must be a
    /// coupling that transforms exactly the noise block, which must be as large as `y`.
    pub fn check_network(&self, flow: &Flow) -> Result<(), String> {
        if self.config.weight_likelihood_given_y == 0.0 {
            return Ok(());
        }
        let p = &self.partition;
        let noise: Vec<usize> = p
            .ranges(Side::Input, Role::Noise)
            .into_iter()
            .flatten()
            .collect();
        let why = if noise.len() != self.y_dim() {
            Some(format!(
                "the partition {p} has {} noise and {} observation dimensions; they must match",
                noise.len(),
                self.y_dim()
            ))
        } else {
            match flow.bijector().layers.first() {
                Some(Layer::Coupling(c)) => match c.mask() {
                    Mask::Features { transformed, .. }
                        if {
                            let mut t = transformed.clone();
                            t.sort_unstable();
                            t == noise
                        } =>
                    {
                        None
                    }
                    _ => Some(
                        "the network's first coupling does not transform exactly the noise block"
                            .into(),
                    ),
                },
                _ => Some("the network does not start with a coupling".into()),
            }
        };
        match why {
            None => Ok(()),
            Some(why) => Err(format!(
                "weight_likelihood_given_y needs a network whose first layer makes y from the noise \
                 given x alone (model.permutation = \"blocks\", split_at = the size of x): {why}"
            )),
        }
    }
}
