//! Matrix products with a narrow side, row by row: a coupling of 2-D points has a first layer
//! of one input and a last layer of two outputs. gemm's kernels work in tiles of 16 rows, so a
//! product whose output or inner size is 2 ran at an eighth of their speed (the x1x6 kernels,
//! 5.3% of the 2-D RealNVP's training step, for a fiftieth of its multiply-adds).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::simd::widest;

/// The widest side taken row by row.
pub(super) const NARROW: usize = 4;

/// Whether `a [rows, k] x b [k, n]` has a narrow side: [`product_into`] computes it.
pub(super) fn is_narrow(n: usize, k: usize) -> bool {
    k > 0 && (k <= NARROW || n <= NARROW)
}

/// `b [rows, cols]` transposed, row-major.
pub(super) fn transposed(b: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|j| (0..rows).map(move |i| b[i * cols + j]))
        .collect()
}

/// `a [rows, k] x b [k, n]` written into `out` (`rows n` values), for [`is_narrow`] sizes;
/// `bt` is `b` transposed (`[n, k]`). A narrow inner size adds `k` scaled rows of `b` per row,
/// a narrow output takes `n` dot products per row.
pub(super) fn product_into<'a>(
    out: &'a mut [MaybeUninit<f32>],
    a: &[f32],
    (b, bt): (&[f32], &[f32]),
    [rows, n, k]: [usize; 3],
) -> &'a mut [f32] {
    assert!(is_narrow(n, k) && out.len() == rows * n && a.len() == rows * k);
    widest(
        #[inline(always)]
        || narrow_product(out, a, (b, bt), [n, k]),
    )
}

#[inline(always)]
fn narrow_product<'a>(
    out: &'a mut [MaybeUninit<f32>],
    a: &[f32],
    (b, bt): (&[f32], &[f32]),
    [n, k]: [usize; 2],
) -> &'a mut [f32] {
    if k <= NARROW {
        for (row, a) in out.chunks_exact_mut(n.max(1)).zip(a.chunks_exact(k)) {
            for (v, b) in row.iter_mut().zip(b) {
                v.write(a[0] * b);
            }
        }
    } else {
        for (row, a) in out.chunks_exact_mut(n.max(1)).zip(a.chunks_exact(k)) {
            for (v, bt) in row.iter_mut().zip(bt.chunks_exact(k)) {
                v.write(dot(a, bt));
            }
        }
    }
    // SAFETY: every value of `out`'s `rows` rows of `n` was written above.
    let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
    if k <= NARROW {
        for (row, a) in out.chunks_exact_mut(n.max(1)).zip(a.chunks_exact(k)) {
            for (c, b) in b.chunks_exact(n).enumerate().skip(1) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += a[c] * b);
            }
        }
    }
    out
}

/// The fewest multiply-adds of a narrow product worth splitting over the threads, and the
/// fewest rows of a part. These loops run at memory speed, not gemm's, and need no packing: the
/// 2-D RealNVP's first and last layers (1024 x 128 x 1 and 1024 x 2 x 128) ran on the calling
/// thread while the other core waited, a fifth of that thread's time in the training step.
const PARALLEL_MULTIPLY_ADDS: usize = 1 << 16;
const MIN_PART_ROWS: usize = 32;

/// Whether `rows` rows of `per_row` multiply-adds each are worth splitting over the threads:
/// only from inside the pool (from outside, each split is two wake-ups; see
/// [`crate::flex::parallel`]).
pub(super) fn worth_splitting(rows: usize, per_row: usize) -> bool {
    let threads = rayon::current_num_threads();
    rayon::current_thread_index().is_some()
        && threads > 1
        && rows.saturating_mul(per_row) >= PARALLEL_MULTIPLY_ADDS
        && rows / threads >= MIN_PART_ROWS
}

/// `sum_i a_i^T b_i` of `a [rows, ka]` and `b [rows, kb]`: `[ka, kb]` row-major, `ka` narrow
/// (a layer's kernel gradient `x^T gz` with one side narrow), in parts of `part_rows` rows
/// summed in parallel.
pub(super) fn outer_sum(a: &[f32], ka: usize, b: &[f32], kb: usize, part_rows: usize) -> Vec<f32> {
    let part_rows = part_rows.max(1);
    a.par_chunks(ka.max(1) * part_rows)
        .zip(b.par_chunks(kb.max(1) * part_rows))
        .map(|(a, b)| {
            let mut sum = vec![0.0f32; ka * kb];
            widest(
                #[inline(always)]
                || {
                    for (a, b) in a.chunks_exact(ka).zip(b.chunks_exact(kb)) {
                        for (a, sum) in a.iter().zip(sum.chunks_exact_mut(kb)) {
                            sum.iter_mut().zip(b).for_each(|(s, b)| *s += a * b);
                        }
                    }
                },
            );
            sum
        })
        .reduce(
            || vec![0.0f32; ka * kb],
            |mut acc, part| {
                acc.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
                acc
            },
        )
}

/// `a . b` in sixteen lanes, so that it runs in vector registers.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    let mut lanes = [0.0f32; LANES];
    for (a, b) in ac.zip(bc) {
        for l in 0..LANES {
            lanes[l] += a[l] * b[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_products_equal_the_sums() {
        let value = |i: usize| ((i * 37 % 23) as f32 - 11.0) / 7.0;
        // Narrow inner sizes, narrow outputs (with a tail past the lanes), both.
        for [rows, n, k] in [
            [5, 9, 1],
            [3, 33, 4],
            [9, 2, 37],
            [6, 1, 16],
            [2, 3, 3],
            [5, 4, 20],
            [7, 3, 5],
        ] {
            let a: Vec<f32> = (0..rows * k).map(value).collect();
            let b: Vec<f32> = (0..k * n).map(|i| value(i + 5)).collect();
            let bt = transposed(&b, k, n);
            let expected = |i: usize, j: usize| (0..k).map(|c| a[i * k + c] * b[c * n + j]).sum();
            let mut out = vec![MaybeUninit::uninit(); rows * n];
            let got = product_into(&mut out, &a, (&b, &bt), [rows, n, k]).to_vec();
            let sums = outer_sum(&a, k, &a, k, 2);
            for i in 0..rows {
                for j in 0..n {
                    let e: f32 = expected(i, j);
                    assert!(
                        (got[i * n + j] - e).abs() < 1e-4,
                        "{rows}x{n}x{k} at {i},{j}"
                    );
                }
            }
            for c in 0..k {
                for d in 0..k {
                    let e: f32 = (0..rows).map(|i| a[i * k + c] * a[i * k + d]).sum();
                    assert!((sums[c * k + d] - e).abs() < 1e-4, "outer sum {c},{d}");
                }
            }
        }
    }
}
