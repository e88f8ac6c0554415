//! The affine transform in one pass over plain CPU tensors (scoring and sampling, no
//! autodiff): per value the scale, its log and the output, split over the cores. Composed of
//! burn's operations it was eight passes on the calling thread, two of them copies of the
//! parameters' halves, and Glow scoring spent about a third of its main thread on them.
//!
//! The arithmetic is that of the composed operations ([`ScaleFn::scale_and_log`]), value by
//! value in f32, so the results agree to rounding (tests below).

use super::ScaleFn;
use super::exp_ln::{exp, ln};
use crate::flex;
use crate::nets::rational_tanh;
use crate::simd::widest;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

/// Values per task when the pass is split over the cores.
const VALUES_PER_TASK: usize = 16 * 1024;

/// `(x s + t, log s)`, or for `inverse` `((x - t) / s, -log s)`, of `x: [batch, d]` with raw
/// parameters `[batch, 2, d]` (shift `t`, raw scale `h`), when both hold f32 on the CPU backend
/// without autodiff and the scale is Glow's sigmoid or the tanh clamp; None elsewhere.
pub(super) fn apply(
    scale: ScaleFn,
    x: &Tensor<2>,
    params: &Tensor<3>,
    inverse: bool,
) -> Option<(Tensor<2>, Tensor<2>)> {
    if x.dtype() != DType::F32
        || params.dtype() != DType::F32
        || x.device().is_autodiff()
        || matches!(scale, ScaleFn::Atan { .. })
    {
        return None;
    }
    let [batch, d] = x.dims();
    let (xs, ps) = (flex::values(x)?, flex::values(params)?);
    let (xs, ps) = (flex::slice(&xs), flex::slice(&ps));
    // `h -> (s, log s)` as [`ScaleFn::scale_and_log`] computes it, operation for operation,
    // in loops the compiler vectorises: glibc's scalar `logf` alone was 7% of Glow 32 scoring.
    let (out, log_det) = match scale {
        ScaleFn::Sigmoid => {
            let at_zero = (1.0 / (1.0 + (-2.0f64).exp())) as f32;
            pass(
                xs,
                ps,
                d,
                inverse,
                #[inline(always)]
                move |h| {
                    let a = h + 2.0;
                    // `max` would turn a NaN into the bound, a finite scale from a broken network.
                    let a = if a < -80.0 { -80.0 } else { a };
                    let s = sigmoid(a) / at_zero;
                    (s, ln(s))
                },
            )
        }
        ScaleFn::Tanh { clamp } => {
            let c = clamp as f32;
            pass(
                xs,
                ps,
                d,
                inverse,
                #[inline(always)]
                move |h| {
                    let log_s = rational_tanh(h / c) * c;
                    (exp(log_s), log_s)
                },
            )
        }
        ScaleFn::Atan { .. } => return None,
    };
    let device = x.device();
    let tensor = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [batch, d]), &device);
    Some((tensor(out), tensor(log_det)))
}

/// The outputs and log-dets of rows of `d` values `x` with parameter rows `[t | h]`.
fn pass(
    xs: &[f32],
    ps: &[f32],
    d: usize,
    inverse: bool,
    scale_and_log: impl Fn(f32) -> (f32, f32) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let (mut out, mut log_det) = (vec![0f32; xs.len()], vec![0f32; xs.len()]);
    let rows = (VALUES_PER_TASK / d.max(1)).max(1);
    let row_block = |(i, (out, log_det)): (usize, (&mut [f32], &mut [f32]))| {
        let first = i * rows;
        // One dispatch per block, not per row: the 2-D couplings' rows hold one value.
        widest(
            #[inline(always)]
            || {
                let rows = out.chunks_mut(d).zip(log_det.chunks_mut(d)).enumerate();
                for (r, (out, log_det)) in rows {
                    let row = first + r;
                    let x = &xs[row * d..(row + 1) * d];
                    let (shift, h) = ps[row * 2 * d..(row + 1) * 2 * d].split_at(d);
                    // Zipped, not indexed: bounds checks keep a loop from vectorising.
                    let values = out.iter_mut().zip(log_det.iter_mut());
                    let values = values.zip(x.iter().zip(shift).zip(h));
                    for ((out, log_det), ((&x, &t), &h)) in values {
                        let (s, log_s) = scale_and_log(h);
                        (*out, *log_det) = if inverse {
                            ((x - t) / s, -log_s)
                        } else {
                            (x * s + t, log_s)
                        };
                    }
                }
            },
        );
    };
    let blocks = out.chunks_mut(rows * d).zip(log_det.chunks_mut(rows * d));
    if xs.len() >= 2 * VALUES_PER_TASK && rayon::current_num_threads() > 1 {
        let blocks: Vec<_> = blocks.collect();
        blocks.into_par_iter().enumerate().for_each(row_block);
    } else {
        blocks.enumerate().for_each(row_block);
    }
    (out, log_det)
}

/// burn's CPU sigmoid, both of its branches computed and the right one kept: the branch keeps
/// `exp` from overflowing.
#[inline(always)]
pub(super) fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// The pass against burn's composed operations, both directions, small and split batches,
    /// raw scales out to the sigmoid's clamp.
    #[test]
    fn the_one_pass_affine_transform_equals_the_composed_one() {
        let device = Device::flex();
        for scale in [ScaleFn::Sigmoid, ScaleFn::Tanh { clamp: 3.0 }] {
            for (batch, d) in [(3, 5), (300, 257)] {
                let x = Tensor::<2>::random([batch, d], Distribution::Normal(0.0, 2.0), &device);
                let p = Tensor::<3>::random([batch, 2, d], Distribution::Normal(0.0, 3.0), &device);
                // Extremes: far below the sigmoid's clamp, and large positive.
                let p = p.slice_assign(
                    [0..1, 1..2, 0..2],
                    Tensor::from_floats([[[-200.0, 60.0]]], &device),
                );
                for inverse in [false, true] {
                    let (out, ld) = apply(scale, &x, &p, inverse).expect("a plain f32 tensor");
                    let (shift, h) = (
                        p.clone().narrow(1, 0, 1).reshape([batch, d]),
                        p.clone().narrow(1, 1, 1).reshape([batch, d]),
                    );
                    let (s, log_s) = scale.scale_and_log(h);
                    let (want, want_ld) = if inverse {
                        ((x.clone() - shift) / s, log_s.neg())
                    } else {
                        (x.clone() * s + shift, log_s)
                    };
                    for (what, a, b) in [("output", out, want), ("log-det", ld, want_ld)] {
                        let d = (a - b.clone()).abs().max().into_scalar::<f32>();
                        let size = b.abs().max().into_scalar::<f32>().max(1.0);
                        assert!(
                            d <= 1e-6 * size,
                            "{scale:?} {batch}x{d} inverse={inverse}: {what} differs by {d}"
                        );
                    }
                }
            }
        }
        // A NaN from the network stays NaN in the output and the log-det, as in burn's
        // operations, for either scale.
        for scale in [ScaleFn::Sigmoid, ScaleFn::Tanh { clamp: 3.0 }] {
            let x = Tensor::<2>::ones([1, 9], &device);
            let p = Tensor::<3>::zeros([1, 2, 9], &device).slice_assign(
                [0..1, 1..2, 8..9],
                Tensor::from_floats([[[f32::NAN]]], &device),
            );
            for inverse in [false, true] {
                let (out, ld) = apply(scale, &x, &p, inverse).expect("a plain f32 tensor");
                let (h, _) = scale.scale_and_log(p.clone().narrow(1, 1, 1).reshape([1, 9]));
                for t in [out, ld, h] {
                    let nan = t.is_nan().into_data().try_to_vec::<bool>().unwrap();
                    assert_eq!(nan, [[false; 8].as_slice(), &[true]].concat(), "{scale:?}");
                }
            }
        }
        // Autodiff tensors and the atan scale take burn's operations.
        let ad = Device::flex().autodiff();
        let x = Tensor::<2>::zeros([2, 3], &ad);
        let p = Tensor::<3>::zeros([2, 2, 3], &ad);
        assert!(apply(ScaleFn::Sigmoid, &x, &p, false).is_none());
        let x = Tensor::<2>::zeros([2, 3], &device);
        let p = Tensor::<3>::zeros([2, 2, 3], &device);
        assert!(apply(ScaleFn::Atan { clamp: 1.0 }, &x, &p, false).is_none());
    }
}
