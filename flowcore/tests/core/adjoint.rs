//! The adjoint method's gradients against back-propagation through the steps of the same
//! solve: of the input, the condition, every parameter, with RNODE's penalties, both ways in
//! time, dense and convolutional dynamics. The two differ by the solver's error (the adjoint
//! differentiates the continuous problem), so both solve at a tight tolerance.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use flowcore::layer::BuildLayer;
use flowcore::layers::{FfjordSpec, ImageShape};
use flowcore::ode::{OdeGradient, OdeSolver};
use flowcore::penalty;
use flowcore::testing::perturb_params;
use flowcore::{Bijector, Layer, standard_normal};

/// Every parameter's gradient, flat, in traversal order.
fn param_grads<M: Module>(module: &M, grads: &burn::tensor::Gradients) -> Vec<Vec<f32>> {
    struct G<'a>(&'a burn::tensor::Gradients, Vec<Vec<f32>>);
    impl ModuleVisitor for G<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = p
                .val()
                .grad(self.0)
                .expect("every parameter gets a gradient");
            self.1
                .push(g.into_data().convert::<f32>().try_to_vec().unwrap());
        }
    }
    let mut g = G(grads, Vec::new());
    module.visit(&mut g);
    g.1
}

/// The gradients of a fixed random linear function of `(z, log-det, penalty)`, going forward
/// (`inverse` false) or backward in time.
fn gradients(
    layer: &Layer,
    x: &Tensor<2>,
    cond: Option<&Tensor<2>>,
    inverse: bool,
) -> Vec<Vec<f32>> {
    let x = x.clone().require_grad();
    let cond = cond.map(|c| c.clone().require_grad());
    let ((z, logdet), pen) = penalty::collect(|| {
        if inverse {
            layer.inverse(x.clone(), cond.as_ref())
        } else {
            layer.forward(x.clone(), cond.as_ref())
        }
    });
    let [batch, dim] = z.dims();
    let w = standard_normal(batch, dim, 7, &z.device());
    let u = standard_normal(batch, 1, 8, &z.device()).reshape([batch]);
    let mut loss = (z * w).sum() + (logdet * u).sum();
    if let Some(pen) = pen {
        loss = loss + pen.sum().mul_scalar(3.0);
    }
    let grads = loss.backward();
    let flat = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let mut out = vec![flat(x.grad(&grads).expect("the input's gradient"))];
    if let Some(c) = &cond {
        out.push(flat(c.grad(&grads).expect("the condition's gradient")));
    }
    out.extend(param_grads(layer, &grads));
    out
}

/// The largest difference relative to the largest gradient, tensor by tensor.
fn worst_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
            assert!(scale > 0.0, "a zero gradient compares nothing");
            let diff = a
                .iter()
                .zip(b)
                .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
            diff / scale
        })
        .fold(0.0, f64::max)
}

fn tight() -> OdeSolver {
    OdeSolver::Dopri5 {
        rtol: 1e-6,
        atol: 1e-6,
        max_steps: 1000,
    }
}

#[test]
fn adjoint_gradients_match_backpropagation_through_the_steps() {
    let device = Device::flex().autodiff();
    let dense = |dim: usize, cond_dim: usize| FfjordSpec {
        hidden: vec![12, 12],
        cond_dim,
        solver: tight(),
        ..FfjordSpec::new(dim)
    };
    let rnode = FfjordSpec {
        kinetic_weight: 0.1,
        jacobian_weight: 0.2,
        ..dense(2, 0)
    };
    let image = ImageShape::new(1, 3, 3);
    let conv = FfjordSpec {
        hidden: vec![4],
        image: Some(image),
        ..dense(image.numel(), 1)
    };
    let rk4 = FfjordSpec {
        solver: OdeSolver::Rk4 { steps: 40 },
        ..dense(3, 0)
    };
    let cases = [
        ("dense", dense(2, 0), false, 5e-4),
        ("dense, inverse", dense(2, 0), true, 5e-4),
        ("embedded condition of 3", dense(3, 3), false, 5e-4),
        ("rnode penalties", rnode, false, 5e-4),
        ("conv, condition of 1", conv, false, 5e-4),
        // A fixed step: the adjoint's backward steps are not the forward's own.
        ("rk4, 40 steps", rk4, false, 5e-4),
    ];
    for (i, (name, spec, inverse, tol)) in cases.into_iter().enumerate() {
        let backprop = perturb_params(spec.build(&device).unwrap(), 0.4, 30 + i as u64);
        let adjoint = FfjordSpec {
            gradient: OdeGradient::Adjoint,
            ..spec.clone()
        }
        .build(&device)
        .unwrap()
        .load_record(backprop.clone().into_record());
        let x = standard_normal(6, spec.dim, 40 + i as u64, &device);
        let cond =
            (spec.cond_dim > 0).then(|| standard_normal(6, spec.cond_dim, 50 + i as u64, &device));
        let exact = gradients(&Layer::Ffjord(backprop), &x, cond.as_ref(), inverse);
        let by_adjoint = gradients(&Layer::Ffjord(adjoint), &x, cond.as_ref(), inverse);
        let worst = worst_difference(&by_adjoint, &exact);
        assert!(
            worst < tol,
            "{name}: the adjoint's gradients differ by {worst:.2e} of the largest"
        );
        // Identical gradients would mean the steps were back-propagated after all.
        assert!(worst > 0.0, "{name}: the adjoint's operation did not run");
    }
}

/// Densities do not depend on how gradients are taken, and a model without autodiff never
/// runs the adjoint's operation.
#[test]
fn the_adjoint_changes_gradients_only() {
    let device = Device::flex().autodiff();
    let spec = FfjordSpec {
        hidden: vec![8],
        ..FfjordSpec::new(2)
    };
    let plain = perturb_params(spec.build(&device).unwrap(), 0.4, 3);
    let adjoint = FfjordSpec {
        gradient: OdeGradient::Adjoint,
        ..spec
    }
    .build(&device)
    .unwrap()
    .load_record(plain.clone().into_record());
    let x = standard_normal(5, 2, 4, &device);
    let (za, la) = adjoint.forward(x.clone(), None);
    let (zp, lp) = plain.forward(x.clone(), None);
    let diff = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f64>();
    assert!(diff(za, zp) < 1e-6);
    assert!(diff(la.unsqueeze_dim(1), lp.unsqueeze_dim(1)) < 1e-6);
    let (zv, _) = adjoint.valid().forward(x.inner(), None);
    assert!(!zv.device().is_autodiff());
}

/// Trained by the adjoint method alone, a flow reaches the true density of its data: a
/// correlated Gaussian, whose negative log-likelihood on the validation points is known.
#[test]
fn training_by_the_adjoint_reaches_the_true_density() {
    use burn::optim::{AdamConfig, GradientsParams};
    use flowcore::arch::FfjordConfig;
    use flowcore::{ArchitectureConfig, Flow};

    let device = Device::flex().autodiff();
    // x = A e + b, e standard normal: -log p(x) = |A^-1 (x - b)|^2 / 2 + log(2 pi) + log|det A|.
    let (a, b) = ([[1.2f32, 0.0], [0.9, 0.5]], [0.5f32, -1.0]);
    let draw = |n: usize, seed: u64, device: &Device| {
        let e = standard_normal(n, 2, seed, device);
        let a = Tensor::<2>::from_data([[a[0][0], a[1][0]], [a[0][1], a[1][1]]], device);
        e.matmul(a) + Tensor::<2>::from_data([b], device)
    };
    let config = ArchitectureConfig::Ffjord(FfjordConfig {
        dim: 2,
        hidden_units: vec![16, 16],
        solver: OdeSolver::Dopri5 {
            rtol: 1e-4,
            atol: 1e-4,
            max_steps: 1000,
        },
        gradient: OdeGradient::Adjoint,
        ..FfjordConfig::default()
    });
    let mut flow = Flow::seeded(config, 0, &device).unwrap();
    let mut optim = AdamConfig::new().init();
    for step in 0..250u64 {
        let loss = flow
            .log_prob(draw(256, 100 + step, &device), None)
            .mean()
            .neg();
        let grads = GradientsParams::from_grads(loss.backward(), &flow);
        flow = optim.step(1e-2, flow, grads);
    }
    let x = draw(4000, 1, &Device::flex());
    let nll = flow
        .valid()
        .log_prob(x.clone(), None)
        .mean()
        .neg()
        .into_scalar::<f64>();
    let log_det_a = ((a[0][0] * a[1][1] - a[0][1] * a[1][0]) as f64).abs().ln();
    let e = standard_normal(4000, 2, 1, &Device::flex());
    let truth = e.powi_scalar(2).sum_dim(1).mean().into_scalar::<f64>() / 2.0
        + (2.0 * std::f64::consts::PI).ln()
        + log_det_a;
    assert!(
        (nll - truth).abs() < 0.03,
        "validation NLL {nll:.4} against the true density's {truth:.4}"
    );
}
