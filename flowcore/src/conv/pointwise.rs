//! The 1x1 convolution of batch-major images (`[batch, in, h, w]` by a kernel `[out, in, 1, 1]`)
//! on the CPU backend's f32 values, forward and backward, in tiles of whole images
//! ([`super::tiles`]), as one tracked operation that keeps its input and kernel.
//!
//! As burn's batched product (Glow's hidden 1x1 convolution in training), every output was
//! allocated by burn's CPU backend zeroed and then copied into an aligned allocation, in the
//! forward pass and twice in the backward pass: with the page faults those fresh buffers took,
//! a fifth of a Glow 128 training step in the profile.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::prelude::*;

use super::batch_major_cpu::add_abt;
use super::cpu::{slice, tensor, values, with_scratch};
use super::tiles::Tiling;
use crate::flex::{Operand, primitive, product_into_here};

/// `weight [out, in, 1, 1]` applied to every pixel of `x: [batch, in, h, w]`, without bias:
/// one tracked operation with autodiff, a pass over the values without; None where the tensors
/// are not f32 on the CPU backend or the batch gives fewer tiles than threads.
pub(super) fn pointwise_batch_major(weight: &Tensor<4>, x: &Tensor<4>) -> Option<Tensor<4>> {
    if x.device().is_autodiff() {
        tracked::<NoCheckpointing>(weight, x)
            .or_else(|| tracked::<BalancedCheckpointing>(weight, x))
    } else {
        forward(weight, x)
    }
}

/// `[batch, in, plane]` shapes of an input `x` and the kernel's output channels.
fn shapes(weight: &Tensor<4>, x: &Tensor<4>) -> Option<(Tiling, [usize; 3])> {
    let [out, cin, kh, kw] = weight.dims();
    let [batch, channels, h, w] = x.dims();
    if (kh, kw) != (1, 1) || channels != cin {
        return None;
    }
    Some((Tiling::new(batch, h * w)?, [cin, out, h * w]))
}

fn forward(weight: &Tensor<4>, x: &Tensor<4>) -> Option<Tensor<4>> {
    let (tiling, [cin, out, _]) = shapes(weight, x)?;
    let [batch, _, h, w] = x.dims();
    let (wv, xv) = (values(weight)?, values(x)?);
    let (ws, xs) = (slice(&wv), slice(&xv));
    let y = tiling.each(out, |i, tile, y| {
        let n = tile.columns();
        with_scratch((cin + out) * n, |scratch| {
            let (xt, p) = scratch.split_at_mut(cin * n);
            let xt = tile.tile_major(tiling.of(xs, i, cin), cin, xt);
            let a = Operand::rows(ws, cin);
            tile.into_batch_major(p, out, y, |p| {
                product_into_here(p, [out, n, cin], a, Operand::rows(xt, n))
            });
        })
    });
    Some(tensor(y, [batch, out, h, w], &x.device()))
}

/// The gradients by `x` and by `weight` for the output's gradient `gy`, each when asked for.
#[allow(clippy::type_complexity)]
fn backward(
    weight: &Tensor<4>,
    x: &Tensor<4>,
    gy: &Tensor<4>,
    (wants_x, wants_w): (bool, bool),
) -> Option<(Option<Tensor<4>>, Option<Tensor<4>>)> {
    let (tiling, [cin, out, _]) = shapes(weight, x)?;
    let dims = x.dims();
    let device = x.device();
    let (wv, xv, gyv) = (values(weight)?, values(x)?, values(gy)?);
    let (ws, xs, gys) = (slice(&wv), slice(&xv), slice(&gyv));
    let sum_len = wants_w.then_some(out * cin);
    let (gx, gw) = tiling.each_with_sum(wants_x.then_some(cin), sum_len, |i, tile, gx, gw| {
        let n = tile.columns();
        with_scratch((out + 2 * cin) * n + out * cin, |scratch| {
            let (gyt, rest) = scratch.split_at_mut(out * n);
            let (xt, rest) = rest.split_at_mut(cin * n);
            let (p, product) = rest.split_at_mut(cin * n);
            let gyt = tile.tile_major(tiling.of(gys, i, out), out, gyt);
            if let Some(gw) = gw {
                let xt = tile.tile_major(tiling.of(xs, i, cin), cin, xt);
                add_abt(gw, gyt, xt, [out, cin, n], product);
            }
            if let Some(gx) = gx {
                let a = Operand::transposed(ws, cin);
                tile.into_batch_major(p, cin, gx, |p| {
                    product_into_here(p, [cin, n, out], a, Operand::rows(gyt, n))
                });
            }
        })
    });
    let gx = wants_x.then(|| tensor(gx, dims, &device));
    Some((gx, gw.map(|gw| tensor(gw, [out, cin, 1, 1], &device))))
}

fn tracked<C: CheckpointStrategy>(weight: &Tensor<4>, x: &Tensor<4>) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let ax = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let aw = weight
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let plain_x = Tensor::<4>::from_primitive::<Flex>(ax.primitive().clone());
    let plain_w = Tensor::<4>::from_primitive::<Flex>(aw.primitive().clone());
    let y = primitive::<Flex, 4>(forward(&plain_w, &plain_x)?);
    let out =
        match <Pointwise as Backward<Flex, 2>>::prepare::<C>(Pointwise, [ax.node(), aw.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((plain_x, plain_w), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
    Some(Tensor::<4>::from_primitive::<Autodiff<Flex, C>>(out))
}

#[derive(Debug)]
struct Pointwise;

impl Backward<Flex, 2> for Pointwise {
    /// The input and the kernel.
    type State = (Tensor<4>, Tensor<4>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, w_node] = ops.parents;
        let gy = Tensor::<4>::from_primitive::<Flex>(grads.consume::<Flex>(&ops.node));
        let (x, weight) = &ops.state;
        let wants = (x_node.is_some(), w_node.is_some());
        let (gx, gw) =
            backward(weight, x, &gy, wants).expect("the forward pass's shapes and values");
        if let (Some(node), Some(g)) = (x_node, gx) {
            grads.register::<Flex>(node.id, primitive::<Flex, 4>(g));
        }
        if let (Some(node), Some(g)) = (w_node, gw) {
            grads.register::<Flex>(node.id, primitive::<Flex, 4>(g));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    use super::*;
    use crate::conv::pointwise_with;
    use crate::conv::tests::{assert_each_gradient_alone, assert_matches_conv, on_two_threads};

    // On two threads a batch of 5 is tiles of 2, 2 and 1 images (1x1 planes: 2048 per tile
    // by size, 5 / 4 rounded up by count); a batch of 2 is one image per tile, read and written
    // in place.

    #[test]
    fn the_tiled_pointwise_convolution_and_its_gradients_equal_burns() {
        on_two_threads(|| {
            let checkpointing = Device::flex().autodiff().gradient_checkpointing();
            for device in [Device::flex(), Device::flex().autodiff(), checkpointing] {
                for (batch, cin, cout, h, w) in
                    [(5, 3, 8, 4, 6), (5, 16, 3, 1, 1), (2, 4, 5, 16, 16)]
                {
                    let images = Tiling::new(batch, h * w).expect("tiles").images;
                    assert_eq!(images, if h == 16 { 1 } else { 2 }, "the tiling tested");
                    let conv = Conv2dConfig::new([cin, cout], [1, 1]).init(&device);
                    let x = Tensor::<4>::random([batch, cin, h, w], Distribution::Default, &device);
                    let x = if device.is_autodiff() {
                        x.require_grad()
                    } else {
                        x
                    };
                    assert!(
                        pointwise_batch_major(&conv.weight.val(), &x).is_some(),
                        "the tiled path serves"
                    );
                    let bias = conv.bias.as_ref().map(|b| b.val());
                    let ours = pointwise_with(conv.weight.val(), bias, x.clone());
                    let case = format!("{cin}->{cout} at {h}x{w}, batch {batch}");
                    assert_matches_conv(&conv, x, ours, &case);
                }
            }
        });
    }

    #[test]
    fn each_pointwise_gradient_is_right_when_only_it_is_asked_for() {
        on_two_threads(|| {
            let device = Device::flex().autodiff();
            for (cin, cout) in [(3, 8), (8, 3)] {
                let weight = Tensor::<4>::random([cout, cin, 1, 1], Distribution::Default, &device);
                let x = Tensor::<4>::random([5, cin, 4, 5], Distribution::Default, &device);
                let ours = |w, x| pointwise_with(w, None, x);
                let reference = |w, x| {
                    let options = burn::tensor::ops::ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
                    burn::tensor::module::conv2d(x, w, None, options)
                };
                let case = format!("{cin}->{cout}");
                assert_each_gradient_alone(weight, x, ours, reference, &case);
            }
        });
    }
}
