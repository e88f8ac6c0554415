//! The affine transform in one pass over plain CPU tensors (scoring and sampling, no
//! autodiff): per value the scale, its log and the output, split over the cores. Composed of
//! burn's operations it was eight passes on the calling thread, two of them copies of the
//! parameters' halves, and Glow scoring spent about a third of its main thread on them.
//!
//! The arithmetic is that of the composed operations ([`ScaleFn::scale_and_log`]), value by
//! value in f32, so the results agree to rounding (tests below).

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;
use wide::f32x8;

use super::ScaleFn;

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
    let xs = x.clone().try_into_primitive::<Flex>().ok()?.to_contiguous();
    let ps = params
        .clone()
        .try_into_primitive::<Flex>()
        .ok()?
        .to_contiguous();
    let (xs, ps) = (xs.as_slice::<f32>()?, ps.as_slice::<f32>()?);
    // `h -> (s, log s)` as [`ScaleFn::scale_and_log`] computes it, operation for operation,
    // eight values at a time: glibc's scalar `logf` alone was 7% of Glow 32 scoring.
    let (out, log_det) = match scale {
        ScaleFn::Sigmoid => {
            let at_zero = f32x8::splat((1.0 / (1.0 + (-2.0f64).exp())) as f32);
            pass(xs, ps, d, inverse, move |h| {
                let a = h + f32x8::splat(2.0);
                // `max` would turn a NaN into the bound, a finite scale from a broken network.
                let a = a.is_nan().select(a, a.max(f32x8::splat(-80.0)));
                let s = sigmoid(a) / at_zero;
                (s, s.ln())
            })
        }
        ScaleFn::Tanh { clamp } => {
            let c = f32x8::splat(clamp as f32);
            pass(xs, ps, d, inverse, move |h| {
                let log_s = (h / c).tanh() * c;
                (log_s.exp(), log_s)
            })
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
    scale_and_log: impl Fn(f32x8) -> (f32x8, f32x8) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let (mut out, mut log_det) = (vec![0f32; xs.len()], vec![0f32; xs.len()]);
    let rows = (VALUES_PER_TASK / d.max(1)).max(1);
    let row_block = |(i, (out, log_det)): (usize, (&mut [f32], &mut [f32]))| {
        let first = i * rows;
        for (r, (out, log_det)) in out.chunks_mut(d).zip(log_det.chunks_mut(d)).enumerate() {
            let row = first + r;
            let x = &xs[row * d..(row + 1) * d];
            let (shift, h) = ps[row * 2 * d..(row + 1) * 2 * d].split_at(d);
            for j in (0..d).step_by(8) {
                let n = (d - j).min(8);
                // A short tail is padded with ones: finite through every branch below.
                let load = |v: &[f32]| {
                    let mut lanes = [1f32; 8];
                    lanes[..n].copy_from_slice(&v[j..j + n]);
                    f32x8::from(lanes)
                };
                let (s, log_s) = scale_and_log(load(h));
                let (y, ld) = if inverse {
                    ((load(x) - load(shift)) / s, -log_s)
                } else {
                    (load(x) * s + load(shift), log_s)
                };
                out[j..j + n].copy_from_slice(&y.to_array()[..n]);
                log_det[j..j + n].copy_from_slice(&ld.to_array()[..n]);
            }
        }
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

/// burn's CPU sigmoid, both of its branches computed and the right one kept per lane: the
/// branch keeps `exp` from overflowing.
fn sigmoid(x: f32x8) -> f32x8 {
    let one = f32x8::splat(1.0);
    let e = (-x.abs()).exp();
    let at_or_above_zero = one / (one + e);
    let below_zero = e / (one + e);
    x.simd_ge(f32x8::ZERO)
        .bitselect(at_or_above_zero, below_zero)
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
