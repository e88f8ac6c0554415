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

use super::taps;
use crate::flex::on_flex;

/// The nine shifted copies of `x: [c, batch, h, w]` (zero outside) stacked tap-major,
/// `[9 c, batch h w]`: row `t c + k` holds `x[k, .., i + dy - 1, j + dx - 1]` for tap
/// `t = (dy, dx)`.
pub(super) fn columns(x: Tensor<4>) -> Tensor<2> {
    let [channels, batch, h, w] = x.dims();
    let shape = [9 * channels, batch * h * w];
    if let Some(out) = on_flex(&x, shape, |x| columns_f32(x, [channels, batch, h, w])) {
        return out;
    }
    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let shifted: Vec<Tensor<4>> = taps()
        .map(|(dy, dx)| {
            padded
                .clone()
                .slice([0..channels, 0..batch, dy..dy + h, dx..dx + w])
        })
        .collect();
    Tensor::cat(shifted, 0).reshape(shape)
}

/// `p: [9 k, batch, h, w]` as nine tap-major blocks, summed after shifting block `(dy, dx)` by
/// `(dy - 1, dx - 1)` (`y[i, j] += p_t[i + dy - 1, j + dx - 1]`, zero outside), or by the
/// opposite shift when `reverse` (the adjoint of the forward shift).
pub(super) fn shift_sum(p: Tensor<4>, reverse: bool) -> Tensor<4> {
    let [rows, batch, h, w] = p.dims();
    let k = rows / 9;
    if let Some(out) = on_flex(&p, [k, batch, h, w], |p| {
        shift_sum_f32(p, [k, batch, h, w], reverse)
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

fn columns_f32(x: &[f32], [channels, batch, h, w]: [usize; 4]) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0.0f32; 9 * channels * batch * plane];
    out.par_chunks_mut(batch * plane)
        .enumerate()
        .for_each(|(row, dst)| {
            let (dy, dx) = ((row / channels) / 3, (row / channels) % 3);
            let channel = &x[row % channels * batch * plane..][..batch * plane];
            let (cols, first) = inside(dx, w);
            for (dst, src) in dst.chunks_mut(plane).zip(channel.chunks(plane)) {
                for i in 0..h {
                    if let Some(r) = source_row(i, dy, h) {
                        dst[i * w..][cols.clone()]
                            .copy_from_slice(&src[r * w + first..][..cols.len()]);
                    }
                }
            }
        });
    out
}

fn shift_sum_f32(p: &[f32], [k, batch, h, w]: [usize; 4], reverse: bool) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0.0f32; k * batch * plane];
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(index, dst)| {
            for (t, (dy, dx)) in taps().enumerate() {
                let (dy, dx) = if reverse { (2 - dy, 2 - dx) } else { (dy, dx) };
                let src = &p[(t * k * batch + index) * plane..][..plane];
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
}
