//! Passes of our own over the CPU backend's values, where burn's operations cost more than the
//! work (a chain of strided copies, a scalar libm call per value).

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

/// `f` of `x`'s values (row-major) as a tensor of `shape` on `x`'s device, when `x` holds f32
/// on the CPU backend without autodiff; None elsewhere.
pub(crate) fn on_flex<const D: usize, const E: usize>(
    x: &Tensor<D>,
    shape: [usize; E],
    f: impl FnOnce(&[f32]) -> Vec<f32>,
) -> Option<Tensor<E>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let device = x.device();
    let flex = x.clone().try_into_primitive::<Flex>().ok()?;
    let values = match flex.as_slice::<f32>() {
        Some(values) => f(values),
        None => f(flex.to_contiguous().as_slice::<f32>()?),
    };
    Some(Tensor::from_data(TensorData::new(values, shape), &device))
}
