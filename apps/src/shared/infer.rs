//! Inference helpers shared by the applications: per-sample log-densities in chunks, without
//! gradients, and tensors back to plain vectors.

use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::Flow;

/// Rows per forward pass when evaluating many samples.
const CHUNK: usize = 1024;

/// `log p(x)` in nats of every row of `values` (`[n, dim]`).
pub fn log_prob_rows(flow: &Flow, values: &[f32], dim: usize, device: &Device) -> Vec<f32> {
    let n = values.len() / dim;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - start);
        let x = rows(&values[start * dim..(start + m) * dim], dim, device);
        out.extend(to_vec(flow.log_prob(x, None).into_data()));
    }
    out
}

/// `z = f(x)` of every row of `values`.
pub fn encode_rows(flow: &Flow, values: &[f32], dim: usize, device: &Device) -> Vec<f32> {
    let n = values.len() / dim;
    let mut out = Vec::with_capacity(values.len());
    for start in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - start);
        let x = rows(&values[start * dim..(start + m) * dim], dim, device);
        out.extend(to_vec(flow.encode(x, None).into_data()));
    }
    out
}

/// A `[n, dim]` tensor of row-major values.
pub fn rows(values: &[f32], dim: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(
        TensorData::new(values.to_vec(), [values.len() / dim, dim]),
        device,
    )
}

/// A tensor's values as `f32`.
pub fn to_vec(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}
