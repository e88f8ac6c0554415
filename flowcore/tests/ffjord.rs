//! The continuous flow beyond the shared harness: Hutchinson's estimator is unbiased, and a
//! solve that runs out of steps fails loudly, naming the layer and the time it reached.

use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::layer::BuildLayer;
use flowcore::layers::{FfjordSpec, ProbeNoise, TraceEstimator};
use flowcore::ode::{OdeSolver, take_failure};
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
}
