//! Small tensor helpers shared by the layers.
//!
//! Constants made inside a layer take the device and dtype of the tensor they meet: the layers
//! run in f32 for training and in f64 for the numerical-Jacobian check, and burn refuses to mix
//! dtypes in one operation.

use burn::prelude::*;
use burn::tensor::TensorData;

/// Sum over the feature axis of a `[batch, n]` tensor: the per-sample log-det of an
/// elementwise transform.
pub fn row_sum(t: Tensor<2>) -> Tensor<1> {
    t.sum_dim(1).squeeze_dim::<1>(1)
}

/// `parts` side by side along the feature axis, `Tensor::cat(parts, 1)`: on the CPU backend
/// without autodiff, rows copied on all the cores.
pub(crate) fn cat_features(parts: Vec<Tensor<2>>) -> Tensor<2> {
    crate::flex::cat_columns(&parts).unwrap_or_else(|| Tensor::cat(parts, 1))
}

/// A `[batch]` tensor of zeros shaped and typed like the batch of `x`.
pub fn zero_logdet(x: &Tensor<2>) -> Tensor<1> {
    let [batch, _] = x.dims();
    Tensor::<1>::zeros([batch], &x.device()).cast(x.dtype())
}

/// A float constant of the given shape on the device and in the dtype of `like`.
pub fn constant<const D: usize, const L: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    like: &Tensor<L>,
) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(values, shape), &like.device()).cast(like.dtype())
}

/// Integer indices on the device of `like`, for `select`.
pub fn indices<const L: usize>(idx: &[usize], like: &Tensor<L>) -> Tensor<1, Int> {
    let values: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(values, [idx.len()]), &like.device())
}

/// A scalar log-det shared by every sample, broadcast to `[batch]`.
pub fn broadcast_logdet(logdet: Tensor<1>, batch: usize) -> Tensor<1> {
    logdet.expand([batch])
}

/// `a [m, k] x b [n, k]^T`, the weight-gradient product of a layer (`gy x columns^T`), computed
/// as `(b a^T)^T` when `a` has the fewer rows: gemm's AVX-512 kernels run this layout (a
/// row-major output over a transposed right operand) at a fraction of their speed when the
/// output has few rows, e.g. 12 GFLOP/s against 63 at 8 x 72 x 16384 and 179 against 269 at
/// 64 x 576 x 1568 (one core of the AMD EPYC CI machine). Past a few hundred rows both
/// orientations run near the peak.
pub fn matmul_transposed(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let (m, n) = (a.dims()[0], b.dims()[0]);
    if m < n && m <= 256 {
        matmul(b, a.transpose()).transpose()
    } else {
        matmul(a, b.transpose())
    }
}

/// `a [m, k] x b [k, n]`; large products of plain CPU tensors on all the rayon threads.
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    crate::flex::parallel_matmul(&a, &b).unwrap_or_else(|| a.matmul(b))
}
