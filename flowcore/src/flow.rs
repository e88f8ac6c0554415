//! A normalizing flow: a standard-normal base distribution and a bijector.

use burn::prelude::*;
use burn::tensor::Distribution;

use crate::arch::ArchitectureConfig;
use crate::layer::{Layer, build_chain};
use crate::{Bijector, Chain, FlowError, Result};

/// `p(x) = N(f(x); 0, I) |det df/dx|` with `f` = [`Flow::encode`] (data to latent).
#[derive(Module, Debug)]
pub struct Flow {
    bijector: Chain<Layer>,
    #[module(skip)]
    config: ArchitectureConfig,
}

impl Flow {
    /// Build the flow an architecture describes; every coupling starts as the identity.
    pub fn new(config: ArchitectureConfig, device: &Device) -> Result<Self> {
        let specs = config.to_specs()?;
        let bijector = build_chain(&specs, device).map_err(|e| match e {
            FlowError::Config(msg) => FlowError::config(format!("{}: {msg}", config.kind())),
            other => other,
        })?;
        Ok(Self { bijector, config })
    }

    /// The architecture it was built from.
    pub fn config(&self) -> &ArchitectureConfig {
        &self.config
    }

    /// The bijector (data to latent).
    pub fn bijector(&self) -> &Chain<Layer> {
        &self.bijector
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.bijector.dim()
    }

    /// `log N(z; 0, I)` per sample.
    pub fn base_log_prob(z: Tensor<2>) -> Tensor<1> {
        let d = z.dims()[1] as f64;
        let half_norm = z.square().sum_dim(1).squeeze_dim::<1>(1).mul_scalar(0.5);
        half_norm
            .neg()
            .sub_scalar(0.5 * d * (2.0 * std::f64::consts::PI).ln())
    }

    /// `log p(x)` per sample, in nats.
    pub fn log_prob(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<1> {
        let (z, logdet) = self.bijector.forward(x, cond);
        Self::base_log_prob(z) + logdet
    }

    /// Data to latent and the log-det, in one pass.
    pub fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.bijector.forward(x, cond)
    }

    /// Data to latent.
    pub fn encode(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        self.bijector.forward(x, cond).0
    }

    /// Latent to data.
    pub fn decode(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        self.bijector.inverse(z, cond).0
    }

    /// `n` samples with the base scaled by `temperature` (1 samples the model; below 1 gives
    /// the smoother, more typical samples of Glow's figures).
    pub fn sample(
        &self,
        n: usize,
        temperature: f64,
        cond: Option<&Tensor<2>>,
        device: &Device,
    ) -> Tensor<2> {
        let z = Tensor::<2>::random(
            [n, self.dim()],
            Distribution::Normal(0.0, temperature),
            device,
        );
        self.decode(z, cond)
    }

    /// Data-dependent initialisation (ActNorm) from a first batch of real data. Layers already
    /// initialised, for example loaded from a checkpoint, are left as they are.
    pub fn initialize(self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Self {
        let (bijector, _) = self.bijector.initialize(x, cond);
        Self { bijector, ..self }
    }

    /// Whether each data-initialised layer has been initialised, in traversal order.
    pub fn init_flags(&self) -> Vec<bool> {
        let mut flags = Vec::new();
        self.bijector.init_flags(&mut flags);
        flags
    }

    pub(crate) fn set_init_flags(&mut self, flags: &[bool]) {
        self.bijector.set_init_flags(&mut flags.iter().copied());
    }
}
