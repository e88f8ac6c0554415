//! The batch-major 3x3 convolution of [`super::batch_major`] on the CPU backend's f32 values,
//! forward and backward, a tile of whole images at a time ([`super::tiles`]), each tile on one
//! thread with its columns and products in the thread's kept buffer.
//!
//! As burn operations (Glow's training step), every product's output was a fresh allocation
//! that the allocator zeroed, the columns another, and the kernel's gradient a product per
//! image summed over the batch afterwards: zeroing alone was a tenth of a Glow 32 training
//! profile. Here a tile's kernel gradient is one product, the tiles' sums added at the end.

use burn::prelude::*;

use super::cpu::{slice, tensor, values, with_scratch};
use super::im2col::TapMasks;
use super::kernel_layout;
use super::tiles::Tiling;
use crate::flex::{Operand, product_into_here, transpose_into};

/// The convolution of `x: [batch, in, h, w]` by `weight: [out, in, 3, 3]` when both hold f32
/// on the CPU backend without autodiff and the batch gives a tile per thread; None elsewhere.
pub(super) fn forward(weight: &Tensor<4>, x: &Tensor<4>) -> Option<Tensor<4>> {
    let [out, cin, _, _] = weight.dims();
    let [batch, _, h, w] = x.dims();
    let tiling = Tiling::new(batch, h * w)?;
    let xv = values(x)?;
    let xs = slice(&xv);
    let masks = TapMasks::new(h * w, [h, w]);
    let wv = values(weight)?;
    let y = if cin <= out {
        // Column t cin + c holds tap t of input channel c.
        let w2 = kernel_layout::taps_inner(slice(&wv), [out, cin]);
        let w2 = &w2[..];
        tiling.each(out, |i, tile, y| {
            let n = tile.columns();
            with_scratch((9 * cin + out) * n, |scratch| {
                let (cols, p) = scratch.split_at_mut(9 * cin * n);
                tile.columns_of(tiling.of(xs, i, cin), cin, &masks, cols);
                let (a, b) = (Operand::rows(w2, 9 * cin), Operand::rows(cols, n));
                tile.into_batch_major(p, out, y, |p| product_into_here(p, [out, n, 9 * cin], a, b));
            })
        })
    } else {
        // Row t out + o holds tap t of output channel o.
        let w9 = kernel_layout::taps_outer(slice(&wv), [out, cin]);
        let w9 = &w9[..];
        tiling.each(out, |i, tile, y| {
            let n = tile.columns();
            with_scratch((cin + 9 * out) * n, |scratch| {
                let (xt, p) = scratch.split_at_mut(cin * n);
                let xt = tile.tile_major(tiling.of(xs, i, cin), cin, xt);
                product_into_here(
                    p,
                    [9 * out, n, cin],
                    Operand::rows(w9, cin),
                    Operand::rows(xt, n),
                );
                tile.shift_sum(p, out, false, &masks, y);
            })
        })
    };
    Some(tensor(y, [batch, out, h, w], &x.device()))
}

/// The gradients of [`forward`] by `x` and by `weight` for the output's gradient `gy`, each
/// when asked for, from the narrower side's columns as [`super::batch_major::backward`]
/// computes them; None where [`forward`] is.
#[allow(clippy::type_complexity)]
pub(super) fn backward(
    weight: &Tensor<4>,
    x: &Tensor<4>,
    gy: &Tensor<4>,
    (wants_x, wants_w): (bool, bool),
) -> Option<(Option<Tensor<4>>, Option<Tensor<4>>)> {
    let [out, cin, _, _] = weight.dims();
    let dims @ [batch, _, h, w] = x.dims();
    let tiling = Tiling::new(batch, h * w)?;
    let device = x.device();
    let (xv, gyv, wv) = (values(x)?, values(gy)?, values(weight)?);
    let (xs, gys) = (slice(&xv), slice(&gyv));
    let masks = TapMasks::new(h * w, [h, w]);
    let gx_rows = wants_x.then_some(cin);
    let sum_len = wants_w.then_some(9 * out * cin);
    let (gx, gw) = if cin <= out {
        let w2 = kernel_layout::taps_inner(slice(&wv), [out, cin]);
        let w2 = &w2[..];
        let (gx, gw) = tiling.each_with_sum(gx_rows, sum_len, |i, tile, gx, gw| {
            let n = tile.columns();
            with_scratch((out + 9 * cin) * n + out * 9 * cin, |scratch| {
                let (gyt, rest) = scratch.split_at_mut(out * n);
                let (p, product) = rest.split_at_mut(9 * cin * n);
                let gyt = tile.tile_major(tiling.of(gys, i, out), out, gyt);
                if let Some(gw) = gw {
                    tile.columns_of(tiling.of(xs, i, cin), cin, &masks, p);
                    add_abt(gw, gyt, p, [out, 9 * cin, n], product);
                }
                if let Some(gx) = gx {
                    let a = Operand::transposed(w2, 9 * cin);
                    product_into_here(p, [9 * cin, n, out], a, Operand::rows(gyt, n));
                    tile.shift_sum(p, cin, true, &masks, gx);
                }
            })
        });
        let gw = gw.map(|gw| kernel_layout::from_taps_inner(&gw, [out, cin]));
        (gx, gw)
    } else {
        // Row t' out + o of the gradient's columns meets tap 8 - t' of the kernel.
        let flipped = kernel_layout::flipped_taps(slice(&wv), [out, cin]);
        let flipped = &flipped[..];
        let (gx, gw) = tiling.each_with_sum(gx_rows, sum_len, |i, tile, gx, gw| {
            let n = tile.columns();
            with_scratch((9 * out + cin) * n + 9 * out * cin, |scratch| {
                let (cols, rest) = scratch.split_at_mut(9 * out * n);
                let (p, product) = rest.split_at_mut(cin * n);
                tile.columns_of(tiling.of(gys, i, out), out, &masks, cols);
                if let Some(gw) = gw {
                    let xt = tile.tile_major(tiling.of(xs, i, cin), cin, p);
                    add_abt(gw, cols, xt, [9 * out, cin, n], product);
                }
                if let Some(gx) = gx {
                    let (a, b) = (Operand::rows(flipped, 9 * out), Operand::rows(cols, n));
                    tile.into_batch_major(p, cin, gx, |p| {
                        product_into_here(p, [cin, n, 9 * out], a, b)
                    });
                }
            })
        });
        let gw = gw.map(|gw| kernel_layout::from_flipped_taps_outer(&gw, [out, cin]));
        (gx, gw)
    };
    let gx = wants_x.then(|| tensor(gx, dims, &device));
    Some((gx, gw.map(|gw| tensor(gw, [out, cin, 3, 3], &device))))
}

/// `acc [m, k] += a [m, n] x b [k, n]^T` through `product` (`m k` values).
///
/// Both operands are transposed first, a block at a time, so that gemm reads them with unit
/// strides: given the rows of `a` and `b` as they are, its packing gathered every value `n`
/// apart, half as long as the products themselves in a Glow 32 training step (each value
/// packed is used only `m` or `k` times).
pub(super) fn add_abt(
    acc: &mut [f32],
    a: &[f32],
    b: &[f32],
    [m, k, n]: [usize; 3],
    product: &mut [f32],
) {
    TRANSPOSED.with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < (m + k) * n {
            kept.resize((m + k) * n, 0.0);
        }
        let (at, bt) = kept.split_at_mut(m * n);
        transpose_into(a, [m, n], at);
        transpose_into(b, [k, n], &mut bt[..k * n]);
        product_into_here(
            product,
            [m, k, n],
            Operand::transposed(at, m),
            Operand::rows(bt, k),
        );
    });
    acc.iter_mut().zip(&*product).for_each(|(v, p)| *v += p);
}

thread_local! {
    /// [`add_abt`]'s transposed operands, kept on the thread across calls.
    static TRANSPOSED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;
    use burn::tensor::ops::ConvOptions;

    use super::*;
    use crate::conv::tests::{assert_each_gradient_alone, assert_matches_conv, on_two_threads};
    use crate::conv::{conv3x3_same, conv3x3_same_with};

    #[test]
    fn transposes_and_weight_products_are_exact() {
        let value = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 7.0;
        // Whole 16 x 16 blocks, blocks with edges on both sides, a single row or column.
        for [rows, cols] in [[16, 16], [33, 20], [1, 5], [7, 1], [48, 32]] {
            let src: Vec<f32> = (0..rows * cols).map(value).collect();
            let mut dst = vec![f32::NAN; rows * cols];
            transpose_into(&src, [rows, cols], &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} at {r},{c}"
                    );
                }
            }
        }
        // The same, large enough to be split over two threads.
        let [rows, cols] = [300, 250];
        let src: Vec<f32> = (0..rows * cols).map(value).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let dst = pool.install(|| crate::flex::transposed(&src, [rows, cols]));
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(dst[c * rows + r], src[r * cols + c], "split, at {r},{c}");
            }
        }
        // acc [m, k] += a [m, n] b [k, n]^T onto an accumulator that already holds values.
        let [m, k, n] = [17, 9, 40];
        let a: Vec<f32> = (0..m * n).map(value).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
        let mut acc: Vec<f32> = (0..m * k).map(|i| i as f32).collect();
        add_abt(&mut acc, &a, &b, [m, k, n], &mut vec![0.0; m * k]);
        for i in 0..m {
            for j in 0..k {
                let e: f32 = (0..n).map(|p| a[i * n + p] * b[j * n + p]).sum();
                let want = (i * k + j) as f32 + e;
                assert!((acc[i * k + j] - want).abs() < 1e-3, "{i},{j}");
            }
        }
    }

    #[test]
    fn the_tiled_convolution_and_its_gradients_equal_burns() {
        on_two_threads(|| {
            let checkpointing = Device::flex().autodiff().gradient_checkpointing();
            for device in [Device::flex().autodiff(), checkpointing] {
                // Narrow in (the input's columns), narrow out (the gradient's), equal, 1x1.
                for (cin, cout, h, w) in [(3, 8, 4, 6), (16, 3, 5, 3), (4, 4, 3, 3), (2, 5, 1, 1)] {
                    let tiling = Tiling::new(5, h * w).expect("tiles for two threads");
                    assert_eq!((tiling.images, tiling.count()), (2, 3));
                    let conv = Conv2dConfig::new([cin, cout], [3, 3])
                        .with_padding(PaddingConfig2d::Same)
                        .init(&device);
                    let x = Tensor::<4>::random([5, cin, h, w], Distribution::Default, &device);
                    let plain =
                        |t: Tensor<4>| Tensor::<4>::from_data(t.into_data(), &Device::flex());
                    let (pw, px) = (plain(conv.weight.val()), plain(x.clone()));
                    assert!(forward(&pw, &px).is_some(), "the tiled path serves");
                    let x = x.require_grad();
                    let ours = conv3x3_same(&conv, x.clone());
                    assert_matches_conv(&conv, x, ours, &format!("{cin}->{cout} at {h}x{w}"));
                }
            }
        });
    }

    #[test]
    fn each_tiled_gradient_is_right_when_only_it_is_asked_for() {
        on_two_threads(|| {
            let device = Device::flex().autodiff();
            for (cin, cout) in [(3, 8), (8, 3)] {
                let weight = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Default, &device);
                let x = Tensor::<4>::random([5, cin, 4, 5], Distribution::Default, &device);
                let ours = |w, x| conv3x3_same_with(w, None, x);
                let reference = |w, x| {
                    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
                    burn::tensor::module::conv2d(x, w, None, options)
                };
                let case = format!("{cin}->{cout}");
                assert_each_gradient_alone(weight, x, ours, reference, &case);
            }
        });
    }
}
