//! Parameter networks: they predict the parameters of a transform from the conditioning part
//! of the input (and an optional condition `c`), and know nothing of the transform itself.
//!
//! The last layer of every network starts at zero, so a new coupling predicts zero raw
//! parameters and, by the convention of [`crate::transform`], starts as the identity.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::ops::PadMode;
use serde::{Deserialize, Serialize};

use crate::{FlowError, Result};

/// Hidden-layer nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    #[default]
    Relu,
    /// Leaky ReLU with slope 0.01.
    LeakyRelu,
    /// GELU (erf form).
    Gelu,
    /// SiLU / swish.
    Silu,
    /// tanh.
    Tanh,
}

impl Activation {
    /// Apply to any tensor.
    pub fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Relu => activation::relu(x),
            Self::LeakyRelu => activation::leaky_relu(x, 0.01),
            Self::Gelu => activation::gelu(x),
            Self::Silu => activation::silu(x),
            Self::Tanh => x.tanh(),
        }
    }
}

/// What a network maps: dense features, or image channels at a fixed spatial size. Flattened
/// images are in NCHW order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetIo {
    /// `[batch, inputs]` to `[batch, outputs]`.
    Dense {
        /// Input features (the conditioning part of the coupling).
        inputs: usize,
        /// Output features.
        outputs: usize,
    },
    /// `[batch, in_channels * height * width]` to `[batch, out_channels * height * width]`.
    Image {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
}

/// Serializable description of a parameter network; the input and output sizes come from the
/// layer that owns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NetSpec {
    /// Fully connected layers of the given widths.
    Mlp {
        /// Hidden widths, e.g. `[512, 512]`.
        hidden: Vec<usize>,
        /// Hidden nonlinearity.
        #[serde(default)]
        activation: Activation,
    },
    /// A width-`width` residual MLP with `blocks` blocks of two linear layers each.
    ResMlp {
        /// Hidden width.
        width: usize,
        /// Number of residual blocks.
        blocks: usize,
        /// Layer normalisation at the start of each block.
        #[serde(default)]
        norm: bool,
        /// Hidden nonlinearity.
        #[serde(default)]
        activation: Activation,
    },
    /// Glow's network: 3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv.
    Conv {
        /// Hidden channels.
        hidden_channels: usize,
    },
}

impl NetSpec {
    /// Build the network for the given sizes; `cond_dim` extra inputs carry the condition.
    pub fn build(&self, io: NetIo, cond_dim: usize, device: &Device) -> Result<ParamNet> {
        match (self, io) {
            (Self::Mlp { hidden, activation }, NetIo::Dense { inputs, outputs }) => {
                if hidden.contains(&0) {
                    return Err(FlowError::config("mlp hidden widths must be positive"));
                }
                Ok(ParamNet::Mlp(Mlp::new(
                    inputs + cond_dim,
                    hidden,
                    outputs,
                    *activation,
                    device,
                )))
            }
            (
                Self::ResMlp {
                    width,
                    blocks,
                    norm,
                    activation,
                },
                NetIo::Dense { inputs, outputs },
            ) => {
                if *width == 0 {
                    return Err(FlowError::config("res_mlp width must be positive"));
                }
                Ok(ParamNet::ResMlp(ResMlp::new(
                    inputs + cond_dim,
                    *width,
                    *blocks,
                    *norm,
                    outputs,
                    *activation,
                    device,
                )))
            }
            (
                Self::Conv { hidden_channels },
                NetIo::Image {
                    in_channels,
                    out_channels,
                    height,
                    width,
                },
            ) => {
                if *hidden_channels == 0 {
                    return Err(FlowError::config("conv hidden_channels must be positive"));
                }
                Ok(ParamNet::Conv(GlowConvNet::new(
                    in_channels + cond_dim,
                    *hidden_channels,
                    out_channels,
                    [height, width],
                    device,
                )))
            }
            (Self::Conv { .. }, NetIo::Dense { .. }) => Err(FlowError::config(
                "a conv network needs an image mask (channel or checkerboard), not a dense one",
            )),
            (_, NetIo::Image { .. }) => Err(FlowError::config(
                "an image mask needs a conv network (kind = \"conv\"), not an MLP",
            )),
        }
    }
}

fn zero_linear(inputs: usize, outputs: usize, device: &Device) -> Linear {
    LinearConfig::new(inputs, outputs)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// Fully connected network; the last layer starts at zero.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    #[module(skip)]
    activation: Activation,
}

impl Mlp {
    /// `inputs -> hidden[0] -> ... -> outputs`.
    pub fn new(
        inputs: usize,
        hidden: &[usize],
        outputs: usize,
        activation: Activation,
        device: &Device,
    ) -> Self {
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut width = inputs;
        for &h in hidden {
            layers.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        layers.push(zero_linear(width, outputs, device));
        Self { layers, activation }
    }

    /// `[batch, inputs] -> [batch, outputs]`.
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.activation.apply(x);
            }
        }
        x
    }
}

/// One pre-activation residual block: `h + W2 act(W1 act(norm(h)))`.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm: Option<LayerNorm>,
    first: Linear,
    second: Linear,
}

/// Residual MLP with optional layer normalisation; the output layer starts at zero.
#[derive(Module, Debug)]
pub struct ResMlp {
    input: Linear,
    blocks: Vec<ResBlock>,
    output: Linear,
    #[module(skip)]
    activation: Activation,
}

impl ResMlp {
    /// `inputs -> width -> blocks x residual -> outputs`.
    pub fn new(
        inputs: usize,
        width: usize,
        blocks: usize,
        norm: bool,
        outputs: usize,
        activation: Activation,
        device: &Device,
    ) -> Self {
        let blocks = (0..blocks)
            .map(|_| ResBlock {
                norm: norm.then(|| LayerNormConfig::new(width).init(device)),
                first: LinearConfig::new(width, width).init(device),
                second: LinearConfig::new(width, width).init(device),
            })
            .collect();
        Self {
            input: LinearConfig::new(inputs, width).init(device),
            blocks,
            output: zero_linear(width, outputs, device),
            activation,
        }
    }

    /// `[batch, inputs] -> [batch, outputs]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = self.input.forward(x);
        for block in &self.blocks {
            let mut r = match &block.norm {
                Some(norm) => norm.forward(h.clone()),
                None => h.clone(),
            };
            r = block.first.forward(self.activation.apply(r));
            r = block.second.forward(self.activation.apply(r));
            h = h + r;
        }
        self.output.forward(self.activation.apply(h))
    }
}

/// Glow's coupling network on images: 3x3 conv, ReLU, 1x1 conv, ReLU, 3x3 conv that starts at
/// zero. Input and output are flattened NCHW.
#[derive(Module, Debug)]
pub struct GlowConvNet {
    first: Conv2d,
    hidden: Conv2d,
    last: Conv2d,
    #[module(skip)]
    in_channels: usize,
    #[module(skip)]
    size: [usize; 2],
}

impl GlowConvNet {
    /// `in_channels -> hidden -> hidden -> out_channels` at spatial size `size = [h, w]`.
    pub fn new(
        in_channels: usize,
        hidden: usize,
        out_channels: usize,
        size: [usize; 2],
        device: &Device,
    ) -> Self {
        Self {
            first: Conv2dConfig::new([in_channels, hidden], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            hidden: Conv2dConfig::new([hidden, hidden], [1, 1]).init(device),
            last: Conv2dConfig::new([hidden, out_channels], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_initializer(Initializer::Zeros)
                .init(device),
            in_channels,
            size,
        }
    }

    /// `[batch, in_channels * h * w]` (the condition already appended as channels) to
    /// `[batch, out_channels * h * w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = activation::relu(conv3x3_same(&self.first, x));
        let h = activation::relu(pointwise(&self.hidden, h));
        conv3x3_same(&self.last, h).flatten(1, 3)
    }
}

/// A 3x3 convolution with zero "same" padding, as `Conv2d::forward` computes it, in matrix
/// products: burn's CPU convolution runs a general 3-D im2col that took a quarter of a Glow
/// training step in the profile. From a narrow input (Glow's first conv), one product over
/// the nine shifted copies of the input; into a narrow output (Glow's last conv), one product
/// per kernel tap, whose small outputs are shifted into place and summed. Measured on Glow's
/// level-1 coupling (12x16x16, 64 hidden channels, batch 16): forward 4.20 -> 2.54 ms, forward
/// and backward 13.9 -> 8.8 ms (`cargo bench -p flowcore`). Same parameters (`[out, in, 3, 3]`),
/// so checkpoints are unchanged.
pub fn conv3x3_same(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [out, channels, kh, kw] = conv.weight.dims();
    debug_assert_eq!((kh, kw), (3, 3), "a 3x3 kernel");
    let [batch, _, h, w] = x.dims();
    // Both ways keep nine copies of the narrow side for the backward pass: above the budget
    // that memory outweighs the time saved (measured: Glow 128x128 peak 1.4 -> 2.9 GiB).
    // Without autodiff nothing is kept.
    let kept = 9 * batch * h * w * channels.min(out) * std::mem::size_of::<f32>();
    if kept > MATMUL_CONV_BUDGET && x.device().is_autodiff() {
        conv.forward(x)
    } else if channels <= out {
        conv3x3_by_columns(conv, x)
    } else {
        conv3x3_by_shifts(conv, x)
    }
}

/// The most memory [`conv3x3_same`]'s matrix products may keep per convolution.
const MATMUL_CONV_BUDGET: usize = 8 << 20;

/// One matrix product over the nine shifted copies of the input (im2col by slicing, NCHW).
fn conv3x3_by_columns(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, h, w] = x.dims();
    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let shifted: Vec<Tensor<4>> = (0..3)
        .flat_map(|dy| (0..3).map(move |dx| (dy, dx)))
        .map(|(dy, dx)| {
            padded
                .clone()
                .slice([0..batch, 0..channels, dy..dy + h, dx..dx + w])
        })
        .collect();
    // Row (dy * 3 + dx) * channels + c holds input channel c shifted by (dy, dx).
    let columns = Tensor::cat(shifted, 1).reshape([batch, 9 * channels, h * w]);
    let weight = conv.weight.val();
    let out = weight.dims()[0];
    let weight = weight.permute([0, 2, 3, 1]).reshape([1, out, 9 * channels]);
    let y = weight.matmul(columns).reshape([batch, out, h, w]);
    match &conv.bias {
        Some(b) => y + b.val().reshape([1, out, 1, 1]),
        None => y,
    }
}

/// Nine matrix products, one per kernel tap, whose outputs are shifted into place and summed:
/// no copies of the (wide) input.
fn conv3x3_by_shifts(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, h, w] = x.dims();
    let weight = conv.weight.val();
    let out = weight.dims()[0];
    let x = x.reshape([batch, channels, h * w]);
    let mut y: Option<Tensor<4>> = None;
    for dy in 0..3 {
        for dx in 0..3 {
            let tap = weight
                .clone()
                .slice([0..out, 0..channels, dy..dy + 1, dx..dx + 1])
                .reshape([1, out, channels]);
            let p = tap.matmul(x.clone()).reshape([batch, out, h, w]);
            // y[i, j] += p[i + dy - 1, j + dx - 1], zero outside.
            let shifted = p.pad((1, 1, 1, 1), PadMode::Constant(0.0)).slice([
                0..batch,
                0..out,
                dy..dy + h,
                dx..dx + w,
            ]);
            y = Some(match y {
                Some(acc) => acc + shifted,
                None => shifted,
            });
        }
    }
    let y = y.expect("nine taps");
    match &conv.bias {
        Some(b) => y + b.val().reshape([1, out, 1, 1]),
        None => y,
    }
}

/// A 1x1 convolution as the batched matrix product it is, `W [out, in] x [batch, in, h*w]`:
/// burn's CPU convolution goes through im2col, which a 1x1 kernel does not need (measured: Glow
/// 32x32 training steps/s, see the bench). Same parameters as the `Conv2d`, so checkpoints are
/// unchanged.
fn pointwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, h, w] = x.dims();
    let weight = conv.weight.val();
    let out = weight.dims()[0];
    let y = weight
        .reshape([1, out, channels])
        .matmul(x.reshape([batch, channels, h * w]));
    let y = match &conv.bias {
        Some(b) => y + b.val().reshape([1, out, 1]),
        None => y,
    };
    y.reshape([batch, out, h, w])
}

/// Any parameter network.
// Unboxed for the same reason as `Layer`: `Module` has no impl for `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ParamNet {
    /// [`Mlp`].
    Mlp(Mlp),
    /// [`ResMlp`].
    ResMlp(ResMlp),
    /// [`GlowConvNet`].
    Conv(GlowConvNet),
}

impl ParamNet {
    /// Predict raw parameters from the flattened conditioning input `x` and the optional
    /// condition `cond` (`[batch, cond_dim]`), which is appended to the features or, for a conv
    /// net, broadcast as extra channels.
    pub fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        match self {
            Self::Mlp(net) => net.forward(append_cond(x, cond)),
            Self::ResMlp(net) => net.forward(append_cond(x, cond)),
            Self::Conv(net) => {
                let [batch, _] = x.dims();
                let [h, w] = net.size;
                let channels = net.in_channels - cond.map_or(0, |c| c.dims()[1]);
                let mut image = x.reshape([batch, channels, h, w]);
                if let Some(c) = cond {
                    let k = c.dims()[1];
                    let planes = c.clone().reshape([batch, k, 1, 1]).expand([batch, k, h, w]);
                    image = Tensor::cat(vec![image, planes], 1);
                }
                net.forward(image)
            }
        }
    }
}

fn append_cond(x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
    match cond {
        Some(c) => Tensor::cat(vec![x, c.clone()], 1),
        None => x,
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn conv3x3_in_matrix_products_equals_burns_conv_and_its_gradients() {
        let device = Device::flex().autodiff();
        // Narrow in (by columns), narrow out (by shifts), equal, and 1x1 images.
        for (cin, cout, h, w) in [(3, 8, 4, 6), (16, 3, 5, 3), (4, 4, 3, 3), (2, 5, 1, 1)] {
            let conv = Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(&device);
            let x = Tensor::<4>::random([2, cin, h, w], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let (ours, theirs) = (conv3x3_same(&conv, x.clone()), conv.forward(x.clone()));
            let d = max_diff(ours.clone(), theirs.clone());
            assert!(d < 1e-5, "{cin}->{cout} at {h}x{w}: outputs differ by {d}");
            // Weighted sums, so that every output position matters to the gradients.
            let weights = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
            let ours = (ours * weights.clone()).sum().backward();
            let theirs = (theirs * weights).sum().backward();
            let bias = conv.bias.as_ref().expect("a bias").val();
            for (what, a, b) in [
                ("input", x.grad(&ours), x.grad(&theirs)),
                (
                    "weight",
                    conv.weight.val().grad(&ours),
                    conv.weight.val().grad(&theirs),
                ),
            ] {
                let d = max_diff(a.unwrap(), b.unwrap());
                assert!(d < 1e-4, "{cin}->{cout}: {what} gradients differ by {d}");
            }
            let d = max_diff(bias.grad(&ours).unwrap(), bias.grad(&theirs).unwrap());
            assert!(d < 1e-4, "{cin}->{cout}: bias gradients differ by {d}");
        }
    }
}
