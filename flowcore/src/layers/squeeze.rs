//! Squeeze (RealNVP, Glow): 2x2 space-to-depth, `C x H x W -> 4C x H/2 x W/2`. Volume
//! preserving; it lets later couplings mix neighbouring pixels.

use burn::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::ImageShape;
use crate::flex;
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

    /// The squeeze (or for `inverse` its inverse) of plain CPU f32 rows, each row one task on
    /// the cores; None elsewhere. burn's permute copies through a six-axis index on the calling
    /// thread.
    fn one_pass(&self, x: &Tensor<2>, inverse: bool) -> Option<Tensor<2>> {
        if x.device().is_autodiff() {
            return None;
        }
        let values = flex::values(x)?;
        let xs = flex::slice(&values);
        let [batch, dim] = x.dims();
        let ImageShape {
            channels,
            height: h,
            width: w,
        } = self.shape;
        let (h2, w2) = (h / 2, w / 2);
        let mut out = Vec::<f32>::with_capacity(batch * dim);
        out.spare_capacity_mut()[..batch * dim]
            .par_chunks_mut(dim)
            .zip(xs.par_chunks(dim))
            .with_min_len((ROW_VALUES_PER_TASK / dim).max(1))
            .for_each(|(out, x)| {
                // In the order of the image's own pixels; squeezed channel `4c + 2dy + dx`.
                let mut pixel = 0;
                for c in 0..channels {
                    for i in 0..h2 {
                        for dy in 0..2 {
                            for j in 0..w2 {
                                for dx in 0..2 {
                                    let squeezed = ((4 * c + 2 * dy + dx) * h2 + i) * w2 + j;
                                    let (to, from) = if inverse {
                                        (pixel, squeezed)
                                    } else {
                                        (squeezed, pixel)
                                    };
                                    out[to].write(x[from]);
                                    pixel += 1;
                                }
                            }
                        }
                    }
                }
            });
        // SAFETY: each row above wrote its `dim` values, one per pixel.
        unsafe { out.set_len(batch * dim) };
        Some(flex::tensor(out, [batch, dim], &x.device()))
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
        if let Some(z) = self.one_pass(&x, false) {
            return (z, ld);
        }
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
        if let Some(x) = self.one_pass(&z, true) {
            return (x, ld);
        }
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

/// Values per task of [`Squeeze`]'s pass.
const ROW_VALUES_PER_TASK: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// The one pass against burn's permutes (the autodiff device's path), both ways, small and
    /// split batches, non-square images.
    #[test]
    fn the_one_pass_squeeze_equals_burns_permute() {
        let (device, ad) = (Device::flex(), Device::flex().autodiff());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (shape, batch) in [
            (ImageShape::new(3, 4, 6), 2),
            (ImageShape::new(2, 8, 4), 700),
        ] {
            let squeeze = Squeeze::new(shape).unwrap();
            let x = Tensor::<2>::random([batch, shape.numel()], Distribution::Default, &device);
            for inverse in [false, true] {
                let got = pool
                    .install(|| squeeze.one_pass(&x, inverse))
                    .expect("plain f32");
                let x_ad = Tensor::<2>::from_data(x.to_data(), &ad);
                let (want, _) = if inverse {
                    squeeze.inverse(x_ad, None)
                } else {
                    squeeze.forward(x_ad, None)
                };
                assert_eq!(
                    got.to_data(),
                    want.inner().to_data(),
                    "{shape} inverse={inverse}"
                );
            }
        }
    }
}
