//! 3x3 "same" convolutions on channel-major images (`[channels, batch, h, w]`), as one matrix
//! product over the whole batch: `[out, 9 in] x [9 in, batch h w]`. Batch-major images give one
//! small product per image, `[out, 9 in] x [9 in, h w]`, which does not get faster with the
//! batch; on the 7x7 planes of application 2's continuous flow that product is 64 x 144 x 49.
//!
//! With autodiff the convolution is one operation of burn's autodiff backend with a backward
//! pass of its own (as [`crate::ode::adjoint`] registers the adjoint solve): composed of pads,
//! slices and a concatenation, its backward pass wrote nine zeroed padded copies of the input
//! and summed them, a fifth of a training step in the profile. It keeps only its input and
//! kernel, and builds the columns again when the gradients are asked for.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Backend, DispatchKindConversion, DispatchTensor, Flex};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

use super::contiguous;
use super::im2col::{columns, shift_sum};
use crate::flex::primitive;
use crate::tensor_util::{matmul, matmul_transposed};

/// A 3x3 convolution with zero "same" padding of channel-major `x: [in, batch, h, w]` by
/// `weight: [out, in, 3, 3]` (burn's `Conv2d` layout), giving `[out, batch, h, w]`.
pub fn conv3x3_same_channel_major(
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    x: Tensor<4>,
) -> Tensor<4> {
    let [out, _, kh, kw] = weight.dims();
    debug_assert_eq!((kh, kw), (3, 3), "a 3x3 kernel");
    let y = if x.device().is_autodiff() {
        tracked(weight, x)
    } else {
        forward(&weight, &x)
    };
    match bias {
        Some(b) => y + b.reshape([out, 1, 1, 1]),
        None => y,
    }
}

/// [`conv3x3_same_channel_major`] of batch-major `x: [batch, in, h, w]` (`Conv2d`'s layout),
/// giving `[batch, out, h, w]`, as one tracked operation when `x` has autodiff on the CPU
/// backend (or CubeCL's), with batched matrix products of its own (`conv/batch_major.rs`).
/// None elsewhere and without autodiff.
///
/// Glow trains its coupling networks batch-major (ActNorm and the 1x1 convolutions around them
/// are); composed of pads, slices and sums, their 3x3 convolutions' backward passes wrote
/// zeroed padded copies of the input, and fresh pages were a quarter of a training step.
pub(super) fn conv3x3_same_batch_major(weight: &Tensor<4>, x: &Tensor<4>) -> Option<Tensor<4>> {
    if !x.device().is_autodiff() {
        return None;
    }
    #[cfg(feature = "cuda")]
    if let Some(y) = on::<burn::backend::Cube>(weight, x, Layout::BatchMajor) {
        return Some(y);
    }
    on::<Flex>(weight, x, Layout::BatchMajor)
}

/// A 1x1 convolution of channel-major `x: [in, batch, h, w]`, one matrix product
/// `[out, in] x [in, batch h w]`.
pub fn pointwise_channel_major(conv: &burn::nn::conv::Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [channels, batch, h, w] = x.dims();
    let weight = conv.weight.val();
    let out = weight.dims()[0];
    let y = weight
        .reshape([out, channels])
        .matmul(x.reshape([channels, batch * h * w]));
    let y = match &conv.bias {
        Some(b) => y + b.val().reshape([out, 1]),
        None => y,
    };
    y.reshape([out, batch, h, w])
}

/// The convolution on tensors without autodiff: from the columns of the input when it is the
/// narrower side, else one product per tap stacked (`[9 out, in]`) whose outputs are shifted
/// into place and summed.
fn forward(weight: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
    if let Some(y) = super::cpu::forward(weight, x) {
        return y;
    }
    let [out, channels, _, _] = weight.dims();
    let [_, batch, h, w] = x.dims();
    if channels <= out {
        // Column (dy * 3 + dx) * channels + c holds tap (dy, dx) of input channel c.
        let w2 = weight
            .clone()
            .permute([0, 2, 3, 1])
            .reshape([out, 9 * channels]);
        matmul(w2, columns(x.clone())).reshape([out, batch, h, w])
    } else {
        // Row (dy * 3 + dx) * out + o holds tap (dy, dx) of output channel o.
        let w9 = weight
            .clone()
            .permute([2, 3, 0, 1])
            .reshape([9 * out, channels]);
        let p = matmul(w9, x.clone().reshape([channels, batch * h * w]));
        shift_sum(p.reshape([9 * out, batch, h, w]), false)
    }
}

/// The gradients of [`forward`] by `x` and by `weight` for the output's gradient `gy`, each
/// when asked for. From the narrower side's columns: the input's (then the input's gradient is
/// the transposed product shifted back), or the gradient's (the input's gradient is then a
/// convolution of `gy` by the flipped, transposed kernel).
fn backward(
    weight: &Tensor<4>,
    x: &Tensor<4>,
    gy: Tensor<4>,
    wants: (bool, bool),
) -> (Option<Tensor<4>>, Option<Tensor<4>>) {
    if let Some((gx, gw)) = super::cpu::backward(weight, x, &gy, wants) {
        return (gx, gw.map(contiguous));
    }
    let [out, channels, _, _] = weight.dims();
    let [_, batch, h, w] = x.dims();
    let n = batch * h * w;
    if channels <= out {
        let gy = gy.reshape([out, n]);
        let gw = wants.1.then(|| {
            matmul_transposed(gy.clone(), columns(x.clone()))
                .reshape([out, 3, 3, channels])
                .permute([0, 3, 1, 2])
        });
        let gw = gw.map(contiguous);
        let gx = wants.0.then(|| {
            let w2 = weight
                .clone()
                .permute([0, 2, 3, 1])
                .reshape([out, 9 * channels]);
            shift_sum(
                matmul(w2.transpose(), gy).reshape([9 * channels, batch, h, w]),
                true,
            )
        });
        (gx, gw)
    } else {
        // Row t' out + o of the gradient's columns meets tap 8 - t' of the kernel.
        let cols = columns(gy);
        let gw = wants.1.then(|| {
            matmul_transposed(cols.clone(), x.clone().reshape([channels, n]))
                .reshape([3, 3, out, channels])
                .flip([0, 1])
                .permute([2, 3, 0, 1])
        });
        let gw = gw.map(contiguous);
        let gx = wants.0.then(|| {
            let flipped = weight
                .clone()
                .flip([2, 3])
                .permute([1, 2, 3, 0])
                .reshape([channels, 9 * out]);
            matmul(flipped, cols).reshape([channels, batch, h, w])
        });
        (gx, gw)
    }
}

/// The convolution as one tracked operation, on the CPU backend and (with the `cuda` feature)
/// CubeCL's; on any other backend, burn's convolution.
fn tracked(weight: Tensor<4>, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "cuda")]
    if let Some(y) = on::<burn::backend::Cube>(&weight, &x, Layout::ChannelMajor) {
        return y;
    }
    if let Some(y) = on::<Flex>(&weight, &x, Layout::ChannelMajor) {
        return y;
    }
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    burn::tensor::module::conv2d(x.permute([1, 0, 2, 3]), weight, None, options)
        .permute([1, 0, 2, 3])
}

/// [`tracked`] on backend `B`, if the tensors are there, with or without gradient
/// checkpointing (the training loop's default).
fn on<B: Backend>(weight: &Tensor<4>, x: &Tensor<4>, layout: Layout) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<B>
        + DispatchKindConversion<Autodiff<B>>
        + DispatchKindConversion<Autodiff<B, BalancedCheckpointing>>,
{
    on_with::<B, NoCheckpointing>(weight, x, layout)
        .or_else(|| on_with::<B, BalancedCheckpointing>(weight, x, layout))
}

fn on_with<B: Backend, C: CheckpointStrategy>(
    weight: &Tensor<4>,
    x: &Tensor<4>,
    layout: Layout,
) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<B> + DispatchKindConversion<Autodiff<B, C>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<B, C>>().ok()?;
    let weight = weight.clone().try_into_primitive::<Autodiff<B, C>>().ok()?;
    let plain_x = Tensor::<4>::from_primitive::<B>(x.primitive().clone());
    let plain_w = Tensor::<4>::from_primitive::<B>(weight.primitive().clone());
    let y = layout.forward(&plain_w, &plain_x);
    let nodes = [x.node(), weight.node()];
    let out = match <Conv3x3 as Backward<B, 2>>::prepare::<C>(Conv3x3(layout), nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((plain_x, plain_w), primitive::<B, 4>(y)),
        OpsKind::UnTracked(prep) => prep.finish(primitive::<B, 4>(y)),
    };
    Some(Tensor::<4>::from_primitive::<Autodiff<B, C>>(out))
}

/// The layout of the operation's input and output.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// `[channels, batch, h, w]`.
    ChannelMajor,
    /// `[batch, channels, h, w]`.
    BatchMajor,
}

impl Layout {
    fn forward(self, weight: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        match self {
            Self::ChannelMajor => forward(weight, x),
            Self::BatchMajor => super::batch_major::forward(weight, x),
        }
    }

    fn backward(
        self,
        weight: &Tensor<4>,
        x: &Tensor<4>,
        gy: Tensor<4>,
        wants: (bool, bool),
    ) -> (Option<Tensor<4>>, Option<Tensor<4>>) {
        match self {
            Self::ChannelMajor => backward(weight, x, gy, wants),
            Self::BatchMajor => super::batch_major::backward(weight, x, gy, wants),
        }
    }
}

#[derive(Debug)]
struct Conv3x3(Layout);

impl<B: Backend> Backward<B, 2> for Conv3x3
where
    DispatchTensor: DispatchKindConversion<B>,
{
    /// The input and the kernel.
    type State = (Tensor<4>, Tensor<4>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, w_node] = ops.parents;
        let gy = Tensor::<4>::from_primitive::<B>(grads.consume::<B>(&ops.node));
        let (x, weight) = &ops.state;
        let wants = (x_node.is_some(), w_node.is_some());
        let (gx, gw) = self.0.backward(weight, x, gy, wants);
        if let (Some(node), Some(g)) = (x_node, gx) {
            grads.register::<B>(node.id, primitive::<B, 4>(g));
        }
        if let (Some(node), Some(g)) = (w_node, gw) {
            grads.register::<B>(node.id, primitive::<B, 4>(g));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    use super::*;
    use crate::conv::tests::{assert_each_gradient_alone, assert_matches_conv};

    #[test]
    fn channel_major_conv3x3_equals_burns_conv_and_its_gradients() {
        let checkpointing = Device::flex().autodiff().gradient_checkpointing();
        for device in [Device::flex(), Device::flex().autodiff(), checkpointing] {
            // Narrow in (the input's columns), narrow out (the gradient's), equal, 1x1 images.
            for (cin, cout, h, w) in [(3, 8, 4, 6), (16, 3, 5, 3), (4, 4, 3, 2), (2, 5, 1, 1)] {
                let conv = Conv2dConfig::new([cin, cout], [3, 3])
                    .with_padding(PaddingConfig2d::Same)
                    .init(&device);
                let x =
                    Tensor::<4>::random([2, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
                let x = if device.is_autodiff() {
                    x.require_grad()
                } else {
                    x
                };
                if device.is_autodiff() {
                    let x = x.clone().permute([1, 0, 2, 3]);
                    assert!(on::<Flex>(&conv.weight.val(), &x, Layout::ChannelMajor).is_some());
                }
                let bias = conv.bias.as_ref().map(|b| b.val());
                let ours = conv3x3_same_channel_major(
                    conv.weight.val(),
                    bias,
                    x.clone().permute([1, 0, 2, 3]),
                )
                .permute([1, 0, 2, 3]);
                assert_matches_conv(&conv, x, ours, &format!("{cin}->{cout} at {h}x{w}"));
            }
        }
    }

    #[test]
    fn each_gradient_is_right_when_only_it_is_asked_for() {
        let device = Device::flex().autodiff();
        for (cin, cout) in [(3, 8), (8, 3)] {
            let weight = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Default, &device);
            let x = Tensor::<4>::random([cin, 3, 4, 5], Distribution::Default, &device);
            let ours = |w, x| conv3x3_same_channel_major(w, None, x);
            let reference = |w, x: Tensor<4>| {
                let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
                burn::tensor::module::conv2d(x.permute([1, 0, 2, 3]), w, None, options)
                    .permute([1, 0, 2, 3])
            };
            assert_each_gradient_alone(weight, x, ours, reference, &format!("{cin}->{cout}"));
        }
    }
}
