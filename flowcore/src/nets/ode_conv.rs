//! The convolutional dynamics network of continuous flows on images (FFJORD's image models,
//! Grathwohl et al. 2019): 3x3 convolutions with zero "same" padding between smooth
//! nonlinearities. Each convolution sees the time per output channel as the dense network's
//! layers do (concat-squash gate and bias, or a time bias), so a time plane's zero padding
//! does not mark the image border; the condition enters as constant planes.
//!
//! As the dense [`super::OdeNet`], it returns tangents J v for given directions, each
//! convolution applied to them without its bias, so that the exact or Hutchinson trace is an
//! ordinary function of the parameters.
//!
//! Inside, images are channel-major (`[channels, batch, h, w]`): every convolution is then one
//! matrix product over the whole batch, where batch-major images give one small product per
//! image (measured on application 2's 16 x 7 x 7 planes: see `bench --only ffjord-conv28`).
//! The layout changes once on the way in and once on the way out.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

use super::ode_net::{Dynamics, OdeActivation, OdeNetSpec, initializer, see_time, time_params};
use crate::conv::conv3x3_same_channel_major;
use crate::layers::ImageShape;
use crate::{FlowError, Result};

impl OdeNetSpec {
    /// A convolutional network on images of `shape` whose hidden widths are channel counts,
    /// with `cond_dim` constant planes for the condition; the last convolution starts at zero,
    /// so the flow starts as the identity.
    pub fn build_conv(
        &self,
        shape: ImageShape,
        cond_dim: usize,
        device: &Device,
    ) -> Result<OdeConvNet> {
        if self.hidden.is_empty() || self.hidden.contains(&0) || shape.numel() == 0 {
            return Err(FlowError::config(format!(
                "the convolutional dynamics network needs positive hidden channels and a \
                 non-empty image, got {:?} on {shape}",
                self.hidden
            )));
        }
        let mut widths = vec![shape.channels + cond_dim];
        widths.extend(&self.hidden);
        widths.push(shape.channels);
        let last = widths.len() - 2;
        let layers = (0..=last)
            .map(|i| TimeConv::new(widths[i], widths[i + 1], self, i == last, device))
            .collect();
        Ok(OdeConvNet {
            layers,
            activation: self.activation,
            shape,
        })
    }
}

/// One 3x3 convolution that sees the time.
#[derive(Module, Debug)]
pub struct TimeConv {
    conv: Conv2d,
    time_weight: Param<Tensor<1>>,
    gate_bias: Option<Param<Tensor<1>>>,
    time_bias: Option<Param<Tensor<1>>>,
}

impl TimeConv {
    fn new(inputs: usize, outputs: usize, spec: &OdeNetSpec, zero: bool, device: &Device) -> Self {
        let conv = Conv2dConfig::new([inputs, outputs], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .with_initializer(initializer(zero))
            .init(device);
        let (time_weight, gate_bias, time_bias) = time_params(outputs, spec.time, zero, device);
        Self {
            conv,
            time_weight,
            gate_bias,
            time_bias,
        }
    }

    /// `(pre-activation, gate)` of channel-major `h`.
    fn forward(&self, h: Tensor<4>, t: f64) -> (Tensor<4>, Option<Tensor<4>>) {
        let bias = self.conv.bias.as_ref().map(|b| b.val());
        see_time(
            conv3x3_same_channel_major(self.conv.weight.val(), bias, h),
            0,
            t,
            &self.time_weight,
            self.gate_bias.as_ref().zip(self.time_bias.as_ref()),
        )
    }

    /// The tangent of the pre-activation for tangents `v` of the input's first `channels`.
    fn tangent(&self, v: Tensor<4>, channels: usize, gate: Option<&Tensor<4>>) -> Tensor<4> {
        let w = self.conv.weight.val();
        let w = if channels < w.dims()[1] {
            w.narrow(1, 0, channels)
        } else {
            w
        };
        let out = conv3x3_same_channel_major(w, None, v);
        match gate {
            Some(g) => out * g.clone(),
            None => out,
        }
    }
}

/// f(t, z, c) on flattened images (NCHW outside, channel-major inside), with its tangents.
#[derive(Module, Debug)]
pub struct OdeConvNet {
    layers: Vec<TimeConv>,
    #[module(skip)]
    activation: OdeActivation,
    #[module(skip)]
    shape: ImageShape,
}

impl OdeConvNet {
    /// `z: [rows, C*H*W]` as channel-major images `[C, rows, H, W]`.
    fn channel_major(&self, z: Tensor<2>) -> Tensor<4> {
        let rows = z.dims()[0];
        let ImageShape {
            channels,
            height,
            width,
        } = self.shape;
        z.reshape([rows, channels, height, width])
            .permute([1, 0, 2, 3])
    }

    /// Channel-major `[C, rows, H, W]` back to `[rows, C*H*W]`.
    fn flattened(h: Tensor<4>) -> Tensor<2> {
        let [c, rows, height, width] = h.dims();
        h.permute([1, 0, 2, 3]).reshape([rows, c * height * width])
    }

    /// `z` as channel-major images with the condition's planes appended.
    fn image(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<4> {
        let [batch, _] = z.dims();
        let image = self.channel_major(z);
        match cond {
            Some(c) => {
                let k = c.dims()[1];
                let [_, _, height, width] = image.dims();
                let planes = c
                    .clone()
                    .transpose()
                    .reshape([k, batch, 1, 1])
                    .expand([k, batch, height, width]);
                Tensor::cat(vec![image, planes], 0)
            }
            None => image,
        }
    }
}

impl Dynamics for OdeConvNet {
    fn value(&self, t: f64, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        let mut h = self.image(z, cond);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let (pre, _) = layer.forward(h, t);
            h = if i == last {
                pre
            } else {
                self.activation.value(pre)
            };
        }
        Self::flattened(h)
    }

    fn eval(
        &self,
        t: f64,
        z: Tensor<2>,
        cond: Option<&Tensor<2>>,
        v: Tensor<2>,
    ) -> (Tensor<2>, Tensor<2>) {
        let [batch, _] = z.dims();
        let rows = v.dims()[0];
        let k = rows / batch;
        let channels = self.shape.channels;
        let mut h = self.image(z, cond);
        // Direction-major rows, so each channel's plane is k blocks of the batch's planes.
        let mut tangent = self.channel_major(v);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let seen = if i == 0 { channels } else { usize::MAX };
            let (pre, gate) = layer.forward(h, t);
            tangent = layer.tangent(tangent, seen, gate.as_ref());
            if i == last {
                h = pre;
            } else {
                let (act, slope) = self.activation.apply(pre);
                let [c, _, height, width] = act.dims();
                let plane = batch * height * width;
                tangent = (tangent.reshape([c, k, plane]) * slope.reshape([c, 1, plane]))
                    .reshape([c, rows, height, width]);
                h = act;
            }
        }
        (Self::flattened(h), Self::flattened(tangent))
    }
}
