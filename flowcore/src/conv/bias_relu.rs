//! `relu(x + bias)` over the channels of batch-major images, as one tracked operation on the
//! CPU backend's f32 values that keeps only its output: the output alone says where the ReLU
//! was open. Composed of burn's broadcast add, ReLU, the ReLU's masked backward pass and the
//! bias gradient's sums over three dimensions, Glow's hidden layers took four passes forward
//! and four backward over each activation, on the calling thread.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::prelude::*;
use burn::tensor::activation::relu;
use rayon::prelude::*;

use crate::flex::{primitive, slice, tensor, values};
use crate::simd::widest;

/// Planes per parallel task: about 16 K values.
fn planes_per_task(plane: usize) -> usize {
    ((16 << 10) / plane.max(1)).max(1)
}

/// `relu(x + bias)` for `x: [batch, channels, h, w]` and `bias: [channels]`.
pub(crate) fn bias_relu(x: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    let Some(bias) = bias else {
        return relu(x);
    };
    if x.device().is_autodiff()
        && let Some(y) = tracked::<NoCheckpointing>(&x, &bias)
            .or_else(|| tracked::<BalancedCheckpointing>(&x, &bias))
    {
        return y;
    }
    composed(x, bias)
}

fn composed(x: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    let channels = bias.dims()[0];
    relu(x + bias.reshape([1, channels, 1, 1]))
}

/// `relu(x + b)` of contiguous batch-major values, `channels` planes of `plane` values per
/// image.
fn forward_values(x: &[f32], b: &[f32], plane: usize) -> Vec<f32> {
    let channels = b.len();
    let mut y = Vec::<f32>::with_capacity(x.len());
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(plane.max(1))
        .zip(x.par_chunks(plane.max(1)))
        .enumerate()
        .with_min_len(planes_per_task(plane))
        .for_each(|(i, (y, x))| {
            let b = b[i % channels];
            widest(
                #[inline(always)]
                || {
                    for (y, x) in y.iter_mut().zip(x) {
                        y.write((x + b).max(0.0));
                    }
                },
            )
        });
    // SAFETY: the planes above wrote every one of the `x.len()` values.
    unsafe { y.set_len(x.len()) };
    y
}

/// The gradients by `x` and by the bias for the output `y` and its gradient `gy`: `gy` where
/// the ReLU was open, and its sum per channel.
fn backward_values(y: &[f32], gy: &[f32], channels: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    let mut gx = Vec::<f32>::with_capacity(y.len());
    let sums: Vec<f32> = gx.spare_capacity_mut()[..y.len()]
        .par_chunks_mut(plane.max(1))
        .zip(y.par_chunks(plane.max(1)).zip(gy.par_chunks(plane.max(1))))
        .with_min_len(planes_per_task(plane))
        .map(|(gx, (y, gy))| {
            widest(
                #[inline(always)]
                || open_gradient(gx, y, gy),
            )
        })
        .collect();
    // SAFETY: every plane above wrote its values.
    unsafe { gx.set_len(y.len()) };
    let mut gb = vec![0.0f32; channels];
    for (i, s) in sums.iter().enumerate() {
        gb[i % channels] += s;
    }
    (gx, gb)
}

/// `gy` where `y > 0`, else 0, into `gx`; returns its sum.
#[inline(always)]
fn open_gradient(gx: &mut [MaybeUninit<f32>], y: &[f32], gy: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0.0f32; LANES];
    let chunks = gx
        .chunks_mut(LANES)
        .zip(y.chunks(LANES))
        .zip(gy.chunks(LANES));
    for ((gx, y), gy) in chunks {
        for (l, ((gx, &y), &gy)) in gx.iter_mut().zip(y).zip(gy).enumerate() {
            let g = if y > 0.0 { gy } else { 0.0 };
            gx.write(g);
            lanes[l] += g;
        }
    }
    lanes.iter().sum()
}

fn tracked<C: CheckpointStrategy>(x: &Tensor<4>, bias: &Tensor<1>) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let dims @ [_, channels, h, w] = x.dims();
    if bias.dims()[0] != channels {
        return None;
    }
    let ax = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let ab = bias
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let plain_x = Tensor::<4>::from_primitive::<Flex>(ax.primitive().clone());
    let device = plain_x.device();
    let xv = values(&plain_x)?;
    let bv = values(&Tensor::<1>::from_primitive::<Flex>(ab.primitive().clone()))?;
    let y = forward_values(slice(&xv), slice(&bv), h * w);
    drop((plain_x, xv));
    let y = primitive::<Flex, 4>(tensor(y, dims, &device));
    let out = match <BiasRelu as Backward<Flex, 2>>::prepare::<C>(BiasRelu, [ax.node(), ab.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(y.clone(), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Some(Tensor::<4>::from_primitive::<Autodiff<Flex, C>>(out))
}

#[derive(Debug)]
struct BiasRelu;

impl Backward<Flex, 2> for BiasRelu {
    /// The output.
    type State = <Flex as burn::backend::BackendTypes>::FloatTensorPrimitive;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, bias_node] = ops.parents;
        let gy = Tensor::<4>::from_primitive::<Flex>(grads.consume::<Flex>(&ops.node));
        let y = Tensor::<4>::from_primitive::<Flex>(ops.state);
        let dims @ [_, channels, h, w] = y.dims();
        let device = y.device();
        let (yv, gyv) = (values(&y), values(&gy));
        let (yv, gyv) = (
            yv.expect("the activation's f32 values"),
            gyv.expect("the gradient's f32 values"),
        );
        let (gx, gb) = backward_values(slice(&yv), slice(&gyv), channels, h * w);
        if let Some(node) = bias_node {
            let gb = tensor(gb, [channels], &device);
            grads.register::<Flex>(node.id, primitive::<Flex, 1>(gb));
        }
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, primitive::<Flex, 4>(tensor(gx, dims, &device)));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn bias_relu_equals_burns_add_and_relu_and_their_gradients() {
        let checkpointing = Device::flex().autodiff().gradient_checkpointing();
        for device in [Device::flex(), Device::flex().autodiff(), checkpointing] {
            // Planes of 8 and of 1 value, many planes per task and one.
            for dims in [[3, 5, 4, 2], [2, 3, 1, 1], [2, 4, 130, 130]] {
                let normal = Distribution::Normal(0.0, 1.0);
                let track = |t: Tensor<1>| {
                    if device.is_autodiff() {
                        t.require_grad()
                    } else {
                        t
                    }
                };
                // One value far below any bias, so that even the case of six values has a
                // closed ReLU (drawn alone, all six were open once in 64 runs).
                let x = Tensor::<4>::random(dims, normal, &device).slice_assign(
                    [0..1, 0..1, 0..1, 0..1],
                    Tensor::from_floats([[[[-10.0]]]], &device),
                );
                let x = if device.is_autodiff() {
                    x.require_grad()
                } else {
                    x
                };
                let b = track(Tensor::<1>::random([dims[1]], normal, &device));
                let weights = Tensor::<4>::random(dims, normal, &device);
                // Doubled first so that the operation's input is an intermediate, as in a
                // network.
                let ours = bias_relu(x.clone() * 2.0, Some(b.clone()));
                let theirs = composed(x.clone() * 2.0, b.clone());
                let d = (ours.clone() - theirs.clone())
                    .abs()
                    .max()
                    .into_scalar::<f32>();
                assert!(d == 0.0, "{dims:?}: outputs differ by {d}");
                if !device.is_autodiff() {
                    continue;
                }
                let g_ours = (ours * weights.clone()).sum().backward();
                let g_theirs = (theirs * weights).sum().backward();
                let channels = dims[1];
                for (what, a, b) in [
                    (
                        "input",
                        x.grad(&g_ours).unwrap(),
                        x.grad(&g_theirs).unwrap(),
                    ),
                    (
                        "bias",
                        b.grad(&g_ours).unwrap().reshape([1, channels, 1, 1]),
                        b.grad(&g_theirs).unwrap().reshape([1, channels, 1, 1]),
                    ),
                ] {
                    let d = (a - b.clone()).abs().max().into_scalar::<f32>();
                    let size = b.abs().max().into_scalar::<f32>().max(1.0);
                    assert!(d < 1e-5 * size, "{dims:?}: {what} gradients differ by {d}");
                }
            }
        }
    }
}
