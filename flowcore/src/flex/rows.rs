//! Rows copied on all the cores: narrowed views made contiguous, features put side by side.

use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use crate::simd::widest;

use super::{Values, operand, tensor, values};
use burn::backend::Flex;

/// `t` with contiguous values: a narrowed view of a CPU-backend f32 tensor without autodiff
/// copied by [`values`], anything else as it is. burn's reshape of a view copies it on the
/// calling thread.
pub(crate) fn contiguous(t: Tensor<2>) -> Tensor<2> {
    match values(&t) {
        Some(v) => Tensor::<2>::from_primitive::<Flex>(v),
        None => t,
    }
}

/// Values from which [`values`] copies a view's rows on all the cores rather than burn's copy
/// on the calling thread.
pub(super) const PARALLEL_COPY: usize = 1 << 16;

/// `parts` side by side, `Tensor::cat(parts, 1)`, their rows copied on all the cores, when each
/// part holds f32 on the CPU backend without autodiff with its rows contiguous (narrowed views
/// included); None elsewhere. burn's copies on the calling thread were a sixth of Glow 32
/// scoring, where the multiscale factor-out and the couplings split and join the features.
pub(crate) fn cat_columns(parts: &[Tensor<2>]) -> Option<Tensor<2>> {
    let rows = parts.first()?.dims()[0];
    let flex: Vec<Values> = parts
        .iter()
        .map(|p| {
            (p.dtype() == DType::F32 && p.dims()[0] == rows)
                .then(|| p.clone().try_into_primitive::<Flex>().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    let columns: Vec<Columns> = flex
        .iter()
        .zip(parts)
        .map(|(f, p)| Columns::of(f, p.dims()[1]))
        .collect::<Option<_>>()?;
    let cols = columns.iter().map(|c| c.width).sum();
    Some(tensor(
        side_by_side(rows, &columns),
        [rows, cols],
        &parts[0].device(),
    ))
}

/// A 2-D tensor's values read as rows of `width` contiguous values, `stride` apart.
pub(super) struct Columns<'a> {
    values: &'a [f32],
    stride: usize,
    width: usize,
}

impl<'a> Columns<'a> {
    /// `f`'s rows of `width` values, where each row's values are contiguous.
    pub(super) fn of(f: &'a Values, width: usize) -> Option<Self> {
        let o = operand(f)?;
        (o.col_stride == 1 || width <= 1).then_some(Self {
            values: o.values,
            stride: o.row_stride as usize,
            width,
        })
    }
}

impl<'a> Columns<'a> {
    /// A view whose rows along its first dimension are each contiguous (a batch-major tensor
    /// narrowed to some of its channels, a 2-D one to some columns), read as rows of all its
    /// other dimensions' values. burn's copy of such a view went value by value through a
    /// strided iterator on the calling thread (the coupling halves of Glow's 3x3 convolutions:
    /// 4% of a Glow 32 training step).
    pub(super) fn of_rows(f: &'a Values, dims: &[usize]) -> Option<Self> {
        let layout = f.layout();
        let (strides, offset) = (layout.strides(), layout.start_offset());
        if dims.len() < 2 || strides.len() != dims.len() || strides[0] < 0 {
            return None;
        }
        let mut expected = 1isize;
        for (&n, &s) in dims.iter().zip(strides).skip(1).rev() {
            if n != 1 && s != expected {
                return None;
            }
            expected *= n as isize;
        }
        Some(Self {
            values: &f.storage::<f32>()[offset..],
            stride: strides[0] as usize,
            width: dims[1..].iter().product(),
        })
    }
}

/// The `rows` rows of `parts` side by side, row-major, the rows copied in parallel.
pub(super) fn side_by_side(rows: usize, parts: &[Columns]) -> Vec<f32> {
    let cols: usize = parts.iter().map(|c| c.width).sum();
    let mut out = Vec::<f32>::with_capacity(rows * cols);
    out.spare_capacity_mut()[..rows * cols]
        .par_chunks_mut(cols.max(1))
        .enumerate()
        .with_min_len((PARALLEL_COPY / 4 / cols.max(1)).max(1))
        .for_each(|(i, row)| {
            let mut at = 0;
            for part in parts {
                let src = &part.values[i * part.stride..][..part.width];
                for (d, &v) in row[at..at + part.width].iter_mut().zip(src) {
                    d.write(v);
                }
                at += part.width;
            }
        });
    // SAFETY: each row above wrote its parts' widths, `cols` values together.
    unsafe { out.set_len(rows * cols) };
    out
}

/// Row-major `src [rows, cols]` transposed into `dst [cols, rows]` on the calling thread, a
/// block of 16 x 16 at a time held in registers.
pub(crate) fn transpose_into(src: &[f32], [rows, cols]: [usize; 2], dst: &mut [f32]) {
    transpose_columns(src, [rows, cols], 0, &mut dst[..rows * cols]);
}

/// Row-major `src [rows, cols]` transposed, `[cols, rows]`, the columns split over the cores
/// when large.
pub(crate) fn transposed(src: &[f32], [rows, cols]: [usize; 2]) -> Vec<f32> {
    let threads = rayon::current_num_threads().max(1);
    let per_task = if rows * cols >= 4 * PARALLEL_COPY && threads > 1 {
        cols.div_ceil(threads).next_multiple_of(BLOCK)
    } else {
        cols.max(1)
    };
    let mut dst = vec![0.0f32; rows * cols];
    dst.par_chunks_mut((per_task * rows).max(1))
        .enumerate()
        .for_each(|(i, part)| transpose_columns(src, [rows, cols], i * per_task, part));
    dst
}

const BLOCK: usize = 16;

/// Columns `first..` of row-major `src [rows, cols]` transposed into `dst`, as many as it
/// holds rows of `rows` values.
fn transpose_columns(src: &[f32], [rows, cols]: [usize; 2], first: usize, dst: &mut [f32]) {
    const B: usize = BLOCK;
    let end = first + dst.len() / rows.max(1);
    widest(
        #[inline(always)]
        || {
            for r0 in (0..rows).step_by(B) {
                let r1 = (r0 + B).min(rows);
                for c0 in (first..end).step_by(B) {
                    let c1 = (c0 + B).min(end);
                    if r1 - r0 == B && c1 - c0 == B {
                        let mut block = [[0.0f32; B]; B];
                        for (i, row) in block.iter_mut().enumerate() {
                            row.copy_from_slice(&src[(r0 + i) * cols + c0..][..B]);
                        }
                        for j in 0..B {
                            let d: &mut [f32; B] = (&mut dst[(c0 - first + j) * rows + r0..][..B])
                                .try_into()
                                .expect("a block's row");
                            for i in 0..B {
                                d[i] = block[i][j];
                            }
                        }
                    } else {
                        for r in r0..r1 {
                            for (c, &v) in (c0..c1).zip(&src[r * cols + c0..r * cols + c1]) {
                                dst[(c - first) * rows + r] = v;
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::slice;

    /// The parallel row copies against burn's: columns side by side from narrowed views and a
    /// whole tensor, rows enough for several tasks, and a wide view's contiguous values.
    #[test]
    fn rows_copied_on_the_cores_equal_burns_copies() {
        use burn::tensor::Distribution;
        let device = Device::flex();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let x = Tensor::<2>::random([1000, 80], Distribution::Default, &device);
        let y = Tensor::<2>::random([1000, 3], Distribution::Default, &device);
        let parts = vec![x.clone().narrow(1, 2, 5), y, x.clone().narrow(1, 79, 1)];
        let (cat, view) = pool.install(|| {
            let view = values(&x.clone().narrow(1, 5, 70)).expect("plain f32");
            (cat_columns(&parts).expect("plain f32"), view)
        });
        let want = Tensor::cat(parts, 1);
        assert_eq!(cat.dims(), want.dims());
        assert_eq!(cat.to_data(), want.to_data(), "the columns side by side");
        let want = x.narrow(1, 5, 70).into_data();
        assert_eq!(
            slice(&view),
            want.as_slice::<f32>().unwrap(),
            "the view's values"
        );
        let ad = Device::flex().autodiff();
        assert!(cat_columns(&[Tensor::<2>::zeros([2, 3], &ad)]).is_none());
    }
}
