//! The continuous flow beyond the shared harness: Hutchinson's estimator is unbiased, a solve
//! that runs out of steps fails loudly, naming the layer and the time it reached, and RNODE's
//! penalties are the integrals they stand for.

use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::layer::BuildLayer;
use flowcore::layers::{FfjordSpec, ProbeNoise, TraceEstimator};
use flowcore::ode::{OdeGradient, OdeSolver, take_failure};
use flowcore::penalty;
use flowcore::testing::perturb_params;
use flowcore::{Bijector, Layer};

fn host(t: Tensor<1>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_to_vec().unwrap()
}

#[test]
fn hutchinsons_estimate_has_the_exact_trace_as_its_mean() {
    let device = Device::flex().autodiff();
    device.seed(11);
    for noise in [ProbeNoise::Rademacher, ProbeNoise::Gaussian] {
        let spec = FfjordSpec {
            hidden: vec![16, 16],
            trace: TraceEstimator::Hutchinson,
            noise,
            ..FfjordSpec::new(3)
        };
        let layer = perturb_params(Layer::Ffjord(spec.build(&device).unwrap()), 0.5, 5);
        // One point, repeated: every row draws its own noise in the same solve.
        let n = 2000;
        let point = [0.3f32, -0.8, 1.1];
        let rows: Vec<f32> = point.iter().copied().cycle().take(3 * n).collect();
        let x = Tensor::<2>::from_data(TensorData::new(rows, [n, 3]), &device);
        let estimates = host(layer.forward(x.clone(), None).1);
        let exact = host(layer.valid().forward(x.inner().narrow(0, 0, 1), None).1)[0];
        let mean = estimates.iter().sum::<f64>() / n as f64;
        let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = (var / n as f64).sqrt();
        assert!(se > 1e-4, "{noise:?}: the estimates do not vary (se {se})");
        assert!(
            (mean - exact).abs() < 3.0 * se,
            "{noise:?}: mean estimate {mean} +- {se}, exact log-det {exact}"
        );
    }
}

#[test]
fn a_solve_out_of_steps_gives_non_finite_values_and_names_the_layer_and_time() {
    let device = Device::flex();
    let spec = FfjordSpec {
        hidden: vec![8],
        solver: OdeSolver::Dopri5 {
            rtol: 1e-12,
            atol: 1e-12,
            max_steps: 2,
        },
        ..FfjordSpec::new(2)
    };
    let layer = perturb_params(spec.build(&device).unwrap(), 1.0, 2);
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, -1.0, 0.5], [2, 2]),
        &device,
    );
    let (z, logdet) = layer.forward(x, None);
    assert!(host(logdet).iter().all(|v| v.is_nan()));
    assert!(host(z.flatten(0, 1)).iter().all(|v| v.is_nan()));
    let why = take_failure().expect("the failure is recorded");
    assert!(
        why.contains("ffjord layer (2 features)") && why.contains("stopped at t = 0."),
        "{why}"
    );
    assert!(why.contains("max_steps"), "{why}");

    // The adjoint's backward solve, out of steps where the forward solve was not: non-finite
    // gradients, which the training engine refuses, and the reason. (Here rather than in a
    // test of its own: the reason's slot is one per process.)
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, -1.0, 0.5], [2, 2]),
        &device,
    )
    .require_grad();
    let spec = |max_steps: usize| FfjordSpec {
        hidden: vec![8],
        solver: OdeSolver::Dopri5 {
            rtol: 1e-7,
            atol: 1e-7,
            max_steps,
        },
        gradient: OdeGradient::Adjoint,
        ..FfjordSpec::new(2)
    };
    let weights = perturb_params(spec(1).build(&device).unwrap(), 1.0, 2).into_record();
    let (max_steps, logdet) = (2..200)
        .find_map(|max_steps| {
            let layer = spec(max_steps)
                .build(&device)
                .unwrap()
                .load_record(weights.clone());
            let (_, logdet) = layer.forward(x.clone(), None);
            let finite = host(logdet.clone().inner()).iter().all(|v| v.is_finite());
            finite.then_some((max_steps, logdet))
        })
        .expect("a solve within 200 steps");
    let _ = take_failure();
    let grads = logdet.sum().backward();
    let grad = x.grad(&grads).expect("the input's gradient");
    assert!(
        host(grad.flatten(0, 1)).iter().all(|v| v.is_nan()),
        "the backward solve fit in the forward's {max_steps} steps"
    );
    let why = take_failure().expect("the failure is recorded");
    assert!(
        why.contains("adjoint solve") && why.contains("(2 features)"),
        "{why}"
    );
}

/// RNODE's terms against a quadrature of our own: classic RK4 with 400 steps along the
/// trajectory, through the network's own values and tangents, of |f|^2 and |df/dz|_F^2.
#[test]
fn rnode_penalties_are_the_integrals_of_kinetic_energy_and_jacobian_norm() {
    // Without autodiff: the quadrature's 1600 evaluations are never back-propagated, and on an
    // autodiff device their graph would stay in burn's process-wide autodiff server, which
    // then slows every other test of this binary (one took 130 s instead of 0.5 s).
    let device = Device::flex();
    let (dim, batch) = (2, 5);
    let x = Tensor::<2>::from_data(
        TensorData::new(
            vec![0.3f32, -0.8, 1.1, 0.2, -1.5, 0.7, 0.0, 0.0, 2.0, -2.0],
            [batch, dim],
        ),
        &device,
    );
    let spec = |kinetic_weight: f64, jacobian_weight: f64| FfjordSpec {
        hidden: vec![16, 16],
        kinetic_weight,
        jacobian_weight,
        ..FfjordSpec::new(dim)
    };
    // One set of parameters for every weighting, copied rather than re-drawn: burn's random
    // generator is one per process, and other tests of this binary draw from it concurrently.
    let weights = perturb_params(spec(0.0, 0.0).build(&device).unwrap(), 0.4, 8).into_record();
    let penalty_of = |kinetic_weight: f64, jacobian_weight: f64| {
        let layer = spec(kinetic_weight, jacobian_weight)
            .build(&device)
            .unwrap()
            .load_record(weights.clone());
        let ((z, _), gathered) = penalty::collect(|| layer.forward(x.clone(), None));
        // Outside `collect` nothing is gathered and the solve is the same.
        let (z_plain, _) = layer.forward(x.clone(), None);
        let diff = (z - z_plain).abs().max().into_scalar::<f64>();
        assert!(
            diff < 1e-4,
            "the penalty's columns moved the solution by {diff}"
        );
        (layer, gathered.expect("a penalty").into_scalar::<f64>())
    };
    let (layer, kinetic) = penalty_of(1.0, 0.0);
    let (_, jacobian) = penalty_of(0.0, 1.0);
    let (_, both) = penalty_of(0.5, 2.0);
    let mixed = 0.5 * kinetic + 2.0 * jacobian;
    assert!(
        (both - mixed).abs() < 1e-3 * both.abs(),
        "weights 0.5 and 2: {both} against {mixed}"
    );

    // The quadrature: the state z, the two integrals per sample, in f32 tensors.
    let mut eye = vec![0.0f32; dim * batch * dim];
    for k in 0..dim {
        for b in 0..batch {
            eye[(k * batch + b) * dim + k] = 1.0;
        }
    }
    let v = Tensor::<2>::from_data(TensorData::new(eye, [dim * batch, dim]), &device);
    let rate = |t: f64, z: Tensor<2>| {
        let (f, jv) = layer.eval(t, z, None, v.clone());
        let k = f.clone().powi_scalar(2).sum_dim(1);
        let j = jv
            .powi_scalar(2)
            .reshape([dim, batch, dim])
            .sum_dim(2)
            .sum_dim(0)
            .reshape([batch, 1]);
        (f, k, j)
    };
    let steps = 400;
    let h = 1.0 / steps as f64;
    let mut z = x.clone();
    let (mut ke, mut jn) = (0.0f64, 0.0f64);
    for i in 0..steps {
        let t = i as f64 * h;
        let (f1, k1, j1) = rate(t, z.clone());
        let (f2, k2, j2) = rate(t + h / 2.0, z.clone() + f1.clone().mul_scalar(h / 2.0));
        let (f3, k3, j3) = rate(t + h / 2.0, z.clone() + f2.clone().mul_scalar(h / 2.0));
        let (f4, k4, j4) = rate(t + h, z.clone() + f3.clone().mul_scalar(h));
        z = z + (f1 + f2.mul_scalar(2.0) + f3.mul_scalar(2.0) + f4).mul_scalar(h / 6.0);
        let avg = |a: Tensor<2>, b: Tensor<2>, c: Tensor<2>, d: Tensor<2>| {
            (a + b.mul_scalar(2.0) + c.mul_scalar(2.0) + d)
                .mean()
                .into_scalar::<f64>()
                * h
                / 6.0
        };
        ke += avg(k1, k2, k3, k4);
        jn += avg(j1, j2, j3, j4);
    }
    assert!(
        kinetic > 1e-3 && jacobian > 1e-3,
        "trivial dynamics: {kinetic}, {jacobian}"
    );
    assert!(
        (kinetic - ke).abs() < 1e-3 * ke,
        "kinetic energy {kinetic} against quadrature {ke}"
    );
    assert!(
        (jacobian - jn).abs() < 1e-3 * jn,
        "Jacobian norm {jacobian} against quadrature {jn}"
    );
}

/// Maximum likelihood adds the penalties to the loss, with the parts named; validation does
/// not see them.
#[test]
fn the_likelihood_objective_adds_rnode_penalties_to_the_loss_only() {
    use flowcore::arch::FfjordConfig;
    use flowcore::train::{MaximumLikelihood, Objective};
    use flowcore::{ArchitectureConfig, Flow};
    let device = Device::flex().autodiff();
    let x = flowcore::standard_normal(16, 2, 1, &device);
    let config = |kinetic_weight: f64| {
        ArchitectureConfig::Ffjord(FfjordConfig {
            dim: 2,
            hidden_units: vec![8, 8],
            kinetic_weight,
            ..FfjordConfig::default()
        })
    };
    // The same parameters for both, copied: other tests of this binary draw from burn's
    // process-wide random generator while these flows are built.
    let weights =
        perturb_params(Flow::seeded(config(0.0), 0, &device).unwrap(), 0.3, 2).into_record();
    let flow_with = |kinetic_weight: f64| {
        Flow::seeded(config(kinetic_weight), 0, &device)
            .unwrap()
            .load_record(weights.clone())
    };
    let plain = MaximumLikelihood.loss(&flow_with(0.0), x.clone(), None, 0, 0);
    assert!(plain.parts.is_empty());
    let loss = MaximumLikelihood.loss(&flow_with(0.1), x.clone(), None, 0, 0);
    let part = |name: &str| {
        loss.parts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone().into_scalar::<f64>())
            .unwrap_or_else(|| panic!("no part {name}"))
    };
    let (nll, pen, total) = (
        part("nll"),
        part("penalty"),
        loss.total.into_scalar::<f64>(),
    );
    assert!(pen > 0.0 && (total - nll - pen).abs() < 1e-5 * total.abs().max(1.0));
    // The penalty's columns join the solver's error control: the steps differ a little.
    let plain = plain.total.into_scalar::<f64>();
    assert!((nll - plain).abs() < 1e-3, "nll {nll} against {plain}");
}

/// Outside training, `eval_probes` noise vectors per sample estimate the log-det of a
/// convolutional block without bias: their mean over many draws is the exact trace's.
#[test]
fn probes_outside_training_estimate_a_conv_blocks_exact_log_det() {
    let device = Device::flex();
    device.seed(12);
    let shape = flowcore::layers::ImageShape::new(2, 3, 3);
    let spec = |eval_probes: usize| FfjordSpec {
        hidden: vec![6],
        image: Some(shape),
        eval_probes,
        ..FfjordSpec::new(shape.numel())
    };
    let weights = perturb_params(spec(0).build(&device).unwrap(), 0.5, 6).into_record();
    let exact_layer = spec(0).build(&device).unwrap().load_record(weights.clone());
    let probed = spec(4).build(&device).unwrap().load_record(weights);
    let n = 1000;
    let point: Vec<f32> = (0..shape.numel()).map(|i| (i as f32 * 0.7).sin()).collect();
    let rows: Vec<f32> = point
        .iter()
        .copied()
        .cycle()
        .take(point.len() * n)
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(rows, [n, point.len()]), &device);
    let (z_exact, exact) = exact_layer.forward(x.clone().narrow(0, 0, 1), None);
    let exact = host(exact)[0];
    let (z, logdet) = probed.forward(x, None);
    let estimates = host(logdet);
    let mean = estimates.iter().sum::<f64>() / n as f64;
    let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let se = (var / n as f64).sqrt();
    assert!(se > 1e-4, "the estimates do not vary (se {se})");
    assert!(
        (mean - exact).abs() < 3.0 * se,
        "mean estimate {mean} +- {se}, exact log-det {exact}"
    );
    // The probes change the log-det, not the solution (beyond the solver's tolerance).
    let diff = (z.narrow(0, 0, 1) - z_exact)
        .abs()
        .max()
        .into_scalar::<f64>();
    assert!(diff < 1e-3, "the probed solve moved z by {diff}");
}

/// The image config's mistakes are named: convolutions on data without an image shape,
/// squeezes of an odd side, squeezes of dense data, and an image shape that is not the data's.
#[test]
fn image_config_errors_name_the_key_and_the_shape() {
    use flowcore::arch::{FfjordConfig, OdeNetwork};
    use flowcore::{ArchitectureConfig, Flow};
    let device = Device::flex();
    let error = |config: FfjordConfig| {
        Flow::new(ArchitectureConfig::Ffjord(config), &device)
            .unwrap_err()
            .to_string()
    };
    let conv = FfjordConfig {
        dim: 36,
        network: OdeNetwork::Conv,
        ..FfjordConfig::default()
    };
    let e = error(conv.clone());
    assert!(e.contains("network = \"conv\" needs images"), "{e}");
    let odd = FfjordConfig {
        channels: 1,
        height: 6,
        width: 6,
        squeezes: 2,
        ..conv.clone()
    };
    let e = error(odd);
    assert!(
        e.contains("1x6x6 cannot be squeezed 2 times") && e.contains("after 1 they are 4x3x3"),
        "{e}"
    );
    let dense = FfjordConfig {
        dim: 4,
        squeezes: 1,
        ..FfjordConfig::default()
    };
    let e = error(dense);
    assert!(e.contains("squeezes need network = \"conv\""), "{e}");
    let mismatch = FfjordSpec {
        image: Some(flowcore::layers::ImageShape::new(1, 3, 3)),
        ..FfjordSpec::new(10)
    };
    let e = mismatch.build(&device).unwrap_err().to_string();
    assert!(e.contains("1x3x3 have 9 values, not dim = 10"), "{e}");
}
