//! Convolutions as matrix products, for the CPU: burn's convolution goes through a general
//! im2col that the kernels of Glow's coupling network do not need. Same parameters as burn's
//! `Conv2d`, so checkpoints do not change with the kernel.

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, PadMode};

mod batch_major;
mod batch_major_cpu;
mod bias_relu;
mod channel_major;
mod coupling_net;
mod cpu;
mod im2col;
mod kernel_layout;
mod pointwise;
mod tiles;

pub(crate) use bias_relu::bias_relu;
pub use channel_major::{conv3x3_same_channel_major, pointwise_channel_major};
pub(crate) use coupling_net::coupling_net;

/// A 3x3 convolution with zero "same" padding, as `Conv2d::forward` computes it, in matrix
/// products. With autodiff on the CPU (or CubeCL) backend it is one tracked operation that
/// keeps only its input and kernel (`conv/channel_major.rs`, `conv/batch_major.rs`; Glow 32
/// training 11.0 -> 14.3 steps/s, Glow 128 0.17 -> 0.35 in paired runs). The compositions below serve the other cases: burn's CPU convolution runs a
/// general 3-D im2col that took a quarter of a Glow training step in the profile. From a
/// narrow input (Glow's first conv), one product over the nine shifted copies of the input;
/// into a narrow output (Glow's last conv), one product per kernel tap, whose small outputs
/// are shifted into place and summed. Measured on Glow's
/// level-1 coupling (12x16x16, 64 hidden channels, batch 16): forward 4.20 -> 2.54 ms, forward
/// and backward 13.9 -> 8.8 ms (`cargo bench -p flowcore`). Same parameters (`[out, in, 3, 3]`),
/// so checkpoints are unchanged.
pub fn conv3x3_same(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv3x3_same_with(conv.weight.val(), conv.bias.as_ref().map(|b| b.val()), x)
}

/// [`conv3x3_same`] for a kernel `[out, in, 3, 3]` and optional bias given as tensors: the
/// continuous flows' dynamics apply their kernels without bias to tangents.
pub fn conv3x3_same_with(weight: Tensor<4>, bias: Option<Tensor<1>>, x: Tensor<4>) -> Tensor<4> {
    let [out, channels, kh, kw] = weight.dims();
    debug_assert_eq!((kh, kw), (3, 3), "a 3x3 kernel");
    let [batch, _, h, w] = x.dims();
    if let Some(y) = channel_major::conv3x3_same_batch_major(&weight, &x) {
        return match bias {
            Some(b) => y + b.reshape([1, out, 1, 1]),
            None => y,
        };
    }
    // Without the operation (other backends), both ways keep nine copies of the narrow side
    // for the backward pass: above the budget that memory outweighs the time saved (measured:
    // Glow 128x128 peak 1.4 -> 2.9 GiB). Without autodiff nothing is kept.
    let kept = 9 * batch * h * w * channels.min(out) * std::mem::size_of::<f32>();
    if kept > MATMUL_CONV_BUDGET && x.device().is_autodiff() {
        burn::tensor::module::conv2d(x, weight, bias, ConvOptions::new([1, 1], [1, 1], [1, 1], 1))
    } else if channels <= out {
        conv3x3_by_columns(weight, bias, x)
    } else if !x.device().is_autodiff() {
        conv3x3_by_one_product(weight, bias, x)
    } else {
        conv3x3_by_shifts(weight, bias, x)
    }
}

/// Without autodiff: every tap in one matrix product (`[9 out, in]`, a better shape for the
/// kernel than nine of `[out, in]`), padded once, the nine shifted views summed. With autodiff
/// each view's gradient would be a zeroed tensor of all nine taps, so training keeps
/// [`conv3x3_by_shifts`].
fn conv3x3_by_one_product(weight: Tensor<4>, bias: Option<Tensor<1>>, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, h, w] = x.dims();
    let out = weight.dims()[0];
    // Row (dy * 3 + dx) * out + o holds tap (dy, dx) of output channel o.
    let kernel = weight.permute([2, 3, 0, 1]).reshape([1, 9 * out, channels]);
    let p = kernel
        .matmul(x.reshape([batch, channels, h * w]))
        .reshape([batch, 9 * out, h, w])
        .pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let shifted = taps().enumerate().map(|(t, (dy, dx))| {
        // y[i, j] += p_t[i + dy - 1, j + dx - 1], zero outside.
        p.clone()
            .slice([0..batch, t * out..(t + 1) * out, dy..dy + h, dx..dx + w])
    });
    sum_with_bias(shifted, bias)
}

/// The kernel taps `(dy, dx)` of a 3x3 convolution, row-major.
fn taps() -> impl Iterator<Item = (usize, usize)> {
    (0..3).flat_map(|dy| (0..3).map(move |dx| (dy, dx)))
}

/// `terms` summed, plus the bias per output channel (dimension 1).
fn sum_with_bias(terms: impl Iterator<Item = Tensor<4>>, bias: Option<Tensor<1>>) -> Tensor<4> {
    let y = terms.reduce(|acc, t| acc + t).expect("a term");
    match bias {
        Some(b) => {
            let out = b.dims()[0];
            y + b.reshape([1, out, 1, 1])
        }
        None => y,
    }
}

/// The most memory [`conv3x3_same`]'s matrix products may keep per convolution.
const MATMUL_CONV_BUDGET: usize = 8 << 20;

/// One matrix product over the nine shifted copies of the input (im2col by slicing, NCHW).
fn conv3x3_by_columns(weight: Tensor<4>, bias: Option<Tensor<1>>, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, h, w] = x.dims();
    // Row (dy * 3 + dx) * channels + c holds input channel c shifted by (dy, dx).
    let columns = Tensor::cat(shifted_copies(x), 1).reshape([batch, 9 * channels, h * w]);
    let out = weight.dims()[0];
    let weight = weight.permute([0, 2, 3, 1]).reshape([1, out, 9 * channels]);
    sum_with_bias(
        std::iter::once(weight.matmul(columns).reshape([batch, out, h, w])),
        bias,
    )
}

/// The nine copies of `x: [a, b, h, w]` shifted by each tap (zero outside), tap-major:
/// `y[.., .., i, j] = x[.., .., i + dy - 1, j + dx - 1]`.
fn shifted_copies(x: Tensor<4>) -> Vec<Tensor<4>> {
    let [a, b, h, w] = x.dims();
    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    taps()
        .map(|(dy, dx)| padded.clone().slice([0..a, 0..b, dy..dy + h, dx..dx + w]))
        .collect()
}

/// Nine matrix products, one per kernel tap, whose outputs are shifted into place and summed:
/// no copies of the (wide) input.
fn conv3x3_by_shifts(weight: Tensor<4>, bias: Option<Tensor<1>>, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, h, w] = x.dims();
    let out = weight.dims()[0];
    let x = x.reshape([batch, channels, h * w]);
    let shifted = taps().map(|(dy, dx)| {
        let tap = weight
            .clone()
            .slice([0..out, 0..channels, dy..dy + 1, dx..dx + 1])
            .reshape([1, out, channels]);
        let p = tap.matmul(x.clone()).reshape([batch, out, h, w]);
        // y[i, j] += p[i + dy - 1, j + dx - 1], zero outside.
        p.pad((1, 1, 1, 1), PadMode::Constant(0.0)).slice([
            0..batch,
            0..out,
            dy..dy + h,
            dx..dx + w,
        ])
    });
    sum_with_bias(shifted, bias)
}

/// A 1x1 convolution as the batched matrix product it is, `W [out, in] x [batch, in, h*w]`:
/// burn's CPU convolution goes through im2col, which a 1x1 kernel does not need (measured: Glow
/// 32x32 training steps/s, see the bench). Same parameters as the `Conv2d`, so checkpoints are
/// unchanged.
pub fn pointwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    pointwise_with(conv.weight.val(), conv.bias.as_ref().map(|b| b.val()), x)
}

/// [`pointwise`] for a kernel `[out, in, 1, 1]` and optional bias given as tensors.
pub fn pointwise_with(weight: Tensor<4>, bias: Option<Tensor<1>>, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, h, w] = x.dims();
    let out = weight.dims()[0];
    let y = match pointwise::pointwise_batch_major(&weight, &x) {
        Some(y) => y.reshape([batch, out, h * w]),
        None => weight
            .reshape([1, out, channels])
            .matmul(x.reshape([batch, channels, h * w])),
    };
    let y = match bias {
        Some(b) => y + b.reshape([1, out, 1]),
        None => y,
    };
    y.reshape([batch, out, h, w])
}

/// `t` written out in row-major order: a kernel gradient left as a permuted view makes every
/// one of the optimizer's passes over it a strided walk (3% of a Glow 32 training step).
pub(super) fn contiguous(t: Tensor<4>) -> Tensor<4> {
    let dims = t.dims();
    t.reshape([dims.iter().product::<usize>()]).reshape(dims)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;

    use super::*;

    /// `f` on a pool of two threads, so that batches split into the same tiles whatever the
    /// machine's cores: a batch of 5 into tiles of 2, 2 and 1 images.
    pub(super) fn on_two_threads(f: impl FnOnce() + Send) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(f);
    }

    pub(super) fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// `ours`, computed from `x` with `conv`'s parameters, against `conv.forward(x)`: the values,
    /// and with autodiff the gradients of a weighted sum (so that every output position
    /// matters) by the input, the kernel and the bias.
    pub(super) fn assert_matches_conv(conv: &Conv2d, x: Tensor<4>, ours: Tensor<4>, case: &str) {
        let theirs = conv.forward(x.clone());
        let d = max_diff(ours.clone(), theirs.clone());
        assert!(d < 1e-5, "{case}: outputs differ by {d}");
        let device = x.device();
        if !device.is_autodiff() {
            return;
        }
        let weights = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
        let ours = (ours * weights.clone()).sum().backward();
        let theirs = (theirs * weights).sum().backward();
        let bias = conv.bias.as_ref().expect("a bias").val();
        let out = bias.dims()[0];
        let bias_grad = |g: &_| bias.grad(g).map(|b| b.reshape([1, out, 1, 1]));
        for (what, a, b) in [
            ("input", x.grad(&ours), x.grad(&theirs)),
            (
                "weight",
                conv.weight.val().grad(&ours),
                conv.weight.val().grad(&theirs),
            ),
            ("bias", bias_grad(&ours), bias_grad(&theirs)),
        ] {
            let d = max_diff(a.unwrap(), b.unwrap());
            assert!(d < 1e-4, "{case}: {what} gradients differ by {d}");
        }
    }

    /// `ours(kernel, x)` against `reference(kernel, x)` with only the input tracked, then only
    /// the kernel: each gets the reference's gradient (of a weighted sum of the output), and
    /// the untracked one none.
    pub(super) fn assert_each_gradient_alone(
        weight: Tensor<4>,
        x: Tensor<4>,
        ours: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
        reference: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
        case: &str,
    ) {
        let y = reference(weight.clone(), x.clone());
        let weights = Tensor::<4>::random(y.dims(), Distribution::Default, &x.device());
        let grads = |f: &dyn Fn(Tensor<4>, Tensor<4>) -> Tensor<4>, w, x| {
            (f(w, x) * weights.clone()).sum().backward()
        };
        let (w, xg) = (weight.clone(), x.clone().require_grad());
        let (a, b) = (
            grads(&ours, w.clone(), xg.clone()),
            grads(&reference, w.clone(), xg.clone()),
        );
        let d = max_diff(xg.grad(&a).unwrap(), xg.grad(&b).unwrap());
        assert!(d < 1e-4, "{case}: input gradient alone differs by {d}");
        assert!(
            w.grad(&a).is_none(),
            "{case}: an untracked kernel got a gradient"
        );
        let wg = weight.require_grad();
        let (a, b) = (
            grads(&ours, wg.clone(), x.clone()),
            grads(&reference, wg.clone(), x.clone()),
        );
        let d = max_diff(wg.grad(&a).unwrap(), wg.grad(&b).unwrap());
        assert!(d < 1e-4, "{case}: kernel gradient alone differs by {d}");
        assert!(
            x.grad(&a).is_none(),
            "{case}: an untracked input got a gradient"
        );
    }

    #[test]
    fn conv3x3_without_autodiff_equals_burns_conv() {
        // Scoring and sampling: the narrow-output convolution takes all taps in one product.
        let device = Device::flex();
        for (cin, cout, h, w) in [(16, 3, 5, 3), (8, 2, 4, 6), (5, 4, 1, 1), (3, 8, 4, 6)] {
            let conv = Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(&device);
            let x = Tensor::<4>::random([2, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
            let d = max_diff(conv3x3_same(&conv, x.clone()), conv.forward(x));
            assert!(d < 1e-5, "{cin}->{cout} at {h}x{w}: outputs differ by {d}");
        }
    }

    #[test]
    fn conv3x3_in_matrix_products_equals_burns_conv_and_its_gradients() {
        let checkpointing = Device::flex().autodiff().gradient_checkpointing();
        for device in [Device::flex().autodiff(), checkpointing] {
            // Narrow in (by columns), narrow out (by shifts), equal, and 1x1 images.
            for (cin, cout, h, w) in [(3, 8, 4, 6), (16, 3, 5, 3), (4, 4, 3, 3), (2, 5, 1, 1)] {
                let conv = Conv2dConfig::new([cin, cout], [3, 3])
                    .with_padding(PaddingConfig2d::Same)
                    .init(&device);
                let x =
                    Tensor::<4>::random([2, cin, h, w], Distribution::Normal(0.0, 1.0), &device)
                        .require_grad();
                // On the CPU backend, the tracked operation; the compositions for the others.
                let weight = conv.weight.val();
                assert!(channel_major::conv3x3_same_batch_major(&weight, &x).is_some());
                let bias = || conv.bias.as_ref().map(|b| b.val());
                for (way, ours) in [
                    ("op", conv3x3_same(&conv, x.clone())),
                    (
                        "columns",
                        conv3x3_by_columns(weight.clone(), bias(), x.clone()),
                    ),
                    (
                        "shifts",
                        conv3x3_by_shifts(weight.clone(), bias(), x.clone()),
                    ),
                ] {
                    let case = format!("{way} {cin}->{cout} at {h}x{w}");
                    assert_matches_conv(&conv, x.clone(), ours, &case);
                }
            }
        }
    }
}
