//! Passes of our own over the CPU backend's values, where burn's operations cost more than the
//! work (a chain of strided copies, a scalar libm call per value).

use burn::backend::{BackendTypes, Flex};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

mod product;
mod rows;

use product::operand;
pub(crate) use product::{
    Operand, parallel, parallel_matmul, product, product_into, product_into_here,
    product_into_uninit,
};
use rows::{Columns, side_by_side};
pub(crate) use rows::{cat_columns, contiguous, transpose_into, transposed};

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

pub(crate) type Values = <Flex as BackendTypes>::FloatTensorPrimitive;

/// The contiguous f32 values of a CPU-backend tensor without autodiff.
pub(crate) fn values<const D: usize>(t: &Tensor<D>) -> Option<Values> {
    if t.dtype() != DType::F32 {
        return None;
    }
    let flex = t.clone().try_into_primitive::<Flex>().ok()?;
    if flex.as_slice::<f32>().is_some() {
        return Some(flex);
    }
    if let Some(part) = Columns::of_rows(&flex, &t.dims()) {
        let copy = side_by_side(t.dims()[0], &[part]);
        return tensor(copy, t.dims(), &t.device())
            .try_into_primitive::<Flex>()
            .ok();
    }
    Some(flex.to_contiguous())
}

pub(crate) fn slice(values: &Values) -> &[f32] {
    values
        .as_slice::<f32>()
        .expect("`values` gives contiguous f32")
}

pub(crate) fn tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A tensor's primitive on backend `B`, where an operation's own tensors are by construction.
pub(crate) fn primitive<B: burn::backend::Backend, const D: usize>(
    t: Tensor<D>,
) -> B::FloatTensorPrimitive
where
    burn::backend::DispatchTensor: burn::backend::DispatchKindConversion<B>,
{
    t.try_into_primitive::<B>()
        .expect("an operation's tensors stay on their backend")
}
