//! A normalizing flow: a base distribution (standard normal, or one Gaussian per class) and a
//! bijector.

use std::sync::Mutex;

use burn::module::{ModuleVisitor, Param, ParamGroup, ParamId};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::arch::ArchitectureConfig;
use crate::base::{
    BaseConfig, class_log_likelihoods, class_log_posterior, log_sum_exp, standard_normal_log_prob,
};
use crate::layer::{Layer, build_chain};
use crate::{Bijector, Chain, DataInit, FlowError, Result};

/// Held while a flow's parameters are drawn from burn's process-wide generator.
static BUILD: Mutex<()> = Mutex::new(());

/// `p(x) = p_base(f(x)) |det df/dx|` with `f` = [`Flow::encode`] (data to latent) and the base
/// `N(0, I)` or, for a class-conditional base, the mixture of the class Gaussians.
#[derive(Module, Debug)]
pub struct Flow {
    bijector: Chain<Layer>,
    /// The means of a class-conditional base, `[K, dim]`.
    class_means: Option<Param<Tensor<2>>>,
    #[module(skip)]
    config: ArchitectureConfig,
    #[module(skip)]
    base: BaseConfig,
}

impl Flow {
    /// Build the flow an architecture describes, on a standard-normal base; every coupling
    /// starts as the identity.
    pub fn new(config: ArchitectureConfig, device: &Device) -> Result<Self> {
        Self::with_base(config, BaseConfig::default(), None, device)
    }

    /// [`Flow::new`] with the initial parameters drawn from `seed`.
    pub fn seeded(config: ArchitectureConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::with_base(config, BaseConfig::default(), Some(seed), device)
    }

    /// A flow on the base `base`, its initial parameters drawn from `seed` when given. burn's
    /// random generator is one per process, so every build, seeded or not, holds one lock: two
    /// threads building flows at once (tests, a bench, a checkpoint being loaded) cannot draw
    /// from each other's seed.
    pub fn with_base(
        config: ArchitectureConfig,
        base: BaseConfig,
        seed: Option<u64>,
        device: &Device,
    ) -> Result<Self> {
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seed) = seed {
            device.seed(seed);
        }
        let specs = config.to_specs()?;
        let bijector = build_chain(&specs, device).map_err(|e| match e {
            FlowError::Config(msg) => FlowError::config(format!("{}: {msg}", config.kind())),
            other => other,
        })?;
        let class_means = base.build(bijector.dim(), device)?;
        let flow = Self {
            bijector,
            class_means,
            config,
            base,
        };
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

    /// The base distribution.
    pub fn base(&self) -> &BaseConfig {
        &self.base
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

    /// `log p_base(z)` per sample.
    pub fn base_log_prob(&self, z: Tensor<2>) -> Tensor<1> {
        match self.class_log_likelihoods(z.clone()) {
            Some(ll) => {
                let k = ll.dims()[1] as f64;
                log_sum_exp(ll).sub_scalar(k.ln())
            }
            None => standard_normal_log_prob(z),
        }
    }

    /// `log N(z; mu_k, I)` per sample and class, `[n, K]`, for a class-conditional base.
    pub fn class_log_likelihoods(&self, z: Tensor<2>) -> Option<Tensor<2>> {
        let means = self.class_means.as_ref()?.val().cast(z.dtype());
        Some(class_log_likelihoods(z, means))
    }

    /// `log p(y = k | x)` per sample and class, `[n, K]`, for a class-conditional base (equal
    /// class priors).
    pub fn class_log_posterior(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Option<Tensor<2>> {
        let z = self.encode(x, cond);
        self.class_log_likelihoods(z).map(class_log_posterior)
    }

    /// The class means, `[K, dim]`, of a class-conditional base.
    pub fn class_means(&self) -> Option<Tensor<2>> {
        self.class_means.as_ref().map(Param::val)
    }

    /// `log p(x)` per sample, in nats.
    pub fn log_prob(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<1> {
        let (z, logdet) = self.bijector.forward(x, cond);
        self.base_log_prob(z) + logdet
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

    /// Latent to data, without computing the log-det where that costs extra.
    pub fn decode(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        self.bijector.inverse_without_logdet(z, cond)
    }

    /// `n` samples with the base scaled by `temperature` (1 samples the model; below 1 gives
    /// the smoother, more typical samples of Glow's figures), drawn from `seed` alone. A
    /// class-conditional base is sampled class by class in turn.
    pub fn sample(
        &self,
        n: usize,
        temperature: f64,
        seed: u64,
        cond: Option<&Tensor<2>>,
        device: &Device,
    ) -> Tensor<2> {
        let mut z = standard_normal(n, self.dim(), seed, device).mul_scalar(temperature);
        if let Some(means) = self.class_means() {
            let k = means.dims()[0];
            let classes: Vec<usize> = (0..n).map(|i| i % k).collect();
            let idx = crate::tensor_util::indices(&classes, &z);
            z = z + means.select(0, idx);
        }
        self.decode(z, cond)
    }

    /// `n` samples of class `class` of a class-conditional base: `decode(mu_k + temperature
    /// eps)`. `None` without such a base or for a class it does not have.
    pub fn sample_class(
        &self,
        class: usize,
        n: usize,
        temperature: f64,
        seed: u64,
        device: &Device,
    ) -> Option<Tensor<2>> {
        let means = self.class_means()?;
        if class >= means.dims()[0] {
            return None;
        }
        let mu = means.narrow(0, class, 1).expand([n, self.dim()]);
        let z = standard_normal(n, self.dim(), seed, device).mul_scalar(temperature) + mu;
        Some(self.decode(z, None))
    }

    /// Data-dependent initialisation (ActNorm) from a first batch of real data. Layers already
    /// initialised, for example loaded from a checkpoint, are left as they are.
    ///
    /// The pass runs untracked: its autodiff graph, with every activation the layers keep for
    /// a backward pass that never comes, lived until the first training step's backward pass,
    /// beside that step's own graph (Glow 128x128: a third of the training's resident peak).
    pub fn initialize(self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Self {
        if !x.device().is_autodiff() {
            let (bijector, _) = self.bijector.initialize(x, cond);
            return Self { bijector, ..self };
        }
        struct Tracked(Vec<ParamId>);
        impl ModuleVisitor for Tracked {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                if p.is_require_grad() {
                    self.0.push(p.id);
                }
            }
        }
        let mut tracked = Tracked(Vec::new());
        self.visit(&mut tracked);
        let flow = self.no_grad();
        let (bijector, _) = flow.bijector.initialize(x.detach(), cond);
        Self { bijector, ..flow }.set_require_grad_group(ParamGroup::from_ids(tracked.0), true)
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
