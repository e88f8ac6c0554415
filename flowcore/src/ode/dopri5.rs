//! Adaptive Dormand-Prince 5(4) (Hairer, Norsett and Wanner, Solving ODEs I, II.4), with the
//! first step chosen from the dynamics (their algorithm, as torchdiffeq's `dopri5`), the
//! fifth-order solution propagated and the last stage reused as the next step's first.

use burn::prelude::*;

use super::{SolveStats, StepLimit, combine, error_ratio};

const C: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A2: [f64; 1] = [1.0 / 5.0];
const A3: [f64; 2] = [3.0 / 40.0, 9.0 / 40.0];
const A4: [f64; 3] = [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0];
const A5: [f64; 4] = [
    19372.0 / 6561.0,
    -25360.0 / 2187.0,
    64448.0 / 6561.0,
    -212.0 / 729.0,
];
const A6: [f64; 5] = [
    9017.0 / 3168.0,
    -355.0 / 33.0,
    46732.0 / 5247.0,
    49.0 / 176.0,
    -5103.0 / 18656.0,
];
/// The fifth-order weights (also the seventh stage's row).
const B: [f64; 6] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
];
/// Fifth- minus fourth-order weights, over the seven stages: the local error estimate.
const E: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];
const SAFETY: f64 = 0.9;
const MAX_FACTOR: f64 = 10.0;
const MIN_FACTOR: f64 = 0.2;

fn terms<'a>(coefs: &[f64], ks: &'a [Tensor<2>]) -> Vec<(f64, &'a Tensor<2>)> {
    coefs.iter().copied().zip(ks.iter()).collect()
}

/// Hairer's starting step: small enough that an Euler step changes `y` by about 1% of its
/// scale, and that the dynamics change little over it.
fn first_step<F>(
    f: &mut F,
    y0: &Tensor<2>,
    f0: &Tensor<2>,
    t0: f64,
    dir: f64,
    tol: (f64, f64),
) -> f64
where
    F: FnMut(f64, Tensor<2>) -> Tensor<2>,
{
    let (rtol, atol) = tol;
    let zero = y0.clone().detach().mul_scalar(0.0);
    let d0 = error_ratio(y0.clone(), y0, y0, rtol, atol);
    let d1 = error_ratio(f0.clone(), y0, y0, rtol, atol);
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    let y1 = combine(
        &y0.clone().detach(),
        dir * h0,
        &[(1.0, &f0.clone().detach())],
    );
    let f1 = f(t0 + dir * h0, y1).detach();
    let d2 = error_ratio(f1 - f0.clone().detach(), y0, &zero, rtol, atol) / h0;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / 5.0)
    };
    (100.0 * h0).min(h1)
}

pub(super) fn solve<F>(
    mut f: F,
    y0: Tensor<2>,
    t0: f64,
    t1: f64,
    rtol: f64,
    atol: f64,
    max_steps: usize,
) -> Result<(Tensor<2>, SolveStats), StepLimit>
where
    F: FnMut(f64, Tensor<2>) -> Tensor<2>,
{
    let span = (t1 - t0).abs();
    let mut stats = SolveStats::default();
    if span == 0.0 {
        return Ok((y0, stats));
    }
    let dir = (t1 - t0).signum();
    let mut t = t0;
    let mut y = y0;
    let mut k1 = f(t, y.clone());
    let mut h = first_step(&mut f, &y, &k1, t, dir, (rtol, atol));
    stats.nfe = 2;
    let mut attempts = 0;
    while (t1 - t) * dir > 1e-12 * span {
        if attempts >= max_steps {
            return Err(StepLimit {
                time: t,
                attempts,
                step: h,
            });
        }
        attempts += 1;
        let remaining = (t1 - t).abs();
        let last = h >= remaining;
        let hs = dir * h.min(remaining);
        let mut ks = vec![k1.clone()];
        for (stage, a) in [&A2[..], &A3, &A4, &A5, &A6].into_iter().enumerate() {
            let yi = combine(&y, hs, &terms(a, &ks));
            ks.push(f(t + C[stage] * hs, yi));
        }
        let y_new = combine(&y, hs, &terms(&B, &ks));
        let k7 = f(t + hs, y_new.clone());
        stats.nfe += 6;
        ks.push(k7);
        let err = combine(&y.clone().detach().mul_scalar(0.0), hs, &terms(&E, &ks));
        let ratio = error_ratio(err, &y, &y_new, rtol, atol);
        let factor = if ratio == 0.0 {
            MAX_FACTOR
        } else {
            (SAFETY * ratio.powf(-0.2)).clamp(MIN_FACTOR, MAX_FACTOR)
        };
        if ratio <= 1.0 {
            t = if last { t1 } else { t + hs };
            y = y_new;
            k1 = ks.pop().expect("seven stages");
            stats.steps += 1;
            h = hs.abs() * factor;
        } else {
            stats.rejected += 1;
            h = hs.abs() * factor.min(1.0);
        }
        if !h.is_finite() || h <= 0.0 {
            return Err(StepLimit {
                time: t,
                attempts,
                step: h,
            });
        }
    }
    Ok((y, stats))
}
