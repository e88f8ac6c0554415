//! A 3x3 kernel `[out, in, 3, 3]` rearranged for the products of [`super::im2col`]'s columns,
//! and the kernel gradients back, in loops over the values.
//!
//! As burn's `permute(..).reshape(..)` each rearrangement was a strided copy value by value on
//! the calling thread, four to six per convolution per training step: 3-4% of a Glow 32
//! training step for kernels of a few thousand values.

/// `w [out, in, 9]` as `[out, 9, in]`: row `o` holds tap `t` of input channel `c` at `t in + c`.
pub(super) fn taps_inner(w: &[f32], [out, cin]: [usize; 2]) -> Vec<f32> {
    let mut dst = vec![0.0; w.len()];
    for o in 0..out {
        for c in 0..cin {
            for t in 0..9 {
                dst[(o * 9 + t) * cin + c] = w[(o * cin + c) * 9 + t];
            }
        }
    }
    dst
}

/// `w [out, in, 9]` as `[9, out, in]`: row `t out + o` holds tap `t` of output channel `o`.
pub(super) fn taps_outer(w: &[f32], [out, cin]: [usize; 2]) -> Vec<f32> {
    let mut dst = vec![0.0; w.len()];
    for o in 0..out {
        for c in 0..cin {
            for t in 0..9 {
                dst[(t * out + o) * cin + c] = w[(o * cin + c) * 9 + t];
            }
        }
    }
    dst
}

/// `w [out, in, 9]` flipped in both directions and as `[in, 9, out]`: row `c` holds tap
/// `8 - t` of output channel `o` at `t out + o` (the adjoint's kernel).
pub(super) fn flipped_taps(w: &[f32], [out, cin]: [usize; 2]) -> Vec<f32> {
    let mut dst = vec![0.0; w.len()];
    for o in 0..out {
        for c in 0..cin {
            for t in 0..9 {
                dst[(c * 9 + t) * out + o] = w[(o * cin + c) * 9 + 8 - t];
            }
        }
    }
    dst
}

/// [`taps_inner`]'s layout `[out, 9, in]` back to `[out, in, 9]`.
pub(super) fn from_taps_inner(g: &[f32], [out, cin]: [usize; 2]) -> Vec<f32> {
    let mut dst = vec![0.0; g.len()];
    for o in 0..out {
        for t in 0..9 {
            for c in 0..cin {
                dst[(o * cin + c) * 9 + t] = g[(o * 9 + t) * cin + c];
            }
        }
    }
    dst
}

/// `[9, out, in]` with the taps flipped (row `t out + o` holds tap `8 - t`) back to
/// `[out, in, 9]`.
pub(super) fn from_flipped_taps_outer(g: &[f32], [out, cin]: [usize; 2]) -> Vec<f32> {
    let mut dst = vec![0.0; g.len()];
    for t in 0..9 {
        for o in 0..out {
            for c in 0..cin {
                dst[(o * cin + c) * 9 + 8 - t] = g[(t * out + o) * cin + c];
            }
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;
    use burn::tensor::Distribution;

    use super::*;

    fn vec4(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_layouts_equal_burns_permutations() {
        let device = Device::flex();
        for [out, cin] in [[5, 3], [1, 4], [12, 1]] {
            let w = Tensor::<4>::random([out, cin, 3, 3], Distribution::Default, &device);
            let values = vec4(w.clone());
            let dims = [out, cin];
            assert_eq!(
                taps_inner(&values, dims),
                vec4(w.clone().permute([0, 2, 3, 1]))
            );
            assert_eq!(
                taps_outer(&values, dims),
                vec4(w.clone().permute([2, 3, 0, 1]))
            );
            let flipped = w.clone().flip([2, 3]).permute([1, 2, 3, 0]);
            assert_eq!(flipped_taps(&values, dims), vec4(flipped));
            // The gradients' layouts back, as the backward passes built them.
            let inner = taps_inner(&values, dims);
            let back =
                Tensor::<4>::from_data(TensorData::new(inner.clone(), [out, 3, 3, cin]), &device);
            assert_eq!(
                from_taps_inner(&inner, dims),
                vec4(back.permute([0, 3, 1, 2]))
            );
            let outer = taps_outer(&values, dims);
            let back =
                Tensor::<4>::from_data(TensorData::new(outer.clone(), [3, 3, out, cin]), &device);
            let want = vec4(back.flip([0, 1]).permute([2, 3, 0, 1]));
            assert_eq!(from_flipped_taps_outer(&outer, dims), want);
        }
    }
}
