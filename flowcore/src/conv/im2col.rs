//! The two data movements of a 3x3 "same" convolution as matrix products, on channel-major
//! images `[c, batch, h, w]`: the nine shifted copies of an input stacked as the product's
//! columns (im2col), and nine shifted blocks of a product's output summed into one image.
//!
//! On the CPU backend both are one pass over contiguous rows, in parallel over the rows: as
//! burn operations (a pad, nine strided slices, a concatenation; a pad and eight sums of
//! strided views) they took a fifth of a continuous flow's training step. Elsewhere (CubeCL,
//! other element types) they are those burn operations.

use burn::prelude::*;
use burn::tensor::ops::PadMode;
use rayon::prelude::*;

use super::{shifted_copies, taps};
use crate::flex::on_flex;

/// The nine shifted copies of `x: [c, batch, h, w]` (zero outside) stacked tap-major,
/// `[9 c, batch h w]`: row `t c + k` holds `x[k, .., i + dy - 1, j + dx - 1]` for tap
/// `t = (dy, dx)`.
pub(super) fn columns(x: Tensor<4>) -> Tensor<2> {
    let [channels, batch, h, w] = x.dims();
    let shape = [9 * channels, batch * h * w];
    // Output plane (t c + k, b) is input plane (k, b) shifted by tap t.
    let planes = |n: usize| {
        let row = n / batch;
        ((row % channels) * batch + n % batch, row / channels)
    };
    if let Some(out) = on_flex(&x, shape, |x| {
        shifted_planes(x, [9 * channels * batch, h, w], planes)
    }) {
        return out;
    }
    Tensor::cat(shifted_copies(x), 0).reshape(shape)
}

/// `p: [9 k, batch, h, w]` as nine tap-major blocks, summed after shifting block `(dy, dx)` by
/// `(dy - 1, dx - 1)` (`y[i, j] += p_t[i + dy - 1, j + dx - 1]`, zero outside), or by the
/// opposite shift when `reverse` (the adjoint of the forward shift).
pub(super) fn shift_sum(p: Tensor<4>, reverse: bool) -> Tensor<4> {
    let [rows, batch, h, w] = p.dims();
    let k = rows / 9;
    // Output plane (c, b) sums input planes (t k + c, b).
    let source = |m: usize, t: usize| t * k * batch + m;
    if let Some(out) = on_flex(&p, [k, batch, h, w], |p| {
        summed_planes(p, [k * batch, h, w], reverse, source)
    }) {
        return out;
    }
    let p = p.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let shifted = taps().enumerate().map(|(t, (dy, dx))| {
        let (dy, dx) = if reverse { (2 - dy, 2 - dx) } else { (dy, dx) };
        p.clone()
            .slice([t * k..(t + 1) * k, 0..batch, dy..dy + h, dx..dx + w])
    });
    shifted.reduce(|acc, t| acc + t).expect("nine taps")
}

/// [`columns`] of batch-major `x: [batch, c, h, w]`, per image: `[batch, 9 c, h w]`, row
/// `t c + k` of image `b` holding `x[b, k, i + dy - 1, j + dx - 1]` for tap `t = (dy, dx)`.
pub(super) fn columns_batch_major(x: Tensor<4>) -> Tensor<3> {
    let [batch, channels, h, w] = x.dims();
    let shape = [batch, 9 * channels, h * w];
    let planes = |n: usize| {
        let (b, row) = (n / (9 * channels), n % (9 * channels));
        (b * channels + row % channels, row / channels)
    };
    if let Some(out) = on_flex(&x, shape, |x| {
        shifted_planes(x, [batch * 9 * channels, h, w], planes)
    }) {
        return out;
    }
    Tensor::cat(shifted_copies(x), 1).reshape(shape)
}

/// [`shift_sum`] of batch-major `p: [batch, 9 k, h, w]` (tap-major blocks per image), giving
/// `[batch, k, h, w]`.
pub(super) fn shift_sum_batch_major(p: Tensor<4>, reverse: bool) -> Tensor<4> {
    let [batch, rows, h, w] = p.dims();
    let k = rows / 9;
    // Output plane (b, c) sums input planes (b, t k + c).
    let source = |m: usize, t: usize| (m / k) * 9 * k + t * k + m % k;
    if let Some(out) = on_flex(&p, [batch, k, h, w], |p| {
        summed_planes(p, [batch * k, h, w], reverse, source)
    }) {
        return out;
    }
    let p = p.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let shifted = taps().enumerate().map(|(t, (dy, dx))| {
        let (dy, dx) = if reverse { (2 - dy, 2 - dx) } else { (dy, dx) };
        p.clone()
            .slice([0..batch, t * k..(t + 1) * k, dy..dy + h, dx..dx + w])
    });
    shifted.reduce(|acc, t| acc + t).expect("nine taps")
}

/// `planes` output planes of `h x w`, plane `n` the input plane `source(n).0` shifted by tap
/// `source(n).1` (zero outside).
fn shifted_planes(
    x: &[f32],
    [planes, h, w]: [usize; 3],
    source: impl Fn(usize) -> (usize, usize) + Sync,
) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0.0f32; planes * plane];
    out.par_chunks_mut(plane)
        .enumerate()
        .with_min_len(planes_per_task(plane))
        .for_each(|(n, dst)| {
            let (src, t) = source(n);
            let (dy, dx) = (t / 3, t % 3);
            let src = &x[src * plane..][..plane];
            let (cols, first) = inside(dx, w);
            for i in 0..h {
                if let Some(r) = source_row(i, dy, h) {
                    dst[i * w..][cols.clone()].copy_from_slice(&src[r * w + first..][..cols.len()]);
                }
            }
        });
    out
}

/// `planes` output planes of `h x w`, plane `m` the sum over the taps `t` of input plane
/// `source(m, t)` shifted by `t` (or by the opposite shift when `reverse`).
fn summed_planes(
    p: &[f32],
    [planes, h, w]: [usize; 3],
    reverse: bool,
    source: impl Fn(usize, usize) -> usize + Sync,
) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0.0f32; planes * plane];
    out.par_chunks_mut(plane)
        .enumerate()
        .with_min_len(planes_per_task(plane))
        .for_each(|(m, dst)| {
            for (t, (dy, dx)) in taps().enumerate() {
                let (dy, dx) = if reverse { (2 - dy, 2 - dx) } else { (dy, dx) };
                let src = &p[source(m, t) * plane..][..plane];
                let (cols, first) = inside(dx, w);
                for i in 0..h {
                    if let Some(r) = source_row(i, dy, h) {
                        let src = &src[r * w + first..][..cols.len()];
                        for (d, s) in dst[i * w..][cols.clone()].iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        });
    out
}

/// Planes of `plane` values per parallel task: about 8192 values (32 KiB), so that the 49
/// values of a 7x7 plane (the 28x28 continuous flow squeezed twice) are not a task each.
fn planes_per_task(plane: usize) -> usize {
    (8192 / plane.max(1)).max(1)
}

/// The columns `j` of a row of width `w` whose source `j + d - 1` is inside it, and that
/// source's first column.
fn inside(d: usize, w: usize) -> (std::ops::Range<usize>, usize) {
    let start = usize::from(d == 0);
    let end = if d == 2 { w.saturating_sub(1) } else { w };
    (start..end.max(start), start + d - 1)
}

/// The row `i + d - 1` of a plane of height `h`, if inside it.
fn source_row(i: usize, d: usize, h: usize) -> Option<usize> {
    (i + d).checked_sub(1).filter(|&r| r < h)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn the_cpu_passes_equal_the_burn_operations() {
        let device = Device::flex();
        for [c, b, h, w] in [[3, 2, 4, 5], [2, 3, 1, 1], [1, 2, 2, 1], [2, 1, 1, 3]] {
            let x = Tensor::<4>::random([c, b, h, w], Distribution::Default, &device);
            let padded = x.clone().pad((1, 1, 1, 1), PadMode::Constant(0.0));
            let expected: Vec<Tensor<4>> = taps()
                .map(|(dy, dx)| padded.clone().slice([0..c, 0..b, dy..dy + h, dx..dx + w]))
                .collect();
            let expected = Tensor::cat(expected, 0).reshape([9 * c, b * h * w]);
            let d = (columns(x.clone()) - expected)
                .abs()
                .max()
                .into_scalar::<f32>();
            assert_eq!(d, 0.0, "columns of {c}x{b}x{h}x{w}");
            let p = Tensor::<4>::random([9 * c, b, h, w], Distribution::Default, &device);
            for reverse in [false, true] {
                let padded = p.clone().pad((1, 1, 1, 1), PadMode::Constant(0.0));
                let expected = taps()
                    .enumerate()
                    .map(|(t, (dy, dx))| {
                        let (dy, dx) = if reverse { (2 - dy, 2 - dx) } else { (dy, dx) };
                        padded
                            .clone()
                            .slice([t * c..(t + 1) * c, 0..b, dy..dy + h, dx..dx + w])
                    })
                    .reduce(|a, t| a + t)
                    .unwrap();
                let d = (shift_sum(p.clone(), reverse) - expected).abs().max();
                let d = d.into_scalar::<f32>();
                assert!(d < 1e-6, "shift sum of {c}x{b}x{h}x{w} ({reverse}): {d}");
            }
            // A strided view goes through the same pass.
            let view = Tensor::<4>::random([b, c, h, w], Distribution::Default, &device)
                .permute([1, 0, 2, 3]);
            let d = (columns(view.clone()) - columns(view.clone() * 1.0))
                .abs()
                .max();
            assert_eq!(d.into_scalar::<f32>(), 0.0);
        }
    }

    #[test]
    fn the_batch_major_passes_equal_the_burn_operations() {
        let device = Device::flex();
        for [b, c, h, w] in [[2, 3, 4, 5], [3, 2, 1, 1], [2, 1, 2, 1], [1, 2, 1, 3]] {
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Default, &device);
            let padded = x.clone().pad((1, 1, 1, 1), PadMode::Constant(0.0));
            let expected: Vec<Tensor<4>> = taps()
                .map(|(dy, dx)| padded.clone().slice([0..b, 0..c, dy..dy + h, dx..dx + w]))
                .collect();
            let expected = Tensor::cat(expected, 1).reshape([b, 9 * c, h * w]);
            let d = (columns_batch_major(x.clone()) - expected).abs().max();
            assert_eq!(d.into_scalar::<f32>(), 0.0, "columns of {b}x{c}x{h}x{w}");
            let p = Tensor::<4>::random([b, 9 * c, h, w], Distribution::Default, &device);
            for reverse in [false, true] {
                let padded = p.clone().pad((1, 1, 1, 1), PadMode::Constant(0.0));
                let expected = taps()
                    .enumerate()
                    .map(|(t, (dy, dx))| {
                        let (dy, dx) = if reverse { (2 - dy, 2 - dx) } else { (dy, dx) };
                        padded
                            .clone()
                            .slice([0..b, t * c..(t + 1) * c, dy..dy + h, dx..dx + w])
                    })
                    .reduce(|a, t| a + t)
                    .unwrap();
                let d = (shift_sum_batch_major(p.clone(), reverse) - expected)
                    .abs()
                    .max();
                let d = d.into_scalar::<f32>();
                assert!(d < 1e-6, "shift sum of {b}x{c}x{h}x{w} ({reverse}): {d}");
            }
        }
    }
}
