//! The matrix products of [`super::channel_major`]'s operation for batch-major images
//! (`[batch, c, h, w]`, `Conv2d`'s layout), one batched product per convolution (`[out, 9 in] x
//! [9 in, h w]` for every image), so that Glow's coupling networks train without transposing
//! their activations: the transposes were 8% of a Glow 32 training step and a few hundred MiB
//! of transient copies at 128x128. On the CPU backend's f32 values both passes run in tiles of
//! whole images instead ([`super::batch_major_cpu`]); these burn compositions serve CubeCL and
//! batches too small to give every thread a tile.

use burn::prelude::*;

use super::contiguous;
use super::im2col::{columns_batch_major, shift_sum_batch_major};

/// The convolution of `x: [batch, in, h, w]` by `weight: [out, in, 3, 3]`: from the input's
/// columns when it is the narrower side, else one product per tap stacked, shifted and summed.
pub(super) fn forward(weight: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
    if let Some(y) = super::batch_major_cpu::forward(weight, x) {
        return y;
    }
    let [out, channels, _, _] = weight.dims();
    let [batch, _, h, w] = x.dims();
    if channels <= out {
        let w2 = weight
            .clone()
            .permute([0, 2, 3, 1])
            .reshape([1, out, 9 * channels]);
        w2.matmul(columns_batch_major(x.clone()))
            .reshape([batch, out, h, w])
    } else {
        let w9 = weight
            .clone()
            .permute([2, 3, 0, 1])
            .reshape([1, 9 * out, channels]);
        let p = w9.matmul(x.clone().reshape([batch, channels, h * w]));
        shift_sum_batch_major(p.reshape([batch, 9 * out, h, w]), false)
    }
}

/// The gradients of [`forward`] by `x` and by `weight` for the output's gradient `gy`, each
/// when asked for (as the channel-major backward pass, per image; the kernel's summed over
/// the batch).
pub(super) fn backward(
    weight: &Tensor<4>,
    x: &Tensor<4>,
    gy: Tensor<4>,
    wants: (bool, bool),
) -> (Option<Tensor<4>>, Option<Tensor<4>>) {
    if let Some(grads) = super::batch_major_cpu::backward(weight, x, &gy, wants) {
        return grads;
    }
    let [out, channels, _, _] = weight.dims();
    let [batch, _, h, w] = x.dims();
    let n = h * w;
    let sum_over_batch = |t: Tensor<3>| t.sum_dim(0).squeeze_dim::<2>(0);
    if channels <= out {
        let gy = gy.reshape([batch, out, n]);
        let gw = wants.1.then(|| {
            let cols = columns_batch_major(x.clone());
            sum_over_batch(gy.clone().matmul(cols.swap_dims(1, 2)))
                .reshape([out, 3, 3, channels])
                .permute([0, 3, 1, 2])
        });
        let gw = gw.map(contiguous);
        let gx = wants.0.then(|| {
            let w2t = weight
                .clone()
                .permute([0, 2, 3, 1])
                .reshape([out, 9 * channels])
                .transpose()
                .reshape([1, 9 * channels, out]);
            shift_sum_batch_major(w2t.matmul(gy).reshape([batch, 9 * channels, h, w]), true)
        });
        (gx, gw)
    } else {
        // Row t' out + o of the gradient's columns meets tap 8 - t' of the kernel.
        let cols = columns_batch_major(gy);
        let gw = wants.1.then(|| {
            let xt = x.clone().reshape([batch, channels, n]).swap_dims(1, 2);
            sum_over_batch(cols.clone().matmul(xt))
                .reshape([3, 3, out, channels])
                .flip([0, 1])
                .permute([2, 3, 0, 1])
        });
        let gw = gw.map(contiguous);
        let gx = wants.0.then(|| {
            let flipped =
                weight
                    .clone()
                    .flip([2, 3])
                    .permute([1, 2, 3, 0])
                    .reshape([1, channels, 9 * out]);
            flipped.matmul(cols).reshape([batch, channels, h, w])
        });
        (gx, gw)
    }
}
