//! A normalizing flow: a standard-normal base distribution and a bijector.

use std::sync::Mutex;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::arch::ArchitectureConfig;
use crate::layer::{Layer, build_chain};
use crate::{Bijector, Chain, FlowError, Result};

/// Held while a flow's parameters are drawn from burn's process-wide generator.
static BUILD: Mutex<()> = Mutex::new(());

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
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        Self::build(config, device)
    }

    /// [`Flow::new`] with the initial parameters drawn from `seed`. burn's random generator is
    /// one per process, so every build, seeded or not, holds one lock: two threads building
    /// flows at once (tests, a bench, a checkpoint being loaded) cannot draw from each other's
    /// seed.
    pub fn seeded(config: ArchitectureConfig, seed: u64, device: &Device) -> Result<Self> {
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        Self::build(config, device)
    }

    fn build(config: ArchitectureConfig, device: &Device) -> Result<Self> {
        let specs = config.to_specs()?;
        let bijector = build_chain(&specs, device).map_err(|e| match e {
            FlowError::Config(msg) => FlowError::config(format!("{}: {msg}", config.kind())),
            other => other,
        })?;
        let flow = Self { bijector, config };
        // burn draws a parameter's initial value lazily, on first access; draw them all now,
        // while the lock is held, or they would come from whatever the generator holds then.
        struct Draw;
        impl ModuleVisitor for Draw {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                let _ = p.val();
            }
        }
        flow.visit(&mut Draw);
        Ok(flow)
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

    /// Latent to data and the log-det of that map, in one pass.
    pub fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.bijector.inverse(z, cond)
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
    /// the smoother, more typical samples of Glow's figures), drawn from `seed` alone.
    pub fn sample(
        &self,
        n: usize,
        temperature: f64,
        seed: u64,
        cond: Option<&Tensor<2>>,
        device: &Device,
    ) -> Tensor<2> {
        let z = standard_normal(n, self.dim(), seed, device).mul_scalar(temperature);
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

/// `[n, dim]` standard-normal values drawn on the host from `seed` alone, so a draw never
/// depends on burn's process-wide generator or on what other threads drew from it.
pub fn standard_normal(n: usize, dim: usize, seed: u64, device: &Device) -> Tensor<2> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..n * dim)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::<2>::from_data(TensorData::new(values, [n, dim]), device)
}
