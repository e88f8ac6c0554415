//! Tiles of whole batch-major images (`[batch, c, h, w]`) as the columns of a matrix product:
//! a tile of `images` images laid out row-major `[c, images h w]` ("tile-major"), so that one
//! product per tile on one thread replaces a product per image (too small for the kernel at
//! 16x16 and below) or one over the whole batch (whose operands come from memory, not cache).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::im2col::TapMasks;

/// Product columns (pixels) per tile: with 64 hidden channels a coupling network's
/// intermediates for one tile take about 2.3 MB, and the products' shapes stay good for the
/// kernel.
const TILE_COLUMNS: usize = 2048;

/// A batch of `batch` images of `plane` pixels in tiles of `images` images (the last one may
/// hold fewer).
#[derive(Clone, Copy)]
pub(super) struct Tiling {
    pub(super) batch: usize,
    pub(super) images: usize,
    pub(super) plane: usize,
}

impl Tiling {
    /// At least two tiles per thread where the batch allows; None when there are fewer tiles
    /// than threads, where products split over the threads do better.
    pub(super) fn new(batch: usize, plane: usize) -> Option<Self> {
        let threads = rayon::current_num_threads().max(1);
        let by_size = (TILE_COLUMNS / plane.max(1)).max(1);
        let images = by_size.min(batch.div_ceil(2 * threads)).max(1);
        (batch.div_ceil(images) >= threads).then_some(Self {
            batch,
            images,
            plane,
        })
    }

    pub(super) fn count(self) -> usize {
        self.batch.div_ceil(self.images)
    }

    pub(super) fn tile(self, i: usize) -> Tile {
        Tile {
            images: self.images.min(self.batch - i * self.images),
            plane: self.plane,
        }
    }

    /// Tile `i`'s values of batch-major values with `rows` planes per image.
    pub(super) fn of(self, values: &[f32], i: usize, rows: usize) -> &[f32] {
        let per_image = rows * self.plane;
        &values[i * self.images * per_image..][..self.tile(i).images * per_image]
    }

    /// `f(i, tile, part)` for each tile `i` and its part of a new batch-major output (`rows`
    /// planes per image), in parallel; the output.
    pub(super) fn each(self, rows: usize, f: impl Fn(usize, Tile, &mut [f32]) + Sync) -> Vec<f32> {
        self.each_with_sum(Some(rows), None, |i, tile, y, _| {
            f(i, tile, y.unwrap_or(&mut []))
        })
        .0
    }

    /// [`Self::each`] with an output only when `rows` is given (else each tile gets None and
    /// the output is empty), each tile also given a zeroed sum of `sum_len` values when there
    /// is one; the output and the tiles' sums added together.
    ///
    /// Each part of the output is zeroed by its tile's thread: zeroed by the allocator, a
    /// fresh output's pages faulted and were cleared on the calling thread alone while the
    /// others waited (6% of a Glow 32 training step).
    pub(super) fn each_with_sum(
        self,
        rows: Option<usize>,
        sum_len: Option<usize>,
        f: impl Fn(usize, Tile, Option<&mut [f32]>, Option<&mut [f32]>) + Sync,
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        let part_len = rows.map_or(0, |rows| self.images * rows * self.plane);
        let len = self.batch * self.plane * rows.unwrap_or(0);
        let mut y = Vec::<f32>::with_capacity(len);
        let mut parts: Vec<Option<&mut [MaybeUninit<f32>]>> = if len == 0 {
            (0..self.count()).map(|_| None).collect()
        } else {
            y.spare_capacity_mut()[..len]
                .chunks_mut(part_len.max(1))
                .map(Some)
                .collect()
        };
        let sums = parts.par_iter_mut().enumerate().map(|(i, part)| {
            let part = part.as_deref_mut().map(|part| {
                part.fill(MaybeUninit::new(0.0));
                // SAFETY: every value of the part was written just above.
                unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
            });
            let mut sum = vec![0.0f32; sum_len.unwrap_or(0)];
            let wanted = sum_len.is_some().then_some(&mut sum[..]);
            f(i, self.tile(i), part, wanted);
            sum
        });
        let total = sums.reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        });
        drop(parts);
        // SAFETY: the tiles' parts, each zeroed above, are the first `len` values.
        unsafe { y.set_len(len) };
        (y, total.filter(|_| sum_len.is_some()))
    }
}

/// The shapes of one tile: `images` images of `plane` pixels.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub(super) images: usize,
    pub(super) plane: usize,
}

impl Tile {
    /// The tile's product columns.
    pub(super) fn columns(self) -> usize {
        self.images * self.plane
    }

    /// Batch-major `x: [images, rows, plane]` to tile-major `[rows, images plane]`.
    pub(super) fn gather(self, x: &[f32], rows: usize, dst: &mut [f32]) {
        let (n, plane) = (self.columns(), self.plane);
        for b in 0..self.images {
            for r in 0..rows {
                dst[r * n + b * plane..][..plane]
                    .copy_from_slice(&x[(b * rows + r) * plane..][..plane]);
            }
        }
    }

    /// Batch-major `x: [images, rows, plane]` as tile-major `[rows, images plane]`: `x` itself
    /// for a tile of one image, else gathered into `buf`.
    pub(super) fn tile_major<'a>(self, x: &'a [f32], rows: usize, buf: &'a mut [f32]) -> &'a [f32] {
        if self.images == 1 {
            x
        } else {
            self.gather(x, rows, buf);
            buf
        }
    }

    /// `fill` writes a tile-major `[rows, images plane]` result: straight into the batch-major
    /// `dst` for a tile of one image, else into `buf`, then scattered into `dst`.
    pub(super) fn into_batch_major(
        self,
        buf: &mut [f32],
        rows: usize,
        dst: &mut [f32],
        fill: impl FnOnce(&mut [f32]),
    ) {
        if self.images == 1 {
            fill(dst);
        } else {
            fill(buf);
            self.scatter(buf, rows, dst);
        }
    }

    /// Tile-major `p: [rows, images plane]` to batch-major `[images, rows, plane]`.
    pub(super) fn scatter(self, p: &[f32], rows: usize, dst: &mut [f32]) {
        let (n, plane) = (self.columns(), self.plane);
        for b in 0..self.images {
            for r in 0..rows {
                dst[(b * rows + r) * plane..][..plane]
                    .copy_from_slice(&p[r * n + b * plane..][..plane]);
            }
        }
    }

    /// The nine shifted copies (zero outside) of batch-major `x: [images, c, plane]`,
    /// tile-major `[9 c, images plane]`: row `t c + k` holds channel `k` shifted by tap `t`.
    pub(super) fn columns_of(self, x: &[f32], c: usize, masks: &TapMasks, dst: &mut [f32]) {
        let (n, plane) = (self.columns(), self.plane);
        for t in 0..9 {
            for k in 0..c {
                for b in 0..self.images {
                    let dst = &mut dst[(t * c + k) * n + b * plane..][..plane];
                    let src = &x[(b * c + k) * plane..][..plane];
                    masks.apply(t, dst, src, |d, s| *d = s);
                }
            }
        }
    }

    /// Tile-major `p: [9 k, images plane]` as nine tap-major row blocks, summed into batch-major
    /// `[images, k, plane]` after shifting block `t` by tap `t`, or by tap `8 - t` when
    /// `reverse` (the adjoint of the columns' shift).
    pub(super) fn shift_sum(
        self,
        p: &[f32],
        k: usize,
        reverse: bool,
        masks: &TapMasks,
        dst: &mut [f32],
    ) {
        let (n, plane) = (self.columns(), self.plane);
        for b in 0..self.images {
            for o in 0..k {
                let dst = &mut dst[(b * k + o) * plane..][..plane];
                dst.fill(0.0);
                for t in 0..9 {
                    let tap = if reverse { 8 - t } else { t };
                    let src = &p[(t * k + o) * n + b * plane..][..plane];
                    masks.apply(tap, dst, src, |d, s| *d += s);
                }
            }
        }
    }
}
