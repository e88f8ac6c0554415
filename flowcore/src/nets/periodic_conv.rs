//! A convolutional parameter network with periodic (circular) padding: the network of lattice
//! flows, whose fields live on a torus, so a coupling commutes with translations of the lattice
//! (by an even number of sites for a checkerboard mask). Inside the network a field is laid out
//! `[channels * sites, batch]`, so that shifting it copies whole rows of the batch.

use burn::nn::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::product::product;
use super::{Activation, BuildNet, Conditioner, NetIo};
use crate::tensor_util::indices;
use crate::{FlowError, Result};

fn three() -> usize {
    3
}
fn tanh() -> Activation {
    Activation::Tanh
}
fn yes() -> bool {
    true
}
fn is_true(value: &bool) -> bool {
    *value
}

/// Convolutions of the given hidden channels with periodic padding; a lattice of one row
/// (a 1-D lattice) gets kernels of one row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicConvSpec {
    /// Hidden channels, one convolution each, e.g. `[8, 8]`.
    pub hidden_channels: Vec<usize>,
    /// Odd kernel size.
    #[serde(default = "three")]
    pub kernel_size: usize,
    /// Hidden nonlinearity.
    #[serde(default = "tanh")]
    pub activation: Activation,
    /// A bias in the last convolution. A Z2-equivariant coupling takes the odd part of the
    /// network's shift output, in which a bias cancels: without it no parameter is dead.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub output_bias: bool,
}

impl BuildNet for PeriodicConvSpec {
    type Net = PeriodicConvNet;

    fn build(&self, io: NetIo, cond_dim: usize, device: &Device) -> Result<PeriodicConvNet> {
        let (in_channels, out_channels, height, width) = io.image("periodic_conv")?;
        let k = self.kernel_size;
        if k.is_multiple_of(2) {
            return Err(FlowError::config(format!(
                "periodic_conv kernel_size must be odd, got {k}"
            )));
        }
        if self.hidden_channels.contains(&0) {
            return Err(FlowError::config(
                "periodic_conv hidden_channels must be positive",
            ));
        }
        let kernel = |len: usize| if len == 1 { 1 } else { k };
        let kernel = [kernel(height), kernel(width)];
        let mut convs = Vec::with_capacity(self.hidden_channels.len() + 1);
        let mut rows = Vec::with_capacity(self.hidden_channels.len() + 1);
        let mut channels = in_channels + cond_dim;
        for &h in &self.hidden_channels {
            convs.push(Conv2dConfig::new([channels, h], kernel).init(device));
            rows.push(tap_rows([height, width], kernel, channels));
            channels = h;
        }
        rows.push(tap_rows([height, width], kernel, channels));
        convs.push(
            Conv2dConfig::new([channels, out_channels], kernel)
                .with_initializer(Initializer::Zeros)
                .with_bias(self.output_bias)
                .init(device),
        );
        Ok(PeriodicConvNet {
            convs,
            activation: self.activation,
            in_channels: in_channels + cond_dim,
            size: [height, width],
            rows,
        })
    }
}

/// Convolutions on a torus; the last starts at zero. Input and output are flattened NCHW.
#[derive(Module, Debug)]
pub struct PeriodicConvNet {
    convs: Vec<Conv2d>,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    in_channels: usize,
    #[module(skip)]
    size: [usize; 2],
    /// [`tap_rows`] of each convolution.
    #[module(skip)]
    rows: Vec<Vec<usize>>,
}

/// For a kernel of `kernel` taps over `channels` input channels on a periodic `size` lattice,
/// the row of a `[channels * sites, batch]` field that each row of the gathered neighbourhoods
/// `[taps * channels * sites, batch]` copies: row `(tap * channels + c) * sites + site` is
/// channel `c` at the site that tap `(dy, dx)` of `site = (h, w)` reads, as `Conv2d`
/// correlates: `(h + dy - kh / 2, w + dx - kw / 2)`, wrapped.
fn tap_rows(size: [usize; 2], kernel: [usize; 2], channels: usize) -> Vec<usize> {
    let ([h, w], [kh, kw]) = (size, kernel);
    let sites = h * w;
    let mut out = Vec::with_capacity(kh * kw * channels * sites);
    for dy in 0..kh {
        for dx in 0..kw {
            for c in 0..channels {
                for y in 0..h {
                    for x in 0..w {
                        let sy = (y + h * kh + dy - kh / 2) % h;
                        let sx = (x + w * kw + dx - kw / 2) % w;
                        out.push(c * sites + sy * w + sx);
                    }
                }
            }
        }
    }
    out
}

/// A convolution on a torus of fields laid out `[channels * sites, batch]`: one gather of
/// every site's neighbourhood (whole rows of the batch, so its copies and the scatter of its
/// backward pass are long) and one matrix product of the kernel with all of them. burn's
/// general convolution, and im2col in the image layouts, spent their time copying rows of a
/// few values and in thousands of tiny products at a lattice's few channels and sites. The
/// parameters are `Conv2d`'s (`[out, in, kh, kw]`).
fn periodic_conv(conv: &Conv2d, x: Tensor<2>, rows: &Tensor<1, Int>) -> Tensor<2> {
    let [out, channels, kh, kw] = conv.weight.dims();
    let [width, batch] = x.dims();
    let sites = width / channels;
    let k = kh * kw * channels;
    // [taps * channels, sites * batch]: the neighbourhoods, tap-major.
    let columns = x.select(0, rows.clone()).reshape([k, sites * batch]);
    let weight = conv.weight.val().permute([0, 2, 3, 1]).reshape([out, k]);
    let y = product(weight, columns);
    let y = match &conv.bias {
        Some(b) => y + b.val().reshape([out, 1]),
        None => y,
    };
    y.reshape([out * sites, batch])
}

impl PeriodicConvNet {
    /// `[in_channels * sites, batch]` to `[batch, out_channels * sites]` (channels first,
    /// flattened).
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            let rows = indices(&self.rows[i], &x);
            x = periodic_conv(conv, x, &rows);
            if i < last {
                x = self.activation.apply(x);
            }
        }
        x.swap_dims(0, 1)
    }
}

impl Conditioner for PeriodicConvNet {
    /// The condition, when given, is broadcast as extra channels.
    fn predict(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        let [batch, _] = x.dims();
        let sites = self.size[0] * self.size[1];
        let mut fields = x.swap_dims(0, 1);
        if let Some(c) = cond {
            let k = c.dims()[1];
            let planes = c
                .clone()
                .swap_dims(0, 1)
                .reshape([k, 1, batch])
                .expand([k, sites, batch])
                .reshape([k * sites, batch]);
            fields = Tensor::cat(vec![fields, planes], 0);
        }
        debug_assert_eq!(fields.dims()[0], self.in_channels * sites);
        self.forward(fields)
    }
}
