//! The channel-major 3x3 convolution on the CPU backend's f32 values, forward and backward:
//! the columns (or a product's nine tap blocks) are built in a buffer kept on the thread
//! across calls, and the products run on all of rayon's threads ([`crate::flex::product`]).
//!
//! Built as burn tensors, the columns of a 64-channel layer of the conv FFJORD (3.6 MB) were
//! fresh pages at every call, zeroed by the kernel: 8-11% of a training step.

use std::cell::RefCell;

use burn::prelude::*;

use super::im2col::{columns_into, shift_sum_into};
use super::kernel_layout;
use crate::flex::{Operand, product, product_into};

/// The convolution of [`super::channel_major`]'s `forward`, when both tensors hold f32 on the
/// CPU backend without autodiff; None elsewhere.
pub(super) fn forward(weight: &Tensor<4>, x: &Tensor<4>) -> Option<Tensor<4>> {
    let [out, channels, _, _] = weight.dims();
    let dims @ [_, batch, h, w] = x.dims();
    let n = batch * h * w;
    let xv = values(x)?;
    let y = if channels <= out {
        let w2 = kernel_layout::taps_inner(slice(&values(weight)?), [out, channels]);
        with_scratch(9 * channels * n, |cols| {
            columns_into(slice(&xv), dims, cols);
            let (a, b) = (Operand::rows(&w2, 9 * channels), Operand::rows(cols, n));
            product([out, n, 9 * channels], a, b)
        })
    } else {
        let w9 = kernel_layout::taps_outer(slice(&values(weight)?), [out, channels]);
        with_scratch(9 * out * n, |p| {
            let (a, b) = (Operand::rows(&w9, channels), Operand::rows(slice(&xv), n));
            product_into(p, [9 * out, n, channels], a, b);
            let mut y = vec![0.0; out * n];
            shift_sum_into(p, [out, batch, h, w], false, &mut y);
            y
        })
    };
    Some(tensor(y, [out, batch, h, w], &x.device()))
}

/// The gradients of [`forward`] by `x` and by `weight`, each when asked for (the kernel's as a
/// view); None where [`forward`] is.
#[allow(clippy::type_complexity)]
pub(super) fn backward(
    weight: &Tensor<4>,
    x: &Tensor<4>,
    gy: &Tensor<4>,
    (wants_x, wants_w): (bool, bool),
) -> Option<(Option<Tensor<4>>, Option<Tensor<4>>)> {
    let [out, channels, _, _] = weight.dims();
    let dims @ [_, batch, h, w] = x.dims();
    let n = batch * h * w;
    let device = x.device();
    let (xv, gyv) = (values(x)?, values(gy)?);
    if channels <= out {
        let gw = wants_w.then(|| {
            with_scratch(9 * channels * n, |cols| {
                columns_into(slice(&xv), dims, cols);
                weight_gradient(slice(&gyv), cols, [out, 9 * channels, n], &device)
            })
            .reshape([out, 3, 3, channels])
            .permute([0, 3, 1, 2])
        });
        let gx = if wants_x {
            let w2 = kernel_layout::taps_inner(slice(&values(weight)?), [out, channels]);
            Some(with_scratch(9 * channels * n, |p| {
                let a = Operand::transposed(&w2, 9 * channels);
                product_into(p, [9 * channels, n, out], a, Operand::rows(slice(&gyv), n));
                let mut gx = vec![0.0; channels * n];
                shift_sum_into(p, [channels, batch, h, w], true, &mut gx);
                tensor(gx, dims, &device)
            }))
        } else {
            None
        };
        Some((gx, gw))
    } else {
        // Row t' out + o of the gradient's columns meets tap 8 - t' of the kernel.
        let flipped = kernel_layout::flipped_taps(slice(&values(weight)?), [out, channels]);
        Some(with_scratch(9 * out * n, |cols| {
            columns_into(slice(&gyv), [out, batch, h, w], cols);
            let gw = wants_w.then(|| {
                weight_gradient(cols, slice(&xv), [9 * out, channels, n], &device)
                    .reshape([3, 3, out, channels])
                    .flip([0, 1])
                    .permute([2, 3, 0, 1])
            });
            let gx = wants_x.then(|| {
                let a = Operand::rows(&flipped, 9 * out);
                let gx = product([channels, n, 9 * out], a, Operand::rows(cols, n));
                tensor(gx, dims, &device)
            });
            (gx, gw)
        }))
    }
}

/// `a [m, n] x b [k, n]^T` as an `m x k` tensor, computed as `(b a^T)^T` when `a` has the
/// fewer rows (see [`crate::tensor_util::matmul_transposed`] for gemm's slow orientation).
fn weight_gradient(a: &[f32], b: &[f32], [m, k, n]: [usize; 3], device: &Device) -> Tensor<2> {
    if m < k && m <= 256 {
        let bat = product([k, m, n], Operand::rows(b, n), Operand::transposed(a, n));
        tensor(bat, [k, m], device).transpose()
    } else {
        let abt = product([m, k, n], Operand::rows(a, n), Operand::transposed(b, n));
        tensor(abt, [m, k], device)
    }
}

/// The most values the kept buffer grows to (32 MiB); larger work gets a buffer of its own.
const SCRATCH_LIMIT: usize = (32 << 20) / std::mem::size_of::<f32>();

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `f` of a buffer of `len` values, the thread's kept one where it is free and not too large.
/// Its values on entry are unspecified.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) if len <= SCRATCH_LIMIT => {
            if kept.len() < len {
                kept.resize(len, 0.0);
            }
            f(&mut kept[..len])
        }
        _ => f(&mut vec![0.0; len]),
    })
}

pub(super) use crate::flex::{slice, tensor, values};
