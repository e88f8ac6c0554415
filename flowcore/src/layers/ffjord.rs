//! A continuous normalizing flow (FFJORD, Grathwohl et al. 2019; Chen et al. 2018): the solution
//! of dz/dt = f(t, z, c) over t in [0, 1]. `forward` integrates from the data at t = 0 to the
//! latent at t = 1, `inverse` back, and the log-det is the integral of the trace of df/dz,
//! carried as one more column of the state so the solver controls its error too.
//!
//! The trace is exact (one tangent per feature) or, while training with `trace =
//! "hutchinson"`, Hutchinson's estimate v^T (df/dz) v with one noise vector per sample drawn
//! once per solve; densities outside training always use the exact trace.
//!
//! RNODE's regularisers (Finlay et al. 2020), each with a weight (0 by default): the kinetic
//! energy, the integral of |f|^2, and the Jacobian norm, the integral of |df/dz|_F^2 (exact
//! from the tangents, or |(df/dz) v|^2 with Hutchinson's noise). They are integrated beside z
//! in the forward solve while an objective gathers penalties (crate::penalty), and they favour
//! straight, smooth trajectories that the adaptive solver crosses in fewer steps.

use burn::prelude::*;
use burn::tensor::Distribution;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::ImageShape;
use crate::layer::{BuildLayer, positive};
use crate::nets::{Dynamics, OdeActivation, OdeConvNet, OdeNet, OdeNetSpec, TimeInput};
use crate::ode::adjoint::{self, AugmentedDynamics};
use crate::ode::{OdeGradient, OdeSolver, SolveStats, StepLimit, record_failure};
use crate::penalty;
use crate::tensor_util::constant;
use crate::{Bijector, DataInit, Result};

/// The seed of the probes outside training.
const PROBE_SEED: u64 = 0x0ffe_1a7d;

/// How the trace of df/dz is computed while training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceEstimator {
    /// One tangent per feature: exact, `dim` times the cost of f.
    #[default]
    Exact,
    /// Hutchinson's estimator with one noise vector per sample.
    Hutchinson,
}

/// The distribution of Hutchinson's noise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeNoise {
    /// +-1 with equal probability (the lower-variance choice).
    #[default]
    Rademacher,
    /// Standard normal.
    Gaussian,
}

fn sixty_four_thrice() -> Vec<usize> {
    vec![64, 64, 64]
}

/// A continuous flow block of `dim` features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FfjordSpec {
    /// Features.
    pub dim: usize,
    /// Hidden widths of the dynamics network (FFJORD's toy default, 64-64-64).
    #[serde(default = "sixty_four_thrice")]
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: OdeActivation,
    /// How the network sees the time.
    #[serde(default)]
    pub time: TimeInput,
    /// The solver and its tolerances.
    #[serde(default)]
    pub solver: OdeSolver,
    /// The trace while training.
    #[serde(default)]
    pub trace: TraceEstimator,
    /// The noise of Hutchinson's estimator.
    #[serde(default)]
    pub noise: ProbeNoise,
    /// Size of the optional condition (0: none).
    #[serde(default)]
    pub cond_dim: usize,
    /// RNODE's weight of the kinetic energy, the integral of |f|^2 (per sample, over [0, 1]).
    #[serde(default)]
    pub kinetic_weight: f64,
    /// RNODE's weight of the Jacobian norm, the integral of |df/dz|_F^2.
    #[serde(default)]
    pub jacobian_weight: f64,
    /// Images of this shape (`dim` values, NCHW): the dynamics are 3x3 convolutions and
    /// `hidden` counts their channels. None: a dense network.
    #[serde(default)]
    pub image: Option<ImageShape>,
    /// Hutchinson probes per sample for densities outside training; 0: the exact trace, whose
    /// cost grows with `dim` (images need probes).
    #[serde(default)]
    pub eval_probes: usize,
    /// How training gets the solve's gradients: through the steps, or by the adjoint method.
    #[serde(default)]
    pub gradient: OdeGradient,
}

impl FfjordSpec {
    /// A block with the defaults for `dim` features.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            hidden: sixty_four_thrice(),
            activation: OdeActivation::default(),
            time: TimeInput::default(),
            solver: OdeSolver::default(),
            trace: TraceEstimator::default(),
            noise: ProbeNoise::default(),
            cond_dim: 0,
            kinetic_weight: 0.0,
            jacobian_weight: 0.0,
            image: None,
            eval_probes: 0,
            gradient: OdeGradient::default(),
        }
    }
}

impl BuildLayer for FfjordSpec {
    type Layer = Ffjord;

    fn build(&self, device: &Device) -> Result<Ffjord> {
        positive("ffjord dim", self.dim)?;
        self.solver
            .check()
            .map_err(|e| crate::FlowError::config(format!("ffjord: {e}")))?;
        for (key, w) in [
            ("kinetic_weight", self.kinetic_weight),
            ("jacobian_weight", self.jacobian_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(crate::FlowError::config(format!(
                    "ffjord: {key} = {w}: expected a finite weight >= 0"
                )));
            }
        }
        let spec = OdeNetSpec {
            hidden: self.hidden.clone(),
            activation: self.activation,
            time: self.time,
        };
        let (net, conv) = match self.image {
            None => (Some(spec.build(self.dim, self.cond_dim, device)?), None),
            Some(shape) if shape.numel() == self.dim => {
                (None, Some(spec.build_conv(shape, self.cond_dim, device)?))
            }
            Some(shape) => {
                return Err(crate::FlowError::config(format!(
                    "ffjord: images of {shape} have {} values, not dim = {}",
                    shape.numel(),
                    self.dim
                )));
            }
        };
        Ok(Ffjord {
            net,
            conv,
            eval_probes: self.eval_probes,
            solver: self.solver,
            trace: self.trace,
            noise: self.noise,
            dim: self.dim,
            kinetic_weight: self.kinetic_weight,
            jacobian_weight: self.jacobian_weight,
            gradient: self.gradient,
        })
    }

    fn cond_dim(&self) -> usize {
        self.cond_dim
    }
}

/// dz/dt = f(t, z, c) over [0, 1], with the log-det integrated beside z.
#[derive(Module, Debug)]
pub struct Ffjord {
    // Two options rather than an enum: an enum's variant name would enter the parameter
    // paths and change those of the dense checkpoints written before images.
    net: Option<OdeNet>,
    conv: Option<OdeConvNet>,
    #[module(skip)]
    eval_probes: usize,
    #[module(skip)]
    solver: OdeSolver,
    #[module(skip)]
    trace: TraceEstimator,
    #[module(skip)]
    noise: ProbeNoise,
    #[module(skip)]
    dim: usize,
    #[module(skip)]
    kinetic_weight: f64,
    #[module(skip)]
    jacobian_weight: f64,
    #[module(skip)]
    gradient: OdeGradient,
}

impl Ffjord {
    /// The condition as the dynamics see it, computed once per solve.
    fn embed(&self, cond: Option<&Tensor<2>>) -> Option<Tensor<2>> {
        match &self.net {
            Some(net) => net.embed(cond),
            None => cond.cloned(),
        }
    }

    /// The dynamics network.
    fn dynamics(&self) -> &dyn Dynamics {
        match (&self.net, &self.conv) {
            (Some(net), _) => net,
            (None, Some(conv)) => conv,
            (None, None) => unreachable!("built with one network"),
        }
    }

    /// `(f(t, z, c), J v)` for `k` tangent directions per sample, `v: [k * batch, dim]`
    /// (direction-major); `cond` as the caller gives it (embedded here).
    pub fn eval(
        &self,
        t: f64,
        z: Tensor<2>,
        cond: Option<&Tensor<2>>,
        v: Tensor<2>,
    ) -> (Tensor<2>, Tensor<2>) {
        let cond = self.embed(cond);
        self.dynamics().eval(t, z, cond.as_ref(), v)
    }

    /// The tangent directions of one solve, `[k * batch, dim]`: the unit vectors (exact), or
    /// Hutchinson's noise vectors, one per sample while training with Hutchinson's estimator
    /// and `eval_probes` per sample outside training when set.
    fn probes(&self, like: &Tensor<2>) -> Tensor<2> {
        let [batch, dim] = like.dims();
        let device = like.device();
        let k = match (device.is_autodiff(), self.trace) {
            (true, TraceEstimator::Hutchinson) => 1,
            (true, TraceEstimator::Exact) => 0,
            (false, _) => self.eval_probes,
        };
        if k > 0 && device.is_autodiff() {
            let shape = [batch, dim];
            let noise = match self.noise {
                ProbeNoise::Rademacher => {
                    Tensor::<2>::random(shape, Distribution::Bernoulli(0.5), &device)
                        .mul_scalar(2.0)
                        .sub_scalar(1.0)
                }
                ProbeNoise::Gaussian => {
                    Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device)
                }
            };
            return noise.cast(like.dtype()).detach();
        }
        if k > 0 {
            // Densities outside training are functions of the data: the same probes on every
            // call, so validation losses compare across epochs and `score` repeats a run's
            // scores. The mean over probes is a sum of the noise scaled by 1/sqrt(k).
            let mut rng = ChaCha8Rng::seed_from_u64(PROBE_SEED);
            let scale = 1.0 / (k as f32).sqrt();
            let values: Vec<f32> = (0..k * batch * dim)
                .map(|_| match self.noise {
                    ProbeNoise::Rademacher => {
                        if rng.random::<bool>() {
                            scale
                        } else {
                            -scale
                        }
                    }
                    ProbeNoise::Gaussian => rng.sample::<f32, _>(StandardNormal) * scale,
                })
                .collect();
            return constant(values, [k * batch, dim], like);
        }
        let mut eye = vec![0.0f32; dim * batch * dim];
        for k in 0..dim {
            for b in 0..batch {
                eye[(k * batch + b) * dim + k] = 1.0;
            }
        }
        constant(eye, [dim * batch, dim], like)
    }

    fn step_limit_message(&self, limit: StepLimit, t0: f64, t1: f64) -> String {
        format!(
            "ffjord layer ({} features): the solver stopped at t = {:.6} of [{t0}, {t1}] after {} \
             step attempts (last step {:.3e}); raise solver.max_steps or the tolerances, or \
             regularise the dynamics",
            self.dim, limit.time, limit.attempts, limit.step
        )
    }

    /// Integrate `[x, 0]` from `t0` to `t1`: the end point and the integral of the trace.
    /// Going forward while penalties are gathered, two more columns integrate RNODE's |f|^2
    /// and |df/dz|_F^2, and their weighted batch means go to [`penalty::add`].
    fn solve(
        &self,
        x: Tensor<2>,
        cond: Option<&Tensor<2>>,
        t0: f64,
        t1: f64,
    ) -> (Tensor<2>, Tensor<1>) {
        let [batch, dim] = x.dims();
        let cond = self.embed(cond);
        let v = self.probes(&x);
        let regularise = t0 < t1
            && (self.kinetic_weight > 0.0 || self.jacobian_weight > 0.0)
            && penalty::is_collecting();
        let extra = if regularise { 3 } else { 1 };
        let adjoint = (self.gradient == OdeGradient::Adjoint && x.device().is_autodiff())
            .then(|| self.solve_adjoint(&x, cond.as_ref(), &v, regularise, (t0, t1)))
            .flatten();
        let solved = adjoint.unwrap_or_else(|| {
            let dynamics = |t: f64, y: Tensor<2>| {
                let z = y.narrow(1, 0, dim);
                augmented(self.dynamics(), t, z, cond.as_ref(), &v, regularise)
            };
            let zeros = x
                .clone()
                .narrow(1, 0, 1)
                .mul_scalar(0.0)
                .repeat_dim(1, extra);
            let y0 = Tensor::cat(vec![x.clone(), zeros], 1);
            self.solver.solve(dynamics, y0, t0, t1)
        });
        let y1 = match solved {
            Ok((y1, stats)) => {
                tracing::trace!(nfe = stats.nfe, steps = stats.steps, "ffjord solve");
                y1
            }
            Err(limit) => {
                record_failure(self.step_limit_message(limit, t0, t1));
                let nan = x.clone().mul_scalar(f64::NAN);
                return (nan.clone(), nan.sum_dim(1).reshape([batch]));
            }
        };
        if regularise {
            let mean = |col: usize| y1.clone().narrow(1, col, 1).mean().reshape([1]);
            penalty::add(
                mean(dim + 1).mul_scalar(self.kinetic_weight)
                    + mean(dim + 2).mul_scalar(self.jacobian_weight),
            );
        }
        (
            y1.clone().narrow(1, 0, dim),
            y1.narrow(1, dim, 1).reshape([batch]),
        )
    }

    /// [`Self::solve`]'s integration with gradients by the adjoint method; None where the
    /// backend has no adjoint operation (the caller back-propagates through the steps).
    fn solve_adjoint(
        &self,
        x: &Tensor<2>,
        cond: Option<&Tensor<2>>,
        v: &Tensor<2>,
        regularise: bool,
        (t0, t1): (f64, f64),
    ) -> Option<std::result::Result<(Tensor<2>, SolveStats), StepLimit>> {
        // The system keeps the networks' layout with untracked values: the backward pass reads
        // the parameters from the flat vector.
        let (theta, net, conv) = match (&self.net, &self.conv) {
            (Some(net), _) => {
                let theta = adjoint::flatten(net);
                let layout = adjoint::unflatten(net.clone(), &theta.clone().inner());
                (theta, Some(layout), None)
            }
            (None, Some(conv)) => {
                let theta = adjoint::flatten(conv);
                let layout = adjoint::unflatten(conv.clone(), &theta.clone().inner());
                (theta, None, Some(layout))
            }
            (None, None) => unreachable!("built with one network"),
        };
        let system = AdjointSystem {
            net,
            conv,
            probes: v.clone().inner(),
            regularise,
        };
        let extra = if regularise { 3 } else { 1 };
        let out = adjoint::solve(
            system,
            self.solver,
            theta,
            x.clone(),
            cond.cloned(),
            extra,
            t0,
            t1,
        );
        if out.is_none() {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                tracing::warn!(
                    "ffjord: gradient = \"adjoint\" has no operation on this backend; \
                     back-propagating through the solver's steps"
                )
            });
        }
        out
    }
}

/// One evaluation of the solve's derivative: `[f | trace]`, and with `regularise` RNODE's
/// `|f|^2` and `|Jv|^2` per sample; `v` holds `k` tangent directions per sample.
fn augmented(
    dynamics: &dyn Dynamics,
    t: f64,
    z: Tensor<2>,
    cond: Option<&Tensor<2>>,
    v: &Tensor<2>,
    regularise: bool,
) -> Tensor<2> {
    let [batch, dim] = z.dims();
    let k = v.dims()[0] / batch;
    let per_sample = |t: Tensor<2>| {
        t.reshape([k, batch, dim])
            .sum_dim(2)
            .sum_dim(0)
            .reshape([batch, 1])
    };
    let (dz, jv) = dynamics.eval(t, z, cond, v.clone());
    let trace = per_sample(jv.clone() * v.clone());
    if regularise {
        let kinetic = dz.clone().powi_scalar(2).sum_dim(1);
        let jacobian = per_sample(jv.powi_scalar(2));
        Tensor::cat(vec![dz, trace, kinetic, jacobian], 1)
    } else {
        Tensor::cat(vec![dz, trace], 1)
    }
}

/// The dynamics as the adjoint solve sees them: rebuilt from a flat parameter vector.
#[derive(Clone, Debug)]
struct AdjointSystem {
    net: Option<OdeNet>,
    conv: Option<OdeConvNet>,
    probes: Tensor<2>,
    regularise: bool,
}

impl AugmentedDynamics for AdjointSystem {
    fn derivative(
        &self,
        theta: &Tensor<1>,
        t: f64,
        z: Tensor<2>,
        cond: Option<&Tensor<2>>,
    ) -> Tensor<2> {
        let (v, r) = (&self.probes, self.regularise);
        match (&self.net, &self.conv) {
            (Some(net), _) => augmented(&adjoint::unflatten(net.clone(), theta), t, z, cond, v, r),
            (None, Some(conv)) => {
                augmented(&adjoint::unflatten(conv.clone(), theta), t, z, cond, v, r)
            }
            (None, None) => unreachable!("built with one network"),
        }
    }
}

impl Bijector for Ffjord {
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.solve(x, cond, 0.0, 1.0)
    }

    fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.solve(z, cond, 1.0, 0.0)
    }

    fn inverse_without_logdet(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        let cond = self.embed(cond);
        let dynamics = |t: f64, z: Tensor<2>| self.dynamics().value(t, z, cond.as_ref());
        match self.solver.solve(dynamics, z.clone(), 1.0, 0.0) {
            Ok((x, stats)) => {
                tracing::trace!(
                    nfe = stats.nfe,
                    steps = stats.steps,
                    "ffjord solve, no trace"
                );
                x
            }
            Err(limit) => {
                record_failure(self.step_limit_message(limit, 1.0, 0.0));
                z.mul_scalar(f64::NAN)
            }
        }
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

impl DataInit for Ffjord {}
