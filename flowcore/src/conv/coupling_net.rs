//! Glow's coupling network (3x3 convolution, ReLU, 1x1 convolution, ReLU, 3x3 convolution)
//! without autodiff on the CPU backend, a tile of whole images at a time, the tiles split over
//! rayon's threads.
//!
//! Layer by layer, each product over the whole batch was split over the threads and each
//! intermediate was a fresh batch-sized tensor passed over three more times (bias, ReLU, a
//! layout change into and out of channel-major): a quarter of a Glow 32 scoring profile outside
//! the products, and the products themselves read operands from memory rather than cache.
//! Per tile of about 2048 pixels the four intermediates stay in the core's cache, the bias and
//! ReLU are applied while a product's output is still there, and the input and output keep
//! the caller's batch-major layout.

use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::cpu::{slice, tensor, values, with_scratch};
use super::im2col::TapMasks;
use super::kernel_layout;
use super::tiles::Tiling;
use crate::flex::{Operand, product_into_here};
use crate::simd::widest;

/// `last(relu(hidden(relu(first(x)))))` for batch-major `x: [batch, in, h, w]`, giving
/// `[batch, out, h, w]`, when the tensors hold f32 on the CPU backend without autodiff and
/// the batch makes at least a tile per thread; None elsewhere. `first` and `last` are 3x3
/// "same" convolutions and `hidden` a 1x1 one, with burn's `Conv2d` parameters.
pub(crate) fn coupling_net(
    first: &Conv2d,
    hidden: &Conv2d,
    last: &Conv2d,
    x: &Tensor<4>,
) -> Option<Tensor<4>> {
    if x.device().is_autodiff() {
        return None;
    }
    let [batch, _, h, w] = x.dims();
    // Too few tiles for the threads: the layer-by-layer products split better.
    let tiling = Tiling::new(batch, h * w)?;
    on_tiles(first, hidden, last, x, tiling.images)
}

/// [`coupling_net`] in tiles of `images` images (the last one may hold fewer).
fn on_tiles(
    first: &Conv2d,
    hidden: &Conv2d,
    last: &Conv2d,
    x: &Tensor<4>,
    images: usize,
) -> Option<Tensor<4>> {
    let [batch, cin, h, w] = x.dims();
    let hid = first.weight.dims()[0];
    let out = last.weight.dims()[0];
    let plane = h * w;
    // Column t cin + c of w1 (row t out + o of w3) holds tap t of input channel c (output o).
    let w1 = kernel_layout::taps_inner(slice(&values(&first.weight.val())?), [hid, cin]);
    let w3 = kernel_layout::taps_outer(slice(&values(&last.weight.val())?), [out, hid]);
    let w2 = values(&hidden.weight.val().reshape([hid, hid]))?;
    let bias = |conv: &Conv2d, n: usize| match &conv.bias {
        Some(b) => values(&b.val()).map(|v| slice(&v).to_vec()),
        None => Some(vec![0.0; n]),
    };
    let (b1, b2, b3) = (bias(first, hid)?, bias(hidden, hid)?, bias(last, out)?);
    let xv = values(x)?;
    let (xs, w1, w2, w3) = (slice(&xv), &w1[..], slice(&w2), &w3[..]);
    let masks = TapMasks::new(plane, [h, w]);

    let tiling = Tiling {
        batch,
        images,
        plane,
    };
    let y = tiling.each(out, |i, tile, y| {
        let n = tile.columns();
        let x = tiling.of(xs, i, cin);
        with_scratch((9 * cin + 2 * hid + 9 * out) * n, |scratch| {
            let (cols, rest) = scratch.split_at_mut(9 * cin * n);
            let (h1, rest) = rest.split_at_mut(hid * n);
            let (h2, p) = rest.split_at_mut(hid * n);
            tile.columns_of(x, cin, &masks, cols);
            let rows = Operand::rows;
            product_into_here(h1, [hid, n, 9 * cin], rows(w1, 9 * cin), rows(cols, n));
            bias_relu(h1, &b1, n);
            product_into_here(h2, [hid, n, hid], rows(w2, hid), rows(h1, n));
            bias_relu(h2, &b2, n);
            product_into_here(p, [9 * out, n, hid], rows(w3, hid), rows(h2, n));
            tile.shift_sum(p, out, false, &masks, y);
            widest(
                #[inline(always)]
                || {
                    for (plane_out, o) in y.chunks_exact_mut(plane.max(1)).zip((0..out).cycle()) {
                        plane_out.iter_mut().for_each(|v| *v += b3[o]);
                    }
                },
            );
        })
    });
    Some(tensor(y, [batch, out, h, w], &x.device()))
}

/// Row `r` of the `n`-column `rows` plus `bias[r]`, then ReLU; NaN stays NaN, as in burn's.
fn bias_relu(rows: &mut [f32], bias: &[f32], n: usize) {
    widest(
        #[inline(always)]
        || {
            for (row, &b) in rows.chunks_exact_mut(n.max(1)).zip(bias) {
                for v in row {
                    let s = *v + b;
                    *v = if s < 0.0 { 0.0 } else { s };
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;
    use burn::tensor::activation::relu;

    use super::*;
    use crate::testing::perturb_params;

    #[test]
    fn the_tiled_network_equals_burns_layers() {
        let device = Device::flex();
        let conv = |cin, cout, k: usize, seed| {
            let c = Conv2dConfig::new([cin, cout], [k, k]);
            let c = if k == 3 {
                c.with_padding(PaddingConfig2d::Same)
            } else {
                c
            };
            perturb_params(c.init(&device), 0.3, seed)
        };
        // Glow's shapes (narrow in and out, wide hidden), 1x1 images, and no bias at the end.
        for (cin, hid, out, [h, w], bias) in [
            (3, 16, 6, [6, 4], true),
            (2, 8, 4, [1, 1], true),
            (4, 5, 8, [3, 5], false),
        ] {
            let first = conv(cin, hid, 3, 1);
            let hidden = conv(hid, hid, 1, 2);
            let mut last = conv(hid, out, 3, 3);
            if !bias {
                last.bias = None;
            }
            let x = Tensor::<4>::random([5, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
            let expected = last.forward(relu(hidden.forward(relu(first.forward(x.clone())))));
            // One image per tile, two with a short last tile, all in one.
            for images in [1, 2, 5] {
                let ours = on_tiles(&first, &hidden, &last, &x, images).expect("CPU f32");
                let d = (ours - expected.clone()).abs().max().into_scalar::<f32>();
                assert!(
                    d < 1e-5,
                    "{cin}->{hid}->{out} at {h}x{w}, {images}/tile: {d}"
                );
            }
        }
        // A NaN input reaches the output rather than being clipped away by the ReLU.
        let (first, hidden, last) = (conv(1, 4, 3, 4), conv(4, 4, 1, 5), conv(4, 2, 3, 6));
        let x = Tensor::<4>::from_data([[[[f32::NAN]]], [[[0.5]]]], &device);
        let y = on_tiles(&first, &hidden, &last, &x, 1).expect("CPU f32");
        let y = y.into_data().try_to_vec::<f32>().unwrap();
        assert!(y[..2].iter().all(|v| v.is_nan()) && y[2..].iter().all(|v| v.is_finite()));
        // Autodiff tensors are left to the tracked layers.
        let tracked = Tensor::<4>::zeros([4, 1, 2, 2], &device.autodiff());
        assert!(coupling_net(&first, &hidden, &last, &tracked).is_none());
    }
}
