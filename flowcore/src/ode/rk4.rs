//! Fixed-step classic Runge-Kutta of order 4.

use burn::prelude::*;

use super::{SolveStats, combine};

pub(super) fn solve<F>(
    mut f: F,
    y0: Tensor<2>,
    t0: f64,
    t1: f64,
    steps: usize,
) -> (Tensor<2>, SolveStats)
where
    F: FnMut(f64, Tensor<2>) -> Tensor<2>,
{
    let h = (t1 - t0) / steps as f64;
    let mut y = y0;
    for i in 0..steps {
        let t = t0 + h * i as f64;
        let k1 = f(t, y.clone());
        let k2 = f(t + h / 2.0, combine(&y, h, &[(0.5, &k1)]));
        let k3 = f(t + h / 2.0, combine(&y, h, &[(0.5, &k2)]));
        let k4 = f(t + h, combine(&y, h, &[(1.0, &k3)]));
        y = combine(
            &y,
            h,
            &[
                (1.0 / 6.0, &k1),
                (1.0 / 3.0, &k2),
                (1.0 / 3.0, &k3),
                (1.0 / 6.0, &k4),
            ],
        );
    }
    let stats = SolveStats {
        nfe: 4 * steps,
        steps,
        rejected: 0,
    };
    (y, stats)
}
