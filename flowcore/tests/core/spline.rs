//! The rational-quadratic spline on its own, at its edges: the identity at zero parameters,
//! values exactly on knots and beyond the bound, extreme parameters (tiny bins, steep and flat
//! slopes), 128 bins; every case checked for the round trip, the log-derivative against a
//! central difference in f64, and finite gradients.

use burn::prelude::*;
use burn::tensor::{DType, Distribution, TensorData};
use flowcore::transform::Spline;

fn device() -> Device {
    Device::flex().autodiff()
}

fn values(t: Tensor<2>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// Values `[1, n]` and parameters `[1, 3K - 1, n]` drawn with standard deviation `scale`.
fn case(spline: &Spline, x: &[f32], scale: f64, seed: u64) -> (Tensor<2>, Tensor<3>) {
    let device = device();
    device.seed(seed);
    let n = x.len();
    let x = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, n]), &device);
    let params = Tensor::<3>::random(
        [1, spline.num_params(), n],
        Distribution::Normal(0.0, scale),
        &device,
    );
    (x, params)
}

/// Round trip, log-derivative against a central difference (in f64) and its cancellation with
/// the inverse's, and finite gradients to the values and the parameters. Returns the outputs.
fn check(name: &str, spline: &Spline, x: Tensor<2>, params: Tensor<3>, tol: f64) -> Vec<f64> {
    let x = x.require_grad();
    let params = params.require_grad();
    let (z, ld) = spline.forward(x.clone(), params.clone());
    let (back, ld_inv) = spline.inverse(z.clone(), params.clone());
    let (xs, zs, backs) = (values(x.clone()), values(z.clone()), values(back));
    let (lds, ld_invs) = (values(ld.clone()), values(ld_inv.clone()));
    for i in 0..xs.len() {
        // Where the spline is flat the inverse magnifies the rounding of z by 1/slope, as any
        // inverse would: the error is judged in units of z there.
        let err = (xs[i] - backs[i]).abs() * lds[i].exp().min(1.0);
        assert!(
            err <= tol * xs[i].abs().max(1.0),
            "{name}: x {} -> z {} -> x {} (error {err:e} in units of z)",
            xs[i],
            zs[i],
            backs[i]
        );
    }
    // Central difference in f64, at a step that stays within a bin of width 1e-3 of the interval.
    let x64 = x.clone().inner().cast(DType::F64);
    let p64 = params.clone().inner().cast(DType::F64);
    let h = 1e-7;
    let plus = values(spline.forward(x64.clone().add_scalar(h), p64.clone()).0);
    let minus = values(spline.forward(x64.sub_scalar(h), p64).0);
    for i in 0..xs.len() {
        let numeric = ((plus[i] - minus[i]) / (2.0 * h)).ln();
        let err = (numeric - lds[i]).abs();
        assert!(
            err <= 1e-3 * numeric.abs().max(1.0),
            "{name}: at x {} the log-derivative is {} but a central difference gives {numeric}",
            xs[i],
            lds[i]
        );
    }
    // The inverse's log-derivative is the negative of the forward one at the point it returns;
    // at the input itself too, where that point is the input (the spline not so flat that f32
    // cannot invert it).
    let (_, ld_back) = spline.forward(
        Tensor::<2>::from_data(TensorData::new(backs.clone(), [1, xs.len()]), &x.device())
            .cast(DType::F32),
        params.clone(),
    );
    let ld_back = values(ld_back);
    for i in 0..xs.len() {
        let well_conditioned = (xs[i] - backs[i]).abs() <= 1e-6 * xs[i].abs().max(1.0);
        for (at, ld_fwd) in [("its output", ld_back[i]), ("the input", lds[i])] {
            if at == "the input" && !well_conditioned {
                continue;
            }
            assert!(
                (ld_fwd + ld_invs[i]).abs() <= 1e-4 * ld_fwd.abs().max(1.0),
                "{name}: at x {} the inverse log-derivative {} is not minus the forward one at \
                 {at}, {ld_fwd}",
                xs[i],
                ld_invs[i]
            );
        }
    }
    let grads = (z.sum() + ld.sum() + ld_inv.sum()).backward();
    for (what, g) in [
        ("x", x.grad(&grads).map(|g| values(g.reshape([1, -1])))),
        (
            "params",
            params.grad(&grads).map(|g| values(g.reshape([1, -1]))),
        ),
    ] {
        let g = g.unwrap_or_else(|| panic!("{name}: no gradient for {what}"));
        assert!(
            g.iter().all(|v| v.is_finite()),
            "{name}: non-finite gradient for {what}: {g:?}"
        );
    }
    zs
}

#[test]
fn zero_parameters_are_the_identity() {
    let spline = Spline::default();
    let x = [-5.0, -3.0, -1.2, 0.0, 0.7, 2.999, 3.0, 4.5];
    let (x, _) = case(&spline, &x, 0.0, 0);
    let params = Tensor::<3>::zeros([1, spline.num_params(), 8], &device());
    let (z, ld) = spline.forward(x.clone(), params);
    assert!(values(z - x).iter().all(|d| d.abs() < 1e-6));
    assert!(values(ld).iter().all(|d| d.abs() < 1e-6));
}

#[test]
fn values_exactly_on_the_knots() {
    // With uniform widths (zero raw widths, no minimum width), the knots of [-4, 4] with 8
    // bins are the integers, exactly; heights and derivatives are random.
    let spline = Spline {
        bound: 4.0,
        min_bin_width: 0.0,
        ..Spline::default()
    };
    let knots: Vec<f32> = (-4..=4).map(|k| k as f32).collect();
    let (x, params) = case(&spline, &knots, 1.0, 1);
    let k = spline.bins;
    let widths = params.clone().narrow(1, 0, k).zeros_like();
    let rest = params.narrow(1, k, 2 * k - 1);
    let params = Tensor::cat(vec![widths, rest], 1);
    let z = check("on knots", &spline, x, params, 1e-5);
    // The ends map to themselves: the spline meets its tails there.
    assert!(
        (z[0] + 4.0).abs() < 1e-5 && (z[8] - 4.0).abs() < 1e-5,
        "{z:?}"
    );
}

#[test]
fn values_beyond_the_bound_pass_unchanged() {
    let spline = Spline {
        bound: 1.0,
        ..Spline::default()
    };
    let x = [-50.0, -1.5, -1.0, 1.0, 1.0001, 7.0, 1e6];
    let (xt, params) = case(&spline, &x, 1.0, 2);
    let z = check("beyond the bound", &spline, xt, params.clone(), 1e-5);
    for (i, &v) in x.iter().enumerate() {
        if v.abs() > 1.0 {
            assert_eq!(z[i], f64::from(v), "{v} is beyond the bound");
        }
    }
    let (_, ld) = spline.forward(
        Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, 7]), &device()),
        params,
    );
    let ld = values(ld);
    assert!(ld[0] == 0.0 && ld[6] == 0.0, "{ld:?}");
}

#[test]
fn extreme_parameters_stay_finite_and_invertible() {
    // Raw values of standard deviation 8: bins down to the minimum width and height, and
    // derivatives from the minimum to thousands.
    let spline = Spline::default();
    let x: Vec<f32> = (0..40).map(|i| -3.2 + 0.16 * i as f32).collect();
    for seed in 0..4 {
        let (xt, params) = case(&spline, &x, 8.0, 10 + seed);
        let z = check(
            &format!("extreme seed {seed}"),
            &spline,
            xt.clone(),
            params,
            1e-5,
        );
        // One spline at every value (the first feature's parameters): monotone.
        let (_, params) = case(&spline, &x[..1], 8.0, 20 + seed);
        let z_one = check(
            &format!("extreme seed {seed}, one spline"),
            &spline,
            xt,
            params.repeat_dim(2, x.len()),
            1e-5,
        );
        assert!(
            z_one.windows(2).all(|w| w[1] >= w[0]),
            "not monotone: {z_one:?}"
        );
        assert!(z.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn a_spline_of_128_bins() {
    let spline = Spline {
        bins: 128,
        ..Spline::default()
    };
    let x: Vec<f32> = (0..64).map(|i| -3.5 + 0.11 * i as f32).collect();
    let (xt, params) = case(&spline, &x, 1.0, 20);
    check("128 bins", &spline, xt, params, 1e-4);
}

#[test]
fn bad_spline_configs_are_refused_naming_the_key() {
    use flowcore::layers::{CouplingSpec, Mask};
    use flowcore::nets::MlpSpec;
    use flowcore::transform::Transform;
    for (spline, key) in [
        (
            Spline {
                bins: 1,
                ..Spline::default()
            },
            "bins",
        ),
        (
            Spline {
                bound: 0.0,
                ..Spline::default()
            },
            "bound",
        ),
        (
            Spline {
                min_bin_width: 0.2,
                ..Spline::default()
            },
            "min_bin_width",
        ),
        (
            Spline {
                min_derivative: 0.0,
                ..Spline::default()
            },
            "min_derivative",
        ),
    ] {
        let spec: flowcore::LayerSpec = CouplingSpec {
            mask: Mask::Half {
                dim: 2,
                flip: false,
            },
            transform: Transform::RationalQuadratic(spline),
            net: MlpSpec {
                hidden: vec![4],
                activation: Default::default(),
            }
            .into(),
            cond_dim: 0,
            z2: false,
        }
        .into();
        let e = spec.build(&Device::flex()).err().unwrap().to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
}
