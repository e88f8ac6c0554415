//! MADE's autoregressive property: the parameters it predicts for feature `f` depend on the
//! features before `f` and on the condition, and on nothing else. Checked on a numerical
//! Jacobian in f64, with parameters moved away from their zero-output start.

use burn::prelude::*;
use burn::tensor::{DType, Distribution, TensorCreationOptions, TensorData};
use flowcore::nets::{Activation, MadeSpec};
use flowcore::testing::{cast_params, perturb_params};

/// `|d out_u / d in_j|` for every output `u` and input `j` (features, then the condition), by
/// central differences in f64 at one random point.
fn jacobian(features: usize, cond_dim: usize, params: usize, hidden: &[usize]) -> Vec<Vec<f64>> {
    let device = Device::flex();
    device.seed(3);
    let spec = MadeSpec {
        hidden: hidden.to_vec(),
        activation: Activation::Tanh,
    };
    let made = spec.build(features, cond_dim, params, &device).unwrap();
    let made = cast_params(perturb_params(made, 0.5, 7), DType::F64);
    let inputs = features + cond_dim;
    let point = Tensor::<2>::random([1, inputs], Distribution::Normal(0.0, 1.0), &device)
        .cast(DType::F64)
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();
    let h = 1e-6;
    let mut rows = Vec::new();
    for j in 0..inputs {
        for sign in [1.0, -1.0] {
            let mut r = point.clone();
            r[j] += sign * h;
            rows.extend(r);
        }
    }
    let all = Tensor::<2>::from_data(
        TensorData::new(rows, [2 * inputs, inputs]),
        TensorCreationOptions::new(device).with_dtype(DType::F64),
    );
    let x = all.clone().narrow(1, 0, features);
    let cond = (cond_dim > 0).then(|| all.narrow(1, features, cond_dim));
    let out = made
        .forward(x, cond.as_ref())
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();
    let n_out = params * features;
    (0..n_out)
        .map(|u| {
            (0..inputs)
                .map(|j| {
                    let (plus, minus) = (out[2 * j * n_out + u], out[(2 * j + 1) * n_out + u]);
                    ((plus - minus) / (2.0 * h)).abs()
                })
                .collect()
        })
        .collect()
}

fn check(features: usize, cond_dim: usize, hidden: &[usize]) {
    let params = 3;
    let jac = jacobian(features, cond_dim, params, hidden);
    for (u, row) in jac.iter().enumerate() {
        // Output u is parameter u / D of feature u % D.
        let f = u % features;
        for (j, &d) in row.iter().enumerate() {
            let is_condition = j >= features;
            if is_condition || j < f {
                assert!(
                    d > 1e-9,
                    "D={features}: parameter {} of feature {f} does not depend on input {j} ({d:e})",
                    u / features
                );
            } else {
                assert_eq!(
                    d,
                    0.0,
                    "D={features}: parameter {} of feature {f} depends on input {j}, which comes \
                     at or after it",
                    u / features
                );
            }
        }
    }
}

#[test]
fn outputs_depend_on_earlier_features_and_the_condition_only() {
    check(5, 0, &[16, 16]);
    check(5, 2, &[16, 16]);
    // The narrowest hidden layers that carry every dependency.
    check(4, 0, &[3, 3]);
    check(4, 1, &[4]);
    check(1, 2, &[4]);
    check(2, 0, &[8, 8, 8]);
}

#[test]
fn too_narrow_a_made_is_refused() {
    let spec = MadeSpec {
        hidden: vec![16, 3],
        activation: Activation::Relu,
    };
    let e = spec
        .build(5, 0, 2, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("hidden width of 3") && e.contains("at least 4"),
        "{e}"
    );
}
