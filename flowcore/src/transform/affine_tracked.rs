//! The affine transform from data to latent as tracked operations on the CPU backend
//! (training): the output `x s + t` and the log-scale, each one operation whose backward pass
//! is one pass over the values split over the cores.
//!
//! Composed of burn's operations (two copies of the parameters' halves, sigmoid, division,
//! log, product and sum, and their backward steps) every one ran on the calling thread while
//! the other cores waited: a twentieth of a Glow 32 training step's main thread.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use super::ScaleFn;
use super::affine_pass::{self, sigmoid};
use super::exp_ln::exp;
use crate::flex::{primitive, slice, tensor, values};
use crate::nets::rational_tanh;
use crate::simd::widest;

/// Rows of values per task of a backward pass.
const VALUES_PER_TASK: usize = 16 * 1024;

/// `(x s + t, log s)` of `x: [batch, d]` with raw parameters `[batch, 2, d]` (shift `t`, raw
/// scale `h`), tracked, when both are autodiff tensors of f32 on the CPU backend and the
/// scale is Glow's sigmoid or the tanh clamp; None elsewhere.
pub(super) fn forward(
    scale: ScaleFn,
    x: &Tensor<2>,
    params: &Tensor<3>,
) -> Option<(Tensor<2>, Tensor<2>)> {
    if !x.device().is_autodiff()
        || x.dtype() != DType::F32
        || params.dtype() != DType::F32
        || matches!(scale, ScaleFn::Atan { .. })
    {
        return None;
    }
    tracked::<NoCheckpointing>(scale, x, params)
        .or_else(|| tracked::<BalancedCheckpointing>(scale, x, params))
}

fn tracked<C: CheckpointStrategy>(
    scale: ScaleFn,
    x: &Tensor<2>,
    params: &Tensor<3>,
) -> Option<(Tensor<2>, Tensor<2>)>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let ax = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let ap = params
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let plain_x = Tensor::<2>::from_primitive::<Flex>(ax.primitive().clone());
    let plain_p = Tensor::<3>::from_primitive::<Flex>(ap.primitive().clone());
    let (z, log_s) = affine_pass::apply(scale, &plain_x, &plain_p, false)?;
    let z = match <Output as Backward<Flex, 2>>::prepare::<C>(Output(scale), [ax.node(), ap.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((plain_x, plain_p.clone()), primitive::<Flex, 2>(z)),
        OpsKind::UnTracked(prep) => prep.finish(primitive::<Flex, 2>(z)),
    };
    let log_s = match <LogScale as Backward<Flex, 1>>::prepare::<C>(LogScale(scale), [ap.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(plain_p, primitive::<Flex, 2>(log_s)),
        OpsKind::UnTracked(prep) => prep.finish(primitive::<Flex, 2>(log_s)),
    };
    Some((
        Tensor::<2>::from_primitive::<Autodiff<Flex, C>>(z),
        Tensor::<2>::from_primitive::<Autodiff<Flex, C>>(log_s),
    ))
}

/// The scale `s` and the slope `d log s / dh` at raw scale `h`, as
/// [`ScaleFn::scale_and_log`] and burn's derivatives of its operations give them (zero below
/// the sigmoid's clamp).
#[inline(always)]
fn scale_and_slope(scale: ScaleFn, h: f32) -> (f32, f32) {
    match scale {
        ScaleFn::Sigmoid => {
            let at_zero = (1.0 / (1.0 + (-2.0f64).exp())) as f32;
            let a = h + 2.0;
            if a < -80.0 {
                (sigmoid(-80.0) / at_zero, 0.0)
            } else {
                let sig = sigmoid(a);
                (sig / at_zero, 1.0 - sig)
            }
        }
        ScaleFn::Tanh { clamp } => {
            let c = clamp as f32;
            let t = rational_tanh(h / c);
            (exp(t * c), 1.0 - t * t)
        }
        ScaleFn::Atan { .. } => unreachable!("the atan scale is not tracked here"),
    }
}

/// `f(first row, their parameter gradients, their input gradients)` over blocks of rows of
/// `d` values, split over the cores; the parameter gradients `[rows, 2, d]` and the input
/// gradients `[rows, d]` (empty unless `with_x`).
fn by_rows(
    rows: usize,
    d: usize,
    with_x: bool,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let mut gp = vec![0.0f32; rows * 2 * d];
    let mut gx = vec![0.0f32; if with_x { rows * d } else { 0 }];
    let per_task = (VALUES_PER_TASK / d.max(1)).max(1);
    let gx_block = if with_x { per_task * d } else { 0 };
    let mut blocks: Vec<(&mut [f32], &mut [f32])> = gp
        .chunks_mut((per_task * 2 * d).max(1))
        .zip(
            gx.chunks_mut(gx_block.max(1))
                .map(Some)
                .chain(std::iter::repeat_with(|| None)),
        )
        .map(|(p, x)| (p, x.unwrap_or(&mut [])))
        .collect();
    blocks
        .par_iter_mut()
        .enumerate()
        .for_each(|(i, (gp, gx))| f(i * per_task, gp, gx));
    (gp, gx)
}

/// The output `x s + t`: parents the input and the parameters.
#[derive(Debug)]
struct Output(ScaleFn);

impl Backward<Flex, 2> for Output {
    type State = (Tensor<2>, Tensor<3>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, p_node] = ops.parents;
        let gz = Tensor::<2>::from_primitive::<Flex>(grads.consume::<Flex>(&ops.node));
        let (x, p) = ops.state;
        let [batch, d] = x.dims();
        let device = x.device();
        let all = (values(&x), values(&p), values(&gz));
        let (xv, pv, gzv) = (
            all.0.expect("f32 input"),
            all.1.expect("f32 parameters"),
            all.2.expect("f32 gradient"),
        );
        let (xs, ps, gzs) = (slice(&xv), slice(&pv), slice(&gzv));
        let scale = self.0;
        let (gp, gx) = by_rows(batch, d, x_node.is_some(), |first, gp, gx| {
            widest(
                #[inline(always)]
                || {
                    for (r, gp) in gp.chunks_exact_mut(2 * d).enumerate() {
                        let row = first + r;
                        let (x, gz) = (&xs[row * d..][..d], &gzs[row * d..][..d]);
                        let h = &ps[row * 2 * d + d..][..d];
                        let (gt, gh) = gp.split_at_mut(d);
                        gt.copy_from_slice(gz);
                        let values = gh.iter_mut().zip(h).zip(x.iter().zip(gz));
                        if gx.is_empty() {
                            for ((gh, &h), (&x, &gz)) in values {
                                let (s, slope) = scale_and_slope(scale, h);
                                *gh = gz * x * s * slope;
                            }
                        } else {
                            let gx = &mut gx[r * d..][..d];
                            for (((gh, &h), (&x, &gz)), gx) in values.zip(gx) {
                                let (s, slope) = scale_and_slope(scale, h);
                                *gh = gz * x * s * slope;
                                *gx = gz * s;
                            }
                        }
                    }
                },
            )
        });
        if let Some(node) = x_node {
            grads.register::<Flex>(
                node.id,
                primitive::<Flex, 2>(tensor(gx, [batch, d], &device)),
            );
        }
        if let Some(node) = p_node {
            let gp = tensor(gp, [batch, 2, d], &device);
            grads.register::<Flex>(node.id, primitive::<Flex, 3>(gp));
        }
    }
}

/// The log-scale `log s`: parent the parameters.
#[derive(Debug)]
struct LogScale(ScaleFn);

impl Backward<Flex, 1> for LogScale {
    type State = Tensor<3>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [p_node] = ops.parents;
        let glog = Tensor::<2>::from_primitive::<Flex>(grads.consume::<Flex>(&ops.node));
        let Some(node) = p_node else { return };
        let p = ops.state;
        let [batch, _, d] = p.dims();
        let device = p.device();
        let (pv, gv) = (
            values(&p).expect("f32 parameters"),
            values(&glog).expect("f32 gradient"),
        );
        let (ps, gs) = (slice(&pv), slice(&gv));
        let scale = self.0;
        let (gp, _) = by_rows(batch, d, false, |first, gp, _| {
            widest(
                #[inline(always)]
                || {
                    for (r, gp) in gp.chunks_exact_mut(2 * d).enumerate() {
                        let row = first + r;
                        let (h, g) = (&ps[row * 2 * d + d..][..d], &gs[row * d..][..d]);
                        for ((gh, &h), &g) in gp[d..].iter_mut().zip(h).zip(g) {
                            *gh = g * scale_and_slope(scale, h).1;
                        }
                    }
                },
            )
        });
        grads.register::<Flex>(
            node.id,
            primitive::<Flex, 3>(tensor(gp, [batch, 2, d], &device)),
        );
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// Outputs and the gradients by the input and the parameters against burn's composed
    /// operations, for both scales, one task and several, raw scales out to the sigmoid's
    /// clamp, with and without gradient checkpointing.
    #[test]
    fn the_tracked_affine_transform_and_its_gradients_equal_the_composed_ones() {
        let plain = Device::flex();
        for device in [
            plain.clone().autodiff(),
            plain.clone().autodiff().gradient_checkpointing(),
        ] {
            for scale in [ScaleFn::Sigmoid, ScaleFn::Tanh { clamp: 3.0 }] {
                for (batch, d) in [(3, 5), (70, 300)] {
                    let x = Tensor::<2>::random([batch, d], Distribution::Normal(0.0, 2.0), &plain);
                    let p =
                        Tensor::<3>::random([batch, 2, d], Distribution::Normal(0.0, 3.0), &plain)
                            .slice_assign(
                                [0..1, 1..2, 0..2],
                                Tensor::from_floats([[[-200.0, 60.0]]], &plain),
                            );
                    let weights = |seed: usize| {
                        Tensor::<2>::random([batch, d], Distribution::Normal(0.0, 1.0), &plain)
                            .mul_scalar(1.0 + seed as f64)
                            .into_data()
                    };
                    let (wz, wl) = (weights(0), weights(1));
                    let run = |ours: bool| {
                        let x = Tensor::<2>::from_data(x.to_data(), &device).require_grad();
                        let p = Tensor::<3>::from_data(p.to_data(), &device).require_grad();
                        let (wz, wl) = (
                            Tensor::<2>::from_data(wz.clone(), &device),
                            Tensor::<2>::from_data(wl.clone(), &device),
                        );
                        let (z, log_s) = if ours {
                            forward(scale, &x, &p).expect("autodiff f32 on the CPU")
                        } else {
                            let shift = p.clone().narrow(1, 0, 1).reshape([batch, d]);
                            let h = p.clone().narrow(1, 1, 1).reshape([batch, d]);
                            let (s, log_s) = scale.scale_and_log(h);
                            (x.clone() * s + shift, log_s)
                        };
                        let loss = (z.clone() * wz).sum() + (log_s.clone() * wl).sum();
                        let g = loss.backward();
                        let grads = (x.grad(&g).unwrap(), p.grad(&g).unwrap());
                        (z.inner(), log_s.inner(), grads)
                    };
                    let (z, l, (gx, gp)) = run(true);
                    let (z2, l2, (gx2, gp2)) = run(false);
                    let close = |a: Tensor<2>, b: Tensor<2>, what: &str| {
                        let d = (a - b.clone()).abs().max().into_scalar::<f32>();
                        let size = b.abs().max().into_scalar::<f32>().max(1.0);
                        assert!(
                            d <= 1e-5 * size,
                            "{scale:?} {batch}x{d}: {what} differs by {d}"
                        );
                    };
                    close(z, z2, "output");
                    close(l, l2, "log-scale");
                    close(gx, gx2, "input gradient");
                    close(
                        gp.reshape([batch, 2 * d]),
                        gp2.reshape([batch, 2 * d]),
                        "parameter gradient",
                    );
                }
            }
        }
        // Plain tensors and the atan scale are not tracked here.
        let x = Tensor::<2>::zeros([2, 3], &plain);
        let p = Tensor::<3>::zeros([2, 2, 3], &plain);
        assert!(forward(ScaleFn::Sigmoid, &x, &p).is_none());
        let ad = plain.clone().autodiff();
        let (x, p) = (
            Tensor::<2>::zeros([2, 3], &ad),
            Tensor::<3>::zeros([2, 2, 3], &ad),
        );
        assert!(forward(ScaleFn::Atan { clamp: 1.0 }, &x, &p).is_none());
    }
}
