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
use crate::simd::widest;

/// The nine shifted copies of `x: [c, batch, h, w]` (zero outside) stacked tap-major,
/// `[9 c, batch h w]`: row `t c + k` holds `x[k, .., i + dy - 1, j + dx - 1]` for tap
/// `t = (dy, dx)`.
pub(super) fn columns(x: Tensor<4>) -> Tensor<2> {
    let [channels, batch, h, w] = x.dims();
    let shape = [9 * channels, batch * h * w];
    if let Some(out) = on_flex(&x, shape, |x| {
        let mut out = vec![0.0; shape[0] * shape[1]];
        columns_into(x, [channels, batch, h, w], &mut out);
        out
    }) {
        return out;
    }
    Tensor::cat(shifted_copies(x), 0).reshape(shape)
}

/// [`columns`] of the values of `x: [c, batch, h, w]` into `out` (`9 c batch h w` values).
pub(super) fn columns_into(x: &[f32], [channels, batch, h, w]: [usize; 4], out: &mut [f32]) {
    // Output row t c + k (a block of `batch` planes) is input row k shifted by tap t.
    let blocks = |n: usize| (n % channels, n / channels);
    shifted_blocks(x, [9 * channels, batch, h, w], blocks, out);
}

/// `p: [9 k, batch, h, w]` as nine tap-major blocks, summed after shifting block `(dy, dx)` by
/// `(dy - 1, dx - 1)` (`y[i, j] += p_t[i + dy - 1, j + dx - 1]`, zero outside), or by the
/// opposite shift when `reverse` (the adjoint of the forward shift).
pub(super) fn shift_sum(p: Tensor<4>, reverse: bool) -> Tensor<4> {
    let [rows, batch, h, w] = p.dims();
    let k = rows / 9;
    if let Some(out) = on_flex(&p, [k, batch, h, w], |p| {
        let mut out = vec![0.0; k * batch * h * w];
        shift_sum_into(p, [k, batch, h, w], reverse, &mut out);
        out
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

/// [`shift_sum`] of the values of `p: [9 k, batch, h, w]` into `out` (`k batch h w` values).
pub(super) fn shift_sum_into(
    p: &[f32],
    [k, batch, h, w]: [usize; 4],
    reverse: bool,
    out: &mut [f32],
) {
    // Output row c (a block of `batch` planes) sums input rows t k + c.
    let source = |m: usize, t: usize| t * k + m;
    summed_blocks(p, [k, batch, h, w], reverse, source, out);
}

/// [`columns`] of batch-major `x: [batch, c, h, w]`, per image: `[batch, 9 c, h w]`, row
/// `t c + k` of image `b` holding `x[b, k, i + dy - 1, j + dx - 1]` for tap `t = (dy, dx)`.
pub(super) fn columns_batch_major(x: Tensor<4>) -> Tensor<3> {
    let [batch, channels, h, w] = x.dims();
    let shape = [batch, 9 * channels, h * w];
    // Output block (b, t) (rows t c .. (t + 1) c of image b) is image b shifted by tap t.
    let blocks = |n: usize| (n / 9, n % 9);
    if let Some(out) = on_flex(&x, shape, |x| {
        let mut out = vec![0.0; shape.iter().product()];
        shifted_blocks(x, [batch * 9, channels, h, w], blocks, &mut out);
        out
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
    // Output image b (a block of k planes) sums input blocks (b, t), rows t k .. (t + 1) k.
    let source = |b: usize, t: usize| b * 9 + t;
    if let Some(out) = on_flex(&p, [batch, k, h, w], |p| {
        let mut out = vec![0.0; batch * k * h * w];
        summed_blocks(p, [batch, k, h, w], reverse, source, &mut out);
        out
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

/// `blocks` output blocks of `planes` planes of `h x w`, block `n` the input block
/// `source(n).0` (of as many planes) with each plane shifted by tap `source(n).1` (zero
/// outside), into `out`.
///
/// A block's planes are contiguous on both sides, so the shift is one pass over the whole
/// block at a constant offset, masked where the source crossed a row's or a plane's edge:
/// copied row by row, the 7-value rows of a 7x7 plane were a `memcpy` call each, and the
/// passes a quarter of a conv FFJORD step.
fn shifted_blocks(
    x: &[f32],
    [blocks, planes, h, w]: [usize; 4],
    source: impl Fn(usize) -> (usize, usize) + Sync,
    out: &mut [f32],
) {
    let block = planes * h * w;
    let masks = TapMasks::new(block, [h, w]);
    out[..blocks * block]
        .par_chunks_mut(block.max(1))
        .enumerate()
        .with_min_len(blocks_per_task(block))
        .for_each(|(n, dst)| {
            let (src, t) = source(n);
            let src = &x[src * block..][..block];
            masks.apply(t, dst, src, |d, s| *d = s);
        });
}

/// `blocks` output blocks of `planes` planes of `h x w`, block `m` the sum over the taps `t`
/// of input block `source(m, t)` with each plane shifted by `t` (or by the opposite shift when
/// `reverse`), the taps added in order, into `out`.
fn summed_blocks(
    p: &[f32],
    [blocks, planes, h, w]: [usize; 4],
    reverse: bool,
    source: impl Fn(usize, usize) -> usize + Sync,
    out: &mut [f32],
) {
    let block = planes * h * w;
    let masks = TapMasks::new(block, [h, w]);
    out[..blocks * block]
        .par_chunks_mut(block.max(1))
        .enumerate()
        .with_min_len(blocks_per_task(block))
        .for_each(|(m, dst)| {
            dst.fill(0.0);
            for t in 0..9 {
                let tap = if reverse { 8 - t } else { t };
                let src = &p[source(m, t) * block..][..block];
                masks.apply(tap, dst, src, |d, s| *d += s);
            }
        });
}

/// Blocks of `block` values per parallel task: about 8192 values (32 KiB).
fn blocks_per_task(block: usize) -> usize {
    (8192 / block.max(1)).max(1)
}

/// Per tap, the positions of a block of planes `h x w` whose source lies inside their plane:
/// all ones bits there, zero where the source crossed an edge.
pub(super) struct TapMasks {
    masks: Vec<u32>,
    block: usize,
    w: usize,
}

impl TapMasks {
    pub(super) fn new(block: usize, [h, w]: [usize; 2]) -> Self {
        let plane = h * w;
        let mut masks = Vec::with_capacity(9 * block);
        for (dy, dx) in taps() {
            // One plane's mask, repeated over the block's planes.
            let start = masks.len();
            for i in 0..h {
                let row = (1..=h).contains(&(i + dy));
                masks.extend((0..w).map(|j| {
                    if row && (1..=w).contains(&(j + dx)) {
                        u32::MAX
                    } else {
                        0
                    }
                }));
            }
            for _ in 1..block / plane.max(1) {
                masks.extend_from_within(start..start + plane);
            }
            masks.truncate(start + block);
        }
        Self {
            masks,
            block,
            w: w.max(1),
        }
    }

    /// `f(dst[p], src[p + offset])` over the block for tap `t`, the source masked to zero
    /// outside its plane; `f(dst[p], 0)` where `p + offset` falls outside the block.
    #[inline(always)]
    pub(super) fn apply(&self, t: usize, dst: &mut [f32], src: &[f32], f: impl Fn(&mut f32, f32)) {
        let len = dst.len();
        let offset = tap_offset(t, self.w);
        let o = offset.unsigned_abs().min(len);
        let mask = &self.masks[t * self.block..][..len];
        let (inner, outer) = if offset >= 0 {
            let (inner, outer) = dst.split_at_mut(len - o);
            ((inner, &src[o..], &mask[..len - o]), outer)
        } else {
            let (outer, inner) = dst.split_at_mut(o);
            ((inner, &src[..len - o], &mask[o..]), outer)
        };
        let (d, s, m) = inner;
        widest(
            #[inline(always)]
            || {
                for ((d, s), m) in d.iter_mut().zip(s).zip(m) {
                    f(d, f32::from_bits(s.to_bits() & m));
                }
                outer.iter_mut().for_each(|d| f(d, 0.0));
            },
        )
    }
}

/// The flat offset of tap `t = (dy, dx)` in planes of width `w`: `(dy - 1) w + dx - 1`.
fn tap_offset(t: usize, w: usize) -> isize {
    let (dy, dx) = ((t / 3) as isize, (t % 3) as isize);
    (dy - 1) * w as isize + dx - 1
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn the_cpu_passes_equal_the_burn_operations() {
        let device = Device::flex();
        for [c, b, h, w] in [
            [3, 2, 4, 5],
            [2, 3, 1, 1],
            [1, 2, 2, 1],
            [2, 1, 1, 3],
            [2, 4, 7, 7],
        ] {
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
        for [b, c, h, w] in [
            [2, 3, 4, 5],
            [3, 2, 1, 1],
            [2, 1, 2, 1],
            [1, 2, 1, 3],
            [4, 2, 7, 7],
        ] {
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
