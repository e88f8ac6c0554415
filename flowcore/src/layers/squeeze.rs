//! Squeeze (RealNVP, Glow): 2x2 space-to-depth, `C x H x W -> 4C x H/2 x W/2`. Volume
//! preserving; it lets later couplings mix neighbouring pixels.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::ImageShape;
use crate::layer::BuildLayer;
use crate::tensor_util::zero_logdet;
use crate::{Bijector, DataInit, FlowError, Result};

/// 2x2 space-to-depth of images of `shape`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqueezeSpec {
    /// Input shape.
    pub shape: ImageShape,
}

impl BuildLayer for SqueezeSpec {
    type Layer = Squeeze;

    fn build(&self, _device: &Device) -> Result<Squeeze> {
        Squeeze::new(self.shape)
    }
}

/// Space-to-depth of images of the given (input) shape. Output channel `4c + 2i + j` holds the
/// pixels at row offset `i`, column offset `j` of input channel `c`.
#[derive(Module, Debug)]
pub struct Squeeze {
    #[module(skip)]
    shape: ImageShape,
}

impl Squeeze {
    /// Squeeze of `shape`, whose height and width must be even.
    pub fn new(shape: ImageShape) -> Result<Self> {
        if !shape.height.is_multiple_of(2) || !shape.width.is_multiple_of(2) || shape.spatial() == 0
        {
            return Err(FlowError::config(format!(
                "squeeze needs an even height and width, got an image of {shape}"
            )));
        }
        Ok(Self { shape })
    }

    /// The shape after squeezing.
    pub fn output_shape(&self) -> ImageShape {
        let s = self.shape;
        ImageShape::new(s.channels * 4, s.height / 2, s.width / 2)
    }
}

impl Bijector for Squeeze {
    fn forward(&self, x: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let ImageShape {
            channels: c,
            height: h,
            width: w,
        } = self.shape;
        let [batch, dim] = x.dims();
        let ld = zero_logdet(&x);
        let z = x
            .reshape([batch, c, h / 2, 2, w / 2, 2])
            .permute([0, 1, 3, 5, 2, 4])
            .reshape([batch, dim]);
        (z, ld)
    }

    fn inverse(&self, z: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let ImageShape {
            channels: c,
            height: h,
            width: w,
        } = self.shape;
        let [batch, dim] = z.dims();
        let ld = zero_logdet(&z);
        let x = z
            .reshape([batch, c, 2, 2, h / 2, w / 2])
            .permute([0, 1, 4, 2, 5, 3])
            .reshape([batch, dim]);
        (x, ld)
    }

    fn dim(&self) -> usize {
        self.shape.numel()
    }
}

impl DataInit for Squeeze {}
