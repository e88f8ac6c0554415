//! The dense layer of the parameter networks, `act(x W + b)`, as one operation on the CPU
//! backend, tracked or not: the rows are split over the threads, and each thread adds the bias
//! and rectifies its rows while its product's output is still in cache.
//!
//! As burn operations a layer was a product, a bias add, a ReLU and, backward, a mask, a
//! product by it and a column sum, each a pass over the `[batch, width]` activations into a
//! fresh allocation, run on the calling thread while the other cores polled: about 13% of the
//! 2-D RealNVP's training step (`zip_map` 4.0%, `zip_apply_inplace` 2.8%, `binary_op` 1.6%,
//! `reduce_dim` 1.5%, the zeroing and copies of the product's outputs 2.7%).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

use super::{Activation, narrow};
use std::mem::MaybeUninit;

use crate::flex::{
    Operand, parallel, primitive, product, product_into_uninit, slice, tensor, transposed, values,
};
use crate::simd::widest;

/// `x [batch, in] -> x W + b` of a linear layer, then `activation` when given.
pub(crate) fn dense(layer: &Linear, x: Tensor<2>, activation: Option<Activation>) -> Tensor<2> {
    let bias = layer.bias.as_ref().map(|b| b.val());
    dense_with(layer.weight.val(), bias, x, activation)
}

/// [`dense`] with the weight `[in, out]` and bias given as tensors (a MADE's masked weight).
pub(crate) fn dense_with(
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    x: Tensor<2>,
    activation: Option<Activation>,
) -> Tensor<2> {
    if let (Some(bias), Some(rectifier)) = (&bias, Rectifier::of(activation)) {
        let fused = if x.device().is_autodiff() {
            tracked::<NoCheckpointing>(&x, &weight, bias, rectifier)
                .or_else(|| tracked::<BalancedCheckpointing>(&x, &weight, bias, rectifier))
        } else {
            untracked(&x, &weight, bias, rectifier)
        };
        if let Some(y) = fused {
            return y;
        }
    }
    let y = super::product::product(x, weight);
    let y = match bias {
        Some(b) => y + b.unsqueeze(),
        None => y,
    };
    match activation {
        Some(a) => a.apply(y),
        None => y,
    }
}

/// The activations fused into the layer: the identity, and `max(x, 0) + slope min(x, 0)`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rectifier {
    Identity,
    Slope(f32),
}

impl Rectifier {
    fn of(activation: Option<Activation>) -> Option<Self> {
        match activation {
            None => Some(Self::Identity),
            Some(Activation::Relu) => Some(Self::Slope(0.0)),
            Some(Activation::LeakyRelu) => Some(Self::Slope(0.01)),
            Some(_) => None,
        }
    }
}

/// The fewest rows of a thread's part. Shorter parts ran slower than gemm's own split of the
/// whole product: app 1's 12 x [512, 512] at batch 128 (64 rows a part on 2 cores) 63.3 ->
/// 58.3 steps/s, where 8 x [256, 256] at batch 128 and the 2-D RealNVP at 1024 (512 rows a
/// part) ran alike either way.
const MIN_PART_ROWS: usize = 128;

/// The fewest weights of a layer whose transpose the backward pass writes out.
const WRITTEN_OUT_TRANSPOSE: usize = 1 << 18;

/// Rows per thread's part of a `[m, n]` output whose rows each take `k` multiply-adds, and
/// whether one part's product is split over the threads instead: all rows in one part when the
/// work is too small to split or the parts would be too short for the kernel.
fn parts([m, n, k]: [usize; 3]) -> (usize, bool) {
    let threads = rayon::current_num_threads().max(1);
    if narrow::is_narrow(n, k) {
        return match narrow::worth_splitting(m, n * k) {
            true => (m.div_ceil(threads), false),
            false => (m.max(1), false),
        };
    }
    if !parallel(m, n, k) {
        (m.max(1), false)
    } else if m / threads >= MIN_PART_ROWS {
        (m.div_ceil(threads), false)
    } else {
        (m.max(1), true)
    }
}

fn untracked(
    x: &Tensor<2>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
    r: Rectifier,
) -> Option<Tensor<2>> {
    let ([m, k], n) = (x.dims(), weight.dims()[1]);
    let (xv, wv, bv) = (values(x)?, values(weight)?, values(bias)?);
    let y = forward_values(slice(&xv), slice(&wv), slice(&bv), [m, n, k], r);
    Some(tensor(y, [m, n], &x.device()))
}

/// `rectify(x [m, k] W [k, n] + b)`, row-major.
fn forward_values(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    [m, n, k]: [usize; 3],
    r: Rectifier,
) -> Vec<f32> {
    let (rows, split) = parts([m, n, k]);
    let wt = if narrow::is_narrow(n, k) {
        narrow::transposed(w, k, n)
    } else {
        Vec::new()
    };
    let part = |i: usize, y: &mut [MaybeUninit<f32>]| {
        let x = &x[i * rows * k..][..y.len() / n * k];
        let mnk = [x.len() / k, n, k];
        let y = if narrow::is_narrow(n, k) {
            narrow::product_into(y, x, (w, &wt), mnk)
        } else {
            product_into_uninit(y, mnk, Operand::rows(x, k), Operand::rows(w, n), split)
        };
        rectify_rows(y, n, b, r);
    };
    // SAFETY: `part` writes every value of its part (the product's `read_dst` is off) before
    // reading it.
    unsafe { written_in_parts(m * n, rows * n, part) }
}

/// `y`'s rows of `n` values plus `b`, then rectified.
fn rectify_rows(y: &mut [f32], n: usize, b: &[f32], r: Rectifier) {
    widest(
        #[inline(always)]
        || {
            for row in y.chunks_exact_mut(n) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                match r {
                    Rectifier::Identity => {}
                    Rectifier::Slope(0.0) => row.iter_mut().for_each(|v| *v = v.max(0.0)),
                    Rectifier::Slope(s) => row.iter_mut().for_each(|v| {
                        *v = if *v > 0.0 { *v } else { *v * s };
                    }),
                }
            }
        },
    )
}

/// A vector of `len` values whose parts of `part` values (the last one may be shorter) `f`
/// writes in parallel, given each part's index and its unwritten memory.
///
/// # Safety
/// `f` must write every value of the part it is given.
unsafe fn written_in_parts(
    len: usize,
    part: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(part.max(1))
        .enumerate()
        .for_each(|(i, part)| f(i, part));
    // SAFETY: the caller's `f` wrote every part, which together are the first `len` values.
    unsafe { out.set_len(len) };
    out
}

/// The gradients by `x`, `W` and `b` (each when wanted) of [`forward_values`]'s output `y`
/// for its gradient `gy`.
struct Gradient<'a> {
    x: &'a [f32],
    w: &'a [f32],
    y: &'a [f32],
    gy: &'a [f32],
    mnk: [usize; 3],
    rectifier: Rectifier,
}

#[allow(clippy::type_complexity)]
impl Gradient<'_> {
    fn compute(&self, wants: [bool; 3]) -> (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>) {
        let [m, n, k] = self.mnk;
        let (rows, split) = parts(self.mnk);
        // The gradient before the rectifier: `gy` itself through the identity.
        let gz_owned = match self.rectifier {
            Rectifier::Identity => None,
            // SAFETY: each part is written value by value from the same-length parts of `y`
            // and `gy`.
            Rectifier::Slope(s) => Some(unsafe {
                written_in_parts(m * n, rows * n, |i, gz| {
                    let at = i * rows * n..i * rows * n + gz.len();
                    let (y, gy) = (&self.y[at.clone()], &self.gy[at]);
                    let pairs = gz.iter_mut().zip(y).zip(gy);
                    widest(
                        #[inline(always)]
                        || {
                            if s == 0.0 {
                                // 0, not gy x 0, where gy is not finite, as burn's mask gives.
                                pairs.for_each(|((g, &y), &gy)| {
                                    g.write(if y > 0.0 { gy } else { 0.0 });
                                });
                            } else {
                                pairs.for_each(|((g, &y), &gy)| {
                                    g.write(if y > 0.0 { gy } else { gy * s });
                                });
                            }
                        },
                    )
                })
            }),
        };
        let gz: &[f32] = gz_owned.as_deref().unwrap_or(self.gy);
        let gb = wants[2].then(|| column_sums(gz, n, rows));
        let gx = wants[0].then(|| {
            // `gz [m, n] x W^T [n, k]`; W^T's transpose is W. A large W^T is written out: read
            // through W's strides, gemm gathered it value by value into its packed panels (a
            // fifth of application 1's 12 x [512, 512] training step; 12.6 -> 4.9% of the
            // profile, +7% steps/s). At 256 x 256 writing it out cost more than it saved
            // (application 1's 8 x [256, 256] -4% in paired runs).
            let wt = if narrow::is_narrow(k, n) {
                Some(narrow::transposed(self.w, k, n))
            } else if k * n >= WRITTEN_OUT_TRANSPOSE {
                Some(transposed(self.w, [k, n]))
            } else {
                None
            };
            let part = |i: usize, gx: &mut [MaybeUninit<f32>]| {
                let gz = &gz[i * rows * n..][..gx.len() / k * n];
                let mnk = [gz.len() / n, k, n];
                if narrow::is_narrow(k, n) {
                    let wt = wt.as_deref().expect("written out");
                    narrow::product_into(gx, gz, (wt, self.w), mnk);
                } else {
                    let wt = match &wt {
                        Some(wt) => Operand::rows(wt, k),
                        None => Operand::transposed(self.w, n),
                    };
                    product_into_uninit(gx, mnk, Operand::rows(gz, n), wt, split);
                }
            };
            // SAFETY: `part` writes every value of its part (the product's `read_dst` is off).
            unsafe { written_in_parts(m * k, rows * k, part) }
        });
        let gw = wants[1].then(|| {
            if k <= narrow::NARROW {
                narrow::outer_sum(self.x, k, gz, n, rows)
            } else if n <= narrow::NARROW {
                narrow::transposed(&narrow::outer_sum(gz, n, self.x, k, rows), n, k)
            } else {
                let xt = Operand::transposed(self.x, k);
                product([k, n, m], xt, Operand::rows(gz, n))
            }
        });
        (gx, gw, gb)
    }
}

/// The sums of the `n` columns of a row-major matrix, in parts of `rows` rows in parallel.
fn column_sums(values: &[f32], n: usize, rows: usize) -> Vec<f32> {
    values
        .par_chunks((rows * n).max(1))
        .map(|part| {
            widest(
                #[inline(always)]
                || part.chunks_exact(n).fold(vec![0.0f32; n], add),
            )
        })
        .reduce(|| vec![0.0f32; n], |a, b| add(a, &b))
}

#[inline(always)]
fn add(mut acc: Vec<f32>, values: &[f32]) -> Vec<f32> {
    acc.iter_mut().zip(values).for_each(|(s, v)| *s += v);
    acc
}

fn tracked<C: CheckpointStrategy>(
    x: &Tensor<2>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
    rectifier: Rectifier,
) -> Option<Tensor<2>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || bias.dtype() != DType::F32 {
        return None;
    }
    let x = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let w = weight
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let b = bias
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let plain_x = Tensor::<2>::from_primitive::<Flex>(x.primitive().clone());
    let plain_w = Tensor::<2>::from_primitive::<Flex>(w.primitive().clone());
    let plain_b = Tensor::<1>::from_primitive::<Flex>(b.primitive().clone());
    let y = untracked(&plain_x, &plain_w, &plain_b, rectifier)?;
    let y_primitive = primitive::<Flex, 2>(y.clone());
    let out = match <DenseLayer as Backward<Flex, 3>>::prepare::<C>(
        DenseLayer(rectifier),
        [x.node(), w.node(), b.node()],
    )
    .compute_bound()
    .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((plain_x, plain_w, y), y_primitive),
        OpsKind::UnTracked(prep) => prep.finish(y_primitive),
    };
    Some(Tensor::<2>::from_primitive::<Autodiff<Flex, C>>(out))
}

#[derive(Debug)]
struct DenseLayer(Rectifier);

impl Backward<Flex, 3> for DenseLayer {
    /// The input, the weight and the output.
    type State = (Tensor<2>, Tensor<2>, Tensor<2>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, w_node, b_node] = ops.parents;
        let gy = Tensor::<2>::from_primitive::<Flex>(grads.consume::<Flex>(&ops.node));
        let (x, w, y) = ops.state;
        let ([m, k], n) = (x.dims(), w.dims()[1]);
        let device = x.device();
        let all = [&x, &w, &y, &gy].map(|t| values(t).expect("the dense layer's f32 values"));
        let gradient = Gradient {
            x: slice(&all[0]),
            w: slice(&all[1]),
            y: slice(&all[2]),
            gy: slice(&all[3]),
            mnk: [m, n, k],
            rectifier: self.0,
        };
        let wants = [x_node.is_some(), w_node.is_some(), b_node.is_some()];
        let (gx, gw, gb) = gradient.compute(wants);
        if let (Some(node), Some(gx)) = (x_node, gx) {
            grads.register::<Flex>(node.id, primitive::<Flex, 2>(tensor(gx, [m, k], &device)));
        }
        if let (Some(node), Some(gw)) = (w_node, gw) {
            grads.register::<Flex>(node.id, primitive::<Flex, 2>(tensor(gw, [k, n], &device)));
        }
        if let (Some(node), Some(gb)) = (b_node, gb) {
            let gb = Tensor::<1>::from_data(TensorData::new(gb, [n]), &device);
            grads.register::<Flex>(node.id, primitive::<Flex, 1>(gb));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    use super::*;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// burn's composition of the same layer.
    fn reference(layer: &Linear, x: Tensor<2>, activation: Option<Activation>) -> Tensor<2> {
        let y = x.matmul(layer.weight.val()) + layer.bias.as_ref().unwrap().val().unsqueeze();
        match activation {
            Some(a) => a.apply(y),
            None => y,
        }
    }

    #[test]
    fn the_fused_layer_and_its_gradients_equal_burns_composition() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let checkpointing = Device::flex().autodiff().gradient_checkpointing();
            for device in [Device::flex(), Device::flex().autodiff(), checkpointing] {
                let normal = |shape: [usize; 2]| {
                    let t = Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
                    if device.is_autodiff() {
                        t.require_grad()
                    } else {
                        t
                    }
                };
                // One and three input features, two outputs (narrow: row by row); rows in two
                // parts (an odd count; narrow ones below); rows too few for parts, the product split by gemm; one
                // row. The input tracked (a hidden layer) and not (the first layer).
                for (m, k, n) in [
                    (37, 1, 16),
                    (5, 3, 7),
                    (40, 37, 2),
                    (301, 96, 128),
                    (120, 100, 96),
                    (1, 5, 3),
                    // Narrow layers with work enough to split: rows in two parts.
                    (260, 1, 256),
                    (131, 256, 2),
                ] {
                    let expected = match m {
                        301 => (151, false),
                        120 => (120, true),
                        260 => (130, false),
                        131 => (66, false),
                        _ => (m, false),
                    };
                    assert_eq!(parts([m, n, k]), expected, "{m}x{k}x{n}");
                    for (activation, x_tracked) in [
                        (None, true),
                        (Some(Activation::Relu), true),
                        (Some(Activation::Relu), false),
                        (Some(Activation::LeakyRelu), true),
                    ] {
                        let case = format!("{m}x{k}x{n} {activation:?}, input tracked {x_tracked}");
                        let mut layer = LinearConfig::new(k, n).init(&device);
                        // A bias that puts about half of the outputs below zero.
                        let bias = Tensor::random([n], Distribution::Normal(0.0, 1.0), &device);
                        layer.bias = Some(burn::module::Param::from_tensor(bias));
                        let x = normal([m, k]);
                        let x = if x_tracked { x } else { x.detach() };
                        let ours = dense(&layer, x.clone(), activation);
                        let theirs = reference(&layer, x.clone(), activation);
                        let d = max_diff(ours.clone(), theirs.clone());
                        assert!(d < 1e-4, "{case}: outputs differ by {d}");
                        if !device.is_autodiff() {
                            continue;
                        }
                        let weights = normal([m, n]).detach();
                        let g1 = (ours * weights.clone()).sum().backward();
                        let g2 = (theirs * weights).sum().backward();
                        let w = layer.weight.val();
                        let b = layer.bias.as_ref().unwrap().val();
                        let grads = [
                            ("input", x.grad(&g1), x.grad(&g2)),
                            ("weight", w.grad(&g1), w.grad(&g2)),
                            (
                                "bias",
                                b.grad(&g1).map(|g| g.unsqueeze()),
                                b.grad(&g2).map(|g| g.unsqueeze()),
                            ),
                        ];
                        for (what, ours, theirs) in grads {
                            match (ours, theirs) {
                                (Some(a), Some(b)) => {
                                    let d = max_diff(a, b);
                                    assert!(d < 1e-4, "{case}: the {what} gradients differ by {d}");
                                }
                                (None, None) => assert!(
                                    !x_tracked && what == "input",
                                    "{case}: no {what} gradient"
                                ),
                                _ => panic!("{case}: a {what} gradient on one side only"),
                            }
                        }
                    }
                }
            }
        });
    }
}
