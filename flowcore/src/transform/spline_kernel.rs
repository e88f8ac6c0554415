//! [`Spline`] on the CPU backend as one pass per value. Composed of burn operations, the spline
//! is two dozen passes over `[values, 3K - 1]` tables (softmaxes, cumulative sums, gathers,
//! masks) and a libm call for each of the `K - 1` derivatives' softplus, though a value only
//! needs its own bin: that was 80% of sampling a FlashSim-shaped NSF in the profile. Here each
//! value reads its raw parameters in place (`[batch, 3K - 1, d]`, no transpose), normalises
//! them, finds its bin and evaluates the rational quadratic in f64, writing f32 or f64 out.
//!
//! With autodiff it is one tracked operation whose output stacks the values and their
//! log-derivatives (`[2, batch, d]`), and whose backward pass evaluates the same pass again
//! with dual numbers over the seven quantities a value depends on (itself, its bin's two knots
//! in x and in y, and the two derivatives), then carries their gradients back through the
//! softmaxes and softplus by hand. One generic formula (`spline_pass::rational_quadratic`)
//! serves both.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::prelude::*;
use burn::tensor::{DType, Element, TensorData};

use super::Spline;
use super::spline_pass::Pass;

/// The spline of `input: [batch, d]` by raw parameters `[batch, 3K - 1, d]` when both are f32
/// or f64 on the CPU backend (with or without autodiff); None elsewhere.
pub(super) fn apply(
    spline: &Spline,
    input: &Tensor<2>,
    params: &Tensor<3>,
    inverse: bool,
) -> Option<(Tensor<2>, Tensor<2>)> {
    let [batch, d] = input.dims();
    let stacked = if input.device().is_autodiff() {
        tracked(spline, input, params, inverse)?
    } else {
        values(spline, input, params, inverse)?
    };
    let out = stacked.clone().narrow(0, 0, 1).reshape([batch, d]);
    let log_det = stacked.narrow(0, 1, 1).reshape([batch, d]);
    Some((out, log_det))
}

/// The values and log-derivatives stacked, `[2, batch, d]`, on tensors without autodiff.
fn values(
    spline: &Spline,
    input: &Tensor<2>,
    params: &Tensor<3>,
    inverse: bool,
) -> Option<Tensor<3>> {
    let [batch, d] = input.dims();
    let pass = Pass::new(spline, inverse, d);
    with_slices(input, params, |x, p| match (x, p) {
        (Slice::F32(x), Slice::F32(p)) => Some(data(pass.forward(x, p), [2, batch, d])),
        (Slice::F64(x), Slice::F64(p)) => Some(data(pass.forward(x, p), [2, batch, d])),
        _ => None,
    })
    .map(|data| Tensor::from_data(data, (&input.device(), input.dtype())))
}

/// The gradients by the input (`[batch, d]`) and by the raw parameters (`[batch, 3K - 1, d]`)
/// for the stacked output's gradient `grad: [2, batch, d]`.
fn gradients(
    spline: &Spline,
    inverse: bool,
    input: &Tensor<2>,
    params: &Tensor<3>,
    grad: &Tensor<3>,
) -> (Tensor<2>, Tensor<3>) {
    let [batch, d] = input.dims();
    let k = params.dims()[1];
    let pass = Pass::new(spline, inverse, d);
    let grad = grad.clone().cast(input.dtype());
    let (gx, gp) = with_slices(input, params, |x, p| {
        with_slice(&grad, |g| match (x, p, g) {
            (Slice::F32(x), Slice::F32(p), Slice::F32(g)) => {
                let (gx, gp) = pass.backward(x, p, g);
                Some((data(gx, [batch, d]), data(gp, [batch, k, d])))
            }
            (Slice::F64(x), Slice::F64(p), Slice::F64(g)) => {
                let (gx, gp) = pass.backward(x, p, g);
                Some((data(gx, [batch, d]), data(gp, [batch, k, d])))
            }
            _ => None,
        })
    })
    .expect("the spline's tensors stay f32 or f64 on the CPU backend");
    let options = (&input.device(), input.dtype());
    (
        Tensor::from_data(gx, options),
        Tensor::from_data(gp, options),
    )
}

fn data<E: Element, const D: usize>(values: Vec<E>, shape: [usize; D]) -> TensorData {
    TensorData::new(values, shape)
}

enum Slice<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// `f` of `t`'s row-major values, if `t` is f32 or f64 on the CPU backend without autodiff.
fn with_slice<const D: usize, T>(
    t: &Tensor<D>,
    f: impl FnOnce(Slice<'_>) -> Option<T>,
) -> Option<T> {
    let flex = t.clone().try_into_primitive::<Flex>().ok()?;
    let contiguous = match t.dtype() {
        DType::F32 if flex.as_slice::<f32>().is_some() => flex,
        DType::F64 if flex.as_slice::<f64>().is_some() => flex,
        DType::F32 | DType::F64 => flex.to_contiguous(),
        _ => return None,
    };
    match t.dtype() {
        DType::F32 => f(Slice::F32(contiguous.as_slice::<f32>()?)),
        _ => f(Slice::F64(contiguous.as_slice::<f64>()?)),
    }
}

fn with_slices<T>(
    x: &Tensor<2>,
    p: &Tensor<3>,
    f: impl FnOnce(Slice<'_>, Slice<'_>) -> Option<T>,
) -> Option<T> {
    with_slice(x, |x| with_slice(p, |p| f(x, p)))
}

/// [`values`] as one tracked operation of the CPU autodiff backend, with or without gradient
/// checkpointing (the training loop's default).
fn tracked(
    spline: &Spline,
    input: &Tensor<2>,
    params: &Tensor<3>,
    inverse: bool,
) -> Option<Tensor<3>> {
    tracked_with::<NoCheckpointing>(spline, input, params, inverse)
        .or_else(|| tracked_with::<BalancedCheckpointing>(spline, input, params, inverse))
}

fn tracked_with<C: CheckpointStrategy>(
    spline: &Spline,
    input: &Tensor<2>,
    params: &Tensor<3>,
    inverse: bool,
) -> Option<Tensor<3>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let x = input
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let p = params
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let plain_x = Tensor::<2>::from_primitive::<Flex>(x.primitive().clone());
    let plain_p = Tensor::<3>::from_primitive::<Flex>(p.primitive().clone());
    let y = values(spline, &plain_x, &plain_p, inverse)?;
    let primitive = |t: Tensor<3>| {
        t.try_into_primitive::<Flex>()
            .expect("the spline's tensors stay on the CPU backend")
    };
    let op = SplineOp {
        spline: *spline,
        inverse,
    };
    let out = match <SplineOp as Backward<Flex, 2>>::prepare::<C>(op, [x.node(), p.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((plain_x, plain_p), primitive(y)),
        OpsKind::UnTracked(prep) => prep.finish(primitive(y)),
    };
    Some(Tensor::<3>::from_primitive::<Autodiff<Flex, C>>(out))
}

#[derive(Debug)]
struct SplineOp {
    spline: Spline,
    inverse: bool,
}

impl Backward<Flex, 2> for SplineOp {
    /// The input and the raw parameters.
    type State = (Tensor<2>, Tensor<3>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, p_node] = ops.parents;
        let grad = Tensor::<3>::from_primitive::<Flex>(grads.consume::<Flex>(&ops.node));
        if x_node.is_none() && p_node.is_none() {
            return;
        }
        let (x, p) = &ops.state;
        let (gx, gp) = gradients(&self.spline, self.inverse, x, p, &grad);
        if let Some(node) = x_node {
            let g = gx
                .try_into_primitive::<Flex>()
                .expect("the spline's tensors stay on the CPU backend");
            grads.register::<Flex>(node.id, g);
        }
        if let Some(node) = p_node {
            let g = gp
                .try_into_primitive::<Flex>()
                .expect("the spline's tensors stay on the CPU backend");
            grads.register::<Flex>(node.id, g);
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// The largest difference relative to the largest magnitude of `b`.
    fn relative<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
        let scale = b.clone().abs().max().into_scalar::<f64>().max(1.0);
        (a - b).abs().max().into_scalar::<f64>() / scale
    }

    /// The kernel against the spline's burn form: values, log-derivatives, and the gradients of
    /// a weighted sum of both by the input and by every raw parameter, at ordinary and extreme
    /// parameters, inside and outside the interval, exactly on its bound, in f64 and f32, with
    /// and without gradient checkpointing.
    #[test]
    fn kernel_matches_the_burn_form_and_its_gradients() {
        let cases = [
            (Spline::default(), 1.0, DType::F64, 1e-10, 1e-8),
            (Spline::default(), 6.0, DType::F64, 1e-10, 1e-8),
            (
                Spline {
                    bins: 2,
                    bound: 1.5,
                    min_bin_width: 0.0,
                    ..Spline::default()
                },
                3.0,
                DType::F64,
                1e-10,
                1e-8,
            ),
            (
                Spline {
                    bins: 16,
                    ..Spline::default()
                },
                2.0,
                DType::F32,
                1e-6,
                1e-5,
            ),
        ];
        let devices = [
            Device::flex().autodiff(),
            Device::flex().autodiff().gradient_checkpointing(),
        ];
        for (n, (spline, scale, dtype, tol_values, tol_grads)) in cases.into_iter().enumerate() {
            // The training loop's default device checkpoints gradients.
            let device = devices[n % 2].clone();
            let (batch, d, k) = (70, 5, spline.num_params());
            let b = spline.bound;
            // Seeded draws: a normal of scale 0.8 bound puts a fifth of the values in the tails.
            let seed = 10 * n as u64;
            let x = crate::standard_normal(batch, d, seed, &device)
                .mul_scalar(0.8 * b)
                .cast(dtype);
            // Rows of exact bounds and the middle.
            let edges = Tensor::<2>::from_data(
                TensorData::new(vec![-b, b, 0.0, -b, b], [1, d]),
                (&device, dtype),
            );
            let x = Tensor::cat(vec![x, edges], 0).require_grad();
            let p = crate::standard_normal(batch + 1, k * d, seed + 1, &device)
                .reshape([batch + 1, k, d])
                .mul_scalar(scale)
                .cast(dtype)
                .require_grad();
            let weights = crate::standard_normal(batch + 1, d, seed + 2, &device).cast(dtype);
            // The reference: the burn form in f64 on copies of the same values.
            let options = (&device, DType::F64);
            let x64 = Tensor::<2>::from_data(x.to_data().convert::<f64>(), options).require_grad();
            let p64 = Tensor::<3>::from_data(p.to_data().convert::<f64>(), options).require_grad();
            let w64 = weights.clone().cast(DType::F64);
            for inverse in [false, true] {
                let ours = apply(&spline, &x, &p, inverse).expect("the CPU backend");
                let theirs = spline.apply_ops(x64.clone(), p64.clone(), inverse);
                let case = format!("case {n} inverse {inverse}");
                let dv = relative(ours.0.clone().cast(DType::F64), theirs.0.clone());
                let dl = relative(ours.1.clone().cast(DType::F64), theirs.1.clone());
                assert!(
                    dv < tol_values && dl < tol_values,
                    "{case}: values {dv:e}, log-dets {dl:e}"
                );
                let loss = |(y, ld): (Tensor<2>, Tensor<2>), w: &Tensor<2>| {
                    (y * w.clone() + ld * w.clone().mul_scalar(0.3)).sum()
                };
                let g_ours = loss(ours, &weights).backward();
                let g_theirs = loss(theirs, &w64).backward();
                let gx = x.grad(&g_ours).unwrap().cast(DType::F64);
                let gp = p.grad(&g_ours).unwrap().cast(DType::F64);
                let dx = relative(gx, x64.grad(&g_theirs).unwrap());
                let dp = relative(gp, p64.grad(&g_theirs).unwrap());
                assert!(
                    dx < tol_grads && dp < tol_grads,
                    "{case}: gradients by x {dx:e}, by the parameters {dp:e}"
                );
            }
        }
    }

    /// Without autodiff the kernel gives the burn form's values; in f64 its inverse undoes its
    /// forward to rounding and the log-derivatives cancel (in f32 steep bins lose digits to the
    /// rounding of the latent, in the burn form as here, so f32 gets a loose bound only).
    #[test]
    fn plain_tensors_and_the_round_trip() {
        let device = Device::flex();
        let spline = Spline::default();
        for seed in 0..4 {
            let x = crate::standard_normal(300, 3, seed, &device).mul_scalar(2.0);
            let p = crate::standard_normal(300, spline.num_params() * 3, seed + 100, &device)
                .reshape([300, spline.num_params(), 3]);
            let (z, _) = apply(&spline, &x, &p, false).expect("the CPU backend");
            let (z_ops, _) = spline.apply_ops(x.clone(), p.clone(), false);
            let dz = relative(z, z_ops);
            assert!(dz < 1e-5, "seed {seed}: values differ by {dz:e}");
            for (dtype, tol_x, tol_ld) in [(DType::F64, 1e-9, 1e-9), (DType::F32, 1e-3, 1e-2)] {
                let (x, p) = (x.clone().cast(dtype), p.clone().cast(dtype));
                let (z, ld) = apply(&spline, &x, &p, false).expect("the CPU backend");
                let (back, ld_inv) = apply(&spline, &z, &p, true).expect("the CPU backend");
                let dx = relative(back, x);
                let dl = relative(ld.clone() + ld_inv, ld.zeros_like());
                assert!(
                    dx < tol_x && dl < tol_ld,
                    "seed {seed} {dtype:?}: round trip {dx:e}, log-dets cancel to {dl:e}"
                );
            }
        }
    }
}
