//! The convolutional dynamics network of continuous flows on images (FFJORD's image models,
//! Grathwohl et al. 2019): 3x3 convolutions with zero "same" padding between smooth
//! nonlinearities. Each convolution sees the time per output channel as the dense network's
//! layers do (concat-squash gate and bias, or a time bias), so a time plane's zero padding
//! does not mark the image border; the condition enters as constant planes.
//!
//! As the dense [`super::OdeNet`], it returns tangents J v for given directions, each
//! convolution applied to them without its bias, so that the exact or Hutchinson trace is an
//! ordinary function of the parameters.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

use super::ode_net::{Dynamics, OdeActivation, OdeNetSpec, initializer, see_time, time_params};
use crate::conv::{conv3x3_same, conv3x3_same_with};
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

    fn forward(&self, h: Tensor<4>, t: f64) -> (Tensor<4>, Option<Tensor<4>>) {
        see_time(
            conv3x3_same(&self.conv, h),
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
        let out = conv3x3_same_with(w, None, v);
        match gate {
            Some(g) => out * g.clone(),
            None => out,
        }
    }
}

/// f(t, z, c) on flattened images (NCHW), with its tangents.
#[derive(Module, Debug)]
pub struct OdeConvNet {
    layers: Vec<TimeConv>,
    #[module(skip)]
    activation: OdeActivation,
    #[module(skip)]
    shape: ImageShape,
}

impl OdeConvNet {
    /// `z: [batch, C*H*W]` as images, with the condition's planes appended.
    fn image(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<4> {
        let [batch, _] = z.dims();
        let ImageShape {
            channels,
            height,
            width,
        } = self.shape;
        let image = z.reshape([batch, channels, height, width]);
        match cond {
            Some(c) => {
                let k = c.dims()[1];
                let planes = c
                    .clone()
                    .reshape([batch, k, 1, 1])
                    .expand([batch, k, height, width]);
                Tensor::cat(vec![image, planes], 1)
            }
            None => image,
        }
    }
}

impl Dynamics for OdeConvNet {
    fn value(&self, t: f64, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        let [batch, features] = z.dims();
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
        h.reshape([batch, features])
    }

    fn eval(
        &self,
        t: f64,
        z: Tensor<2>,
        cond: Option<&Tensor<2>>,
        v: Tensor<2>,
    ) -> (Tensor<2>, Tensor<2>) {
        let [batch, features] = z.dims();
        let rows = v.dims()[0];
        let k = rows / batch;
        let ImageShape {
            channels,
            height,
            width,
        } = self.shape;
        let mut h = self.image(z, cond);
        let mut tangent = v.reshape([rows, channels, height, width]);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let seen = if i == 0 { channels } else { usize::MAX };
            let (pre, gate) = layer.forward(h, t);
            tangent = layer.tangent(tangent, seen, gate.as_ref());
            if i == last {
                h = pre;
            } else {
                let (act, slope) = self.activation.apply(pre);
                let numel = act.dims()[1] * height * width;
                let [_, c, _, _] = act.dims();
                tangent = (tangent.reshape([k, batch, numel]) * slope.reshape([1, batch, numel]))
                    .reshape([rows, c, height, width]);
                h = act;
            }
        }
        (
            h.reshape([batch, features]),
            tangent.reshape([rows, features]),
        )
    }
}
