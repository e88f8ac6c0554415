//! The shared bijector harness, and the module helpers it needs.
//!
//! Every layer and architecture passes [`check_architecture`]: the round trip `x -> z -> x`,
//! the log-det against the log|det| of a central-difference Jacobian computed in f64, forward
//! and inverse log-dets that cancel, a gradient on every parameter, and save then load giving
//! identical outputs with data-initialised layers left as they were. A new layer adds a case to
//! `flowcore/tests/harness/`.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{DType, TensorCreationOptions, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::checkpoint::{load_flow, save_flow};
use crate::{ArchitectureConfig, Bijector, Flow};

/// Cast every float parameter of a module to `dtype` (e.g. f64 for numerical checks).
pub fn cast_params<M: Module>(module: M, dtype: DType) -> M {
    struct Cast(DType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            p.map(|t| t.cast(dtype))
        }
    }
    module.map(&mut Cast(dtype))
}

/// Add seeded Gaussian noise of standard deviation `std` to every float parameter, so that a
/// check runs on parameters unlike a fresh initialisation (zero last layers give identities).
pub fn perturb_params<M: Module>(module: M, std: f64, seed: u64) -> M {
    struct Perturb {
        rng: ChaCha8Rng,
        std: f64,
    }
    impl ModuleMapper for Perturb {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let rng = &mut self.rng;
            let std = self.std;
            p.map(|t| {
                let shape = t.dims();
                let n: usize = shape.iter().product();
                let noise: Vec<f32> = (0..n)
                    .map(|_| (std * Distribution::<f64>::sample(&StandardNormal, rng)) as f32)
                    .collect();
                let noise = Tensor::<D>::from_data(TensorData::new(noise, shape), &t.device())
                    .cast(t.dtype());
                let grad = t.is_require_grad();
                (t.detach() + noise).detach().set_require_grad(grad)
            })
        }
    }
    module.map(&mut Perturb {
        rng: ChaCha8Rng::seed_from_u64(seed),
        std,
    })
}

/// The module path of every float parameter, in traversal order.
pub fn param_paths<M: Module>(module: &M) -> Vec<String> {
    #[derive(Default)]
    struct Paths {
        path: Vec<String>,
        out: Vec<String>,
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _c: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _n: &str, _c: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, _p: &Param<Tensor<D>>) {
            self.out.push(self.path.join("."));
        }
    }
    let mut v = Paths::default();
    module.visit(&mut v);
    v.out
}

/// Every float parameter's values, flat, in traversal order (with [`param_paths`], to compare
/// two models parameter by parameter).
pub fn param_values<M: Module>(module: &M) -> Vec<Vec<f32>> {
    #[derive(Default)]
    struct Values(Vec<Vec<f32>>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let data = p.val().into_data().convert::<f32>();
            self.0
                .push(data.as_slice::<f32>().expect("f32 values").to_vec());
        }
    }
    let mut v = Values::default();
    module.visit(&mut v);
    v.0
}

/// For each trained float parameter: its path and the largest absolute value of its gradient,
/// `None` when it received no gradient.
pub fn gradient_report<M: Module>(
    module: &M,
    grads: &burn::tensor::Gradients,
) -> Vec<(String, Option<f64>)> {
    struct Report<'a> {
        grads: &'a burn::tensor::Gradients,
        path: Vec<String>,
        out: Vec<(String, Option<f64>)>,
    }
    impl ModuleVisitor for Report<'_> {
        fn enter_module(&mut self, name: &str, _c: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _n: &str, _c: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            // Buffers (batch normalisation's running statistics) are not trained.
            if !p.val().is_require_grad() {
                return;
            }
            let g = p
                .val()
                .grad(self.grads)
                .map(|g| g.abs().max().into_scalar::<f64>());
            self.out.push((self.path.join("."), g));
        }
    }
    let mut r = Report {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut r);
    r.out
}

/// `log |det A|` of a row-major `n x n` matrix by LU with partial pivoting, in f64.
pub fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut total = 0.0;
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .expect("non-empty");
        if a[pivot * n + col] == 0.0 {
            return f64::NEG_INFINITY;
        }
        if pivot != col {
            for k in 0..n {
                a.swap(col * n + k, pivot * n + k);
            }
        }
        let p = a[col * n + col];
        total += p.abs().ln();
        for row in col + 1..n {
            let f = a[row * n + col] / p;
            for k in col..n {
                a[row * n + k] -= f * a[col * n + k];
            }
        }
    }
    total
}

/// Tolerances of the harness, in f32 (those of zuko and FlowJAX), and how far parameters are
/// moved from their initial values.
#[derive(Clone, Copy, Debug)]
pub struct HarnessSettings {
    /// Max |inverse(forward(x)) - x|.
    pub round_trip: f64,
    /// Max |analytic log-det - log|det J|| with `J` numerical in f64.
    pub jacobian: f64,
    /// Max |forward log-det + inverse log-det|, relative to max(1, |log-det|).
    pub cancel: f64,
    /// Standard deviation of the Gaussian noise added to every parameter. Deep image flows
    /// need less: with large random weights their sigmoid scales saturate and the inverse
    /// becomes ill-conditioned, which tests the random weights rather than the code.
    pub perturbation: f64,
    /// Seed of the initial parameters, the perturbation and the inputs.
    pub seed: u64,
}

impl Default for HarnessSettings {
    fn default() -> Self {
        Self {
            round_trip: 1e-4,
            jacobian: 1e-3,
            cancel: 1e-4,
            perturbation: 0.2,
            seed: std::env::var("FLOWCORE_HARNESS_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// What inputs a layer takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inputs {
    /// Standard normal values.
    Normal,
    /// Uniform values in `(0.05, 0.95)`, for the logit preprocessing.
    UnitInterval,
    /// Normal values of standard deviation 4: many beyond a spline's bound.
    Wide,
}

/// What the harness measured, for the record.
#[derive(Clone, Debug)]
pub struct HarnessReport {
    /// Max round-trip error.
    pub round_trip: f64,
    /// Max Jacobian log-det error.
    pub jacobian: f64,
    /// Max log-det cancellation error.
    pub cancel: f64,
    /// Parameters checked for gradients.
    pub params: usize,
}

fn sample_inputs(n: usize, dim: usize, inputs: Inputs, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * dim)
        .map(|_| match inputs {
            Inputs::Normal => StandardNormal.sample(&mut rng),
            Inputs::Wide => 4.0 * Distribution::<f32>::sample(&StandardNormal, &mut rng),
            Inputs::UnitInterval => {
                let u: f32 = rng.random();
                0.05 + 0.9 * u
            }
        })
        .collect()
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
    (a - b).abs().max().into_scalar::<f64>()
}

/// Run every check on a flow built from `config`, with data-initialised layers initialised
/// from a batch and every parameter perturbed. Panics with the case name and the measured
/// error when a check fails. `scratch` is a directory for the checkpoint.
pub fn check_architecture(
    name: &str,
    config: ArchitectureConfig,
    inputs: Inputs,
    settings: HarnessSettings,
    scratch: &Path,
) -> HarnessReport {
    let device = Device::flex().autodiff();
    let flow = Flow::seeded(config, settings.seed, &device)
        .unwrap_or_else(|e| panic!("{name}: build failed: {e}"));
    let dim = flow.dim();
    let batch = 8;
    let make = |stream: u64| {
        Tensor::<2>::from_data(
            TensorData::new(
                sample_inputs(batch, dim, inputs, settings.seed.wrapping_mul(31) ^ stream),
                [batch, dim],
            ),
            &device,
        )
    };
    let cond_dim = flow.config().cond_dim();
    let cond = (cond_dim > 0).then(|| {
        Tensor::<2>::from_data(
            TensorData::new(
                sample_inputs(batch, cond_dim, Inputs::Normal, 9),
                [batch, cond_dim],
            ),
            &device,
        )
    });
    let cond = cond.as_ref();
    let x = make(1);
    let flow = flow.initialize(make(2), cond);
    assert!(
        flow.init_flags().iter().all(|&f| f),
        "{name}: initialize left a layer uninitialised"
    );
    let flow = perturb_params(flow, settings.perturbation, settings.seed ^ 3);

    // A batch normalisation normalises with the batch while training and with its running
    // statistics in evaluation. The checks run in evaluation (as densities are scored and
    // samples drawn), after a pass in training, which moves the running statistics from their
    // start; the round trip is checked in training too.
    let (z_train, _) = flow.forward(make(5), cond);
    let (back_train, _) = flow.bijector().inverse(z_train, cond);
    let train_trip = max_abs_diff(back_train, make(5));
    assert!(
        train_trip <= settings.round_trip,
        "{name}: in training, inverse(forward(x)) differs from x by {train_trip:e} > {:e}",
        settings.round_trip
    );
    let eval = flow.valid();
    let x_eval = x.clone().inner();
    let cond_eval = cond.map(|c| c.clone().inner());
    let cond_e = cond_eval.as_ref();

    // Round trip and cancellation.
    let (z, ld_fwd) = eval.forward(x_eval.clone(), cond_e);
    let (x_back, ld_inv) = eval.bijector().inverse(z.clone(), cond_e);
    let round_trip = max_abs_diff(x_back, x_eval.clone());
    assert!(
        round_trip <= settings.round_trip,
        "{name}: inverse(forward(x)) differs from x by {round_trip:e} > {:e}",
        settings.round_trip
    );
    // Sampling's inverse, without the log-det, is the same map (a continuous flow solves it
    // without the trace column, so it meets the round trip's tolerance rather than equality).
    let decoded = eval.bijector().inverse_without_logdet(z.clone(), cond_e);
    let decode_trip = max_abs_diff(decoded, x_eval.clone());
    assert!(
        decode_trip <= settings.round_trip,
        "{name}: inverse_without_logdet(forward(x)) differs from x by {decode_trip:e} > {:e}",
        settings.round_trip
    );
    let scale = ld_fwd.clone().abs().max().into_scalar::<f64>().max(1.0);
    let cancel = (ld_fwd.clone() + ld_inv).abs().max().into_scalar::<f64>() / scale;
    assert!(
        cancel <= settings.cancel,
        "{name}: forward and inverse log-dets do not cancel: {cancel:e} > {:e}",
        settings.cancel
    );

    // Log-det against a numerical Jacobian in f64, on two samples.
    // A fresh copy: clones of a module share its batch normalisation's running statistics.
    let flow64 = cast_params(flow.valid(), DType::F64);
    let x_host = x
        .to_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64 data");
    let ld_host = ld_fwd
        .to_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64 data");
    let h = 1e-5;
    let mut jacobian = 0.0f64;
    for sample in 0..2 {
        let x0 = &x_host[sample * dim..(sample + 1) * dim];
        let mut rows = Vec::with_capacity(2 * dim * dim);
        for j in 0..dim {
            for sign in [1.0, -1.0] {
                let mut r = x0.to_vec();
                r[j] += sign * h;
                rows.extend(r);
            }
        }
        let xs = Tensor::<2>::from_data(
            TensorData::new(rows, [2 * dim, dim]),
            TensorCreationOptions::new(device.clone().inner()).with_dtype(DType::F64),
        );
        let cond64 = cond.map(|c| {
            c.clone()
                .inner()
                .narrow(0, sample, 1)
                .expand([2 * dim, cond_dim])
                .cast(DType::F64)
        });
        let zs = flow64
            .forward(xs, cond64.as_ref())
            .0
            .to_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("f64 data");
        // J[i][j] = dz_i / dx_j
        let mut jac = vec![0.0; dim * dim];
        for j in 0..dim {
            let (plus, minus) = (
                &zs[2 * j * dim..(2 * j + 1) * dim],
                &zs[(2 * j + 1) * dim..(2 * j + 2) * dim],
            );
            for i in 0..dim {
                jac[i * dim + j] = (plus[i] - minus[i]) / (2.0 * h);
            }
        }
        let numeric = log_abs_det(jac, dim);
        let err = (numeric - ld_host[sample]).abs();
        jacobian = jacobian.max(err);
        assert!(
            err <= settings.jacobian,
            "{name}: log-det {} but the numerical Jacobian gives {numeric} (error {err:e} > {:e})",
            ld_host[sample],
            settings.jacobian
        );
    }

    // Every parameter gets a gradient from the likelihood.
    let report = if param_paths(&flow).is_empty() {
        Vec::new()
    } else {
        let loss = flow.log_prob(x.clone(), cond).mean().neg();
        gradient_report(&flow, &loss.backward())
    };
    for (path, g) in &report {
        match g {
            None => panic!("{name}: parameter {path} received no gradient"),
            Some(g) if !g.is_finite() || *g == 0.0 => {
                panic!("{name}: parameter {path} has gradient max |g| = {g}")
            }
            _ => {}
        }
    }

    // Save, load, identical outputs; data-initialised layers stay as they were.
    let file = scratch.join(format!(
        "{}.safetensors",
        name.replace(|c: char| !c.is_alphanumeric(), "_")
    ));
    save_flow(&flow, &file, serde_json::Value::Null)
        .unwrap_or_else(|e| panic!("{name}: save failed: {e}"));
    // What was saved, in evaluation: the gradient pass above moved running statistics.
    let saved = flow.valid();
    let (loaded, _) =
        load_flow(&file, &device).unwrap_or_else(|e| panic!("{name}: load failed: {e}"));
    assert_eq!(
        loaded.init_flags(),
        flow.init_flags(),
        "{name}: init flags changed on load"
    );
    // In evaluation, so that no running statistics move.
    let loaded = loaded.valid().initialize(make(4).inner(), cond_e);
    let (z2, ld2) = loaded.forward(x_eval.clone(), cond_e);
    let (z1, ld1) = saved.forward(x_eval, cond_e);
    let (d_z, d_ld) = (max_abs_diff(z2, z1), max_abs_diff(ld2, ld1));
    assert!(
        d_z == 0.0 && d_ld == 0.0,
        "{name}: loaded model differs (z by {d_z:e}, log-det by {d_ld:e})"
    );

    HarnessReport {
        round_trip,
        jacobian,
        cancel,
        params: report.len(),
    }
}
