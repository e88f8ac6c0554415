//! Matrix products through gemm over the CPU backend's values, split over the cores by whole
//! output columns or rows.

use burn::backend::{BackendTypes, Flex};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

/// Products of at least this many multiply-adds are split over the rayon threads when the
/// caller is one of them (the binaries' main thread is: [`crate::threads::join_pool`]);
/// it then works on a part itself and the other cores steal the rest. Measured in paired runs
/// on 2 cores: phi4-8x8 training 42 -> 51 steps/s against 16M, the other cases unchanged.
const PARALLEL_PRODUCT_IN_POOL: usize = 1 << 20;

/// The threshold for callers outside the pool (burn's CPU backend's own is 192^3): each split
/// hands the work to the pool's threads and sleeps until they are done, two wake-ups, and the
/// lattice network's 8 x 72 x 16384 products ran slower that way.
const PARALLEL_PRODUCT: usize = 16 << 20;

/// `a [m, k] x b [k, n]` on all of rayon's threads, when both hold f32 on the CPU backend
/// without autodiff and the product is large; None elsewhere. Views (transposes, narrowed
/// kernels) are read through their strides, as burn's own product reads them.
///
/// burn's CPU backend splits products only from 192^3 multiply-adds (with its `rayon`
/// feature); the conv FFJORD's (64 x 576 x 1568) and the lattice network's (8 x 72 x 16384)
/// are below that, and run about 1.7x faster on two cores.
pub(crate) fn parallel_matmul(a: &Tensor<2>, b: &Tensor<2>) -> Option<Tensor<2>> {
    let ([m, k], n) = (a.dims(), b.dims()[1]);
    if !parallel(m, n, k) || a.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return None;
    }
    let device = a.device();
    let fa = a.clone().try_into_primitive::<Flex>().ok()?;
    let fb = b.clone().try_into_primitive::<Flex>().ok()?;
    let out = product([m, n, k], operand(&fa)?, operand(&fb)?);
    Some(Tensor::from_data(TensorData::new(out, [m, n]), &device))
}

/// A 2-D tensor of the CPU backend as an operand, read through its layout.
pub(super) fn operand(f: &<Flex as BackendTypes>::FloatTensorPrimitive) -> Option<Operand<'_>> {
    let (strides, offset) = (f.layout().strides(), f.layout().start_offset());
    if strides.iter().any(|&s| s < 0) {
        return None;
    }
    Some(Operand::new(
        &f.storage::<f32>()[offset..],
        strides[0],
        strides[1],
    ))
}

/// Whether an `m x k` by `k x n` product is worth splitting over the threads.
pub(crate) fn parallel(m: usize, n: usize, k: usize) -> bool {
    let threshold = match rayon::current_thread_index() {
        Some(_) => PARALLEL_PRODUCT_IN_POOL,
        None => PARALLEL_PRODUCT,
    };
    m.saturating_mul(n).saturating_mul(k) >= threshold && rayon::current_num_threads() > 1
}

/// A matrix operand of [`product`]: values read at `row * row_stride + col * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub(super) values: &'a [f32],
    pub(super) row_stride: isize,
    pub(super) col_stride: isize,
}

impl<'a> Operand<'a> {
    pub(crate) fn new(values: &'a [f32], row_stride: isize, col_stride: isize) -> Self {
        Self {
            values,
            row_stride,
            col_stride,
        }
    }

    /// A row-major `rows x cols` matrix.
    pub(crate) fn rows(values: &'a [f32], cols: usize) -> Self {
        Self::new(values, cols as isize, 1)
    }

    /// The transpose of a row-major matrix of `cols` columns.
    pub(crate) fn transposed(values: &'a [f32], cols: usize) -> Self {
        Self::new(values, 1, cols as isize)
    }

    /// The operand from row `i`, column `j` on.
    fn from(&self, i: usize, j: usize) -> Self {
        let at = i * self.row_stride as usize + j * self.col_stride as usize;
        Self::new(&self.values[at..], self.row_stride, self.col_stride)
    }

    /// Panics unless every value of a `rows x cols` matrix lies inside the slice.
    fn check(&self, rows: usize, cols: usize) {
        let last = |n: usize, s: isize| n.saturating_sub(1) * s.unsigned_abs();
        let needed = last(rows, self.row_stride) + last(cols, self.col_stride);
        assert!(
            self.row_stride >= 0
                && self.col_stride >= 0
                && (rows * cols == 0 || needed < self.values.len()),
            "a {rows} x {cols} operand outside its {} values",
            self.values.len()
        );
    }
}

/// `a [m, k] x b [k, n]` as a row-major `m x n` vector, on all of rayon's threads when large.
pub(crate) fn product(mnk: [usize; 3], a: Operand, b: Operand) -> Vec<f32> {
    let [m, n, k] = mnk;
    let mut out = Vec::<f32>::with_capacity(m * n);
    // SAFETY: the capacity holds the m x n output, which gemm writes whole (read_dst is
    // false), so the length is set over written memory only.
    unsafe {
        gemm_into(out.as_mut_ptr(), mnk, a, b, parallel(m, n, k));
        out.set_len(m * n);
    }
    out
}

/// [`product`] into the first `m n` values of `dst`.
pub(crate) fn product_into(dst: &mut [f32], mnk: [usize; 3], a: Operand, b: Operand) {
    let [m, n, _] = mnk;
    assert!(
        dst.len() >= m * n,
        "a {m} x {n} product into {} values",
        dst.len()
    );
    let split = parallel(m, n, mnk[2]);
    // SAFETY: `dst` holds the m x n output.
    unsafe { gemm_into(dst.as_mut_ptr(), mnk, a, b, split) }
}

/// [`product_into`] on the calling thread only, for work already split over the threads.
pub(crate) fn product_into_here(dst: &mut [f32], mnk: [usize; 3], a: Operand, b: Operand) {
    let [m, n, _] = mnk;
    assert!(
        dst.len() >= m * n,
        "a {m} x {n} product into {} values",
        dst.len()
    );
    // SAFETY: `dst` holds the m x n output.
    unsafe { gemm_into(dst.as_mut_ptr(), mnk, a, b, false) }
}

/// [`product_into`] into memory not yet written, on all of rayon's threads when `split`, else
/// on the calling thread: the `m n` values it returns.
pub(crate) fn product_into_uninit<'a>(
    dst: &'a mut [std::mem::MaybeUninit<f32>],
    mnk: [usize; 3],
    a: Operand,
    b: Operand,
    split: bool,
) -> &'a mut [f32] {
    let [m, n, _] = mnk;
    assert!(
        dst.len() >= m * n,
        "a {m} x {n} product into {} values",
        dst.len()
    );
    // SAFETY: `dst` holds the m x n output, which gemm writes whole (read_dst is false), so
    // its first m n values are initialised when read back.
    unsafe {
        gemm_into(dst.as_mut_ptr().cast(), mnk, a, b, split);
        std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast(), m * n)
    }
}

/// # Safety
/// `dst` must be valid for writes of `m n` values.
unsafe fn gemm_into(dst: *mut f32, [m, n, k]: [usize; 3], a: Operand, b: Operand, split: bool) {
    a.check(m, k);
    b.check(k, n);
    let threads = rayon::current_num_threads();
    let out = Output(dst, n);
    if split && threads > 1 && n >= threads * SPLIT_COLUMNS {
        // Each thread takes whole columns of the output: gemm's own split hands every thread
        // all of `b`, which it repacks in each, and the caller repacks a transposed `b`
        // alone before the others start.
        let part = n.div_ceil(threads).next_multiple_of(16);
        (0..n.div_ceil(part)).into_par_iter().for_each(|p| {
            let (j, cols) = (p * part, part.min(n - p * part));
            // SAFETY: the parts' columns are disjoint and inside the output.
            unsafe { out.at(0, j).gemm([m, cols, k], a, b.from(0, j), false) }
        });
    } else if split && threads > 1 && m >= threads * SPLIT_ROWS {
        let part = m.div_ceil(threads);
        (0..m.div_ceil(part)).into_par_iter().for_each(|p| {
            let (i, rows) = (p * part, part.min(m - p * part));
            // SAFETY: the parts' rows are disjoint and inside the output.
            unsafe { out.at(i, 0).gemm([rows, n, k], a.from(i, 0), b, false) }
        });
    } else {
        // SAFETY: the caller gives the output.
        unsafe { out.gemm([m, n, k], a, b, split) }
    }
}

/// The least columns per thread for which [`gemm_into`] splits a product by columns.
const SPLIT_COLUMNS: usize = 64;
/// The least rows per thread for which [`gemm_into`] splits a product by rows.
const SPLIT_ROWS: usize = 16;

/// A row-major output of rows of `.1` values, written from several threads in disjoint parts.
#[derive(Clone, Copy)]
struct Output(*mut f32, usize);

// SAFETY: the threads write disjoint parts of the output.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

impl Output {
    /// The output from row `i`, column `j` on.
    ///
    /// # Safety
    /// The position must lie inside the output.
    unsafe fn at(self, i: usize, j: usize) -> Self {
        // SAFETY: the caller keeps the position inside the output.
        Self(unsafe { self.0.add(i * self.1 + j) }, self.1)
    }

    /// `a [m, k] x b [k, n]` written over the output's first `m` rows' first `n` values.
    ///
    /// # Safety
    /// Those values must be valid for writes.
    unsafe fn gemm(self, [m, n, k]: [usize; 3], a: Operand, b: Operand, split: bool) {
        let parallelism = if split {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the operands' `check` keeps every value read inside their slices; the caller
        // gives the output.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                self.0,
                1,
                self.1 as isize,
                false,
                a.values.as_ptr(),
                a.col_stride,
                a.row_stride,
                b.values.as_ptr(),
                b.col_stride,
                b.row_stride,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a [m, k] x b^T` (b stored `[n, k]`) summed in f64, row-major `m x n`.
    fn reference(a: &[f32], b: &[f32], [m, n, k]: [usize; 3]) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|l| a[i * k + l] as f64 * b[j * k + l] as f64)
                    .sum();
                out[i * n + j] = dot as f32;
            }
        }
        out
    }

    #[test]
    fn products_split_inside_the_pool_equal_the_sums() {
        // Above the in-pool threshold, below the outer one: split by columns (two parts of
        // 80 and 50), by rows, and by gemm itself; `a` read with rows longer than `k`, `b`
        // transposed.
        for mnk @ [m, n, k] in [[96, 130, 100], [200, 40, 150], [20, 100, 600]] {
            assert!(m * n * k >= PARALLEL_PRODUCT_IN_POOL && m * n * k < PARALLEL_PRODUCT);
            let value = |i: usize| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5;
            let a: Vec<f32> = (0..m * k).map(value).collect();
            let wide: Vec<f32> = a
                .chunks(k)
                .flat_map(|r| r.iter().chain(&[9.0; 3]))
                .copied()
                .collect();
            let b: Vec<f32> = (0..n * k).map(|i| value(i + 17)).collect();
            let expected = reference(&a, &b, mnk);
            let operands = || {
                (
                    Operand::new(&wide, k as isize + 3, 1),
                    Operand::transposed(&b, k),
                )
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let split = pool.install(|| {
                assert!(
                    parallel(m, n, k),
                    "a product this large is split in the pool"
                );
                let (a, b) = operands();
                product(mnk, a, b)
            });
            assert!(
                !parallel(m, n, k),
                "outside the pool it stays on the caller"
            );
            let (a, b) = operands();
            let whole = product(mnk, a, b);
            for (got, what) in [(split, "split"), (whole, "whole")] {
                let d = got
                    .iter()
                    .zip(&expected)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(d < 1e-4, "the {what} {mnk:?} product differs by {d}");
            }
        }
    }
}
