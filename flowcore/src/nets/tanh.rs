//! tanh for the continuous flows' dynamics, which evaluate it tens of times per solve: on the
//! CPU backend burn calls libm's scalar `tanhf` per value (an `expm1f` each), 14% of a
//! convolutional FFJORD training step in the profile. Here, on f32 CPU tensors, it is Eigen's
//! 13/6-degree rational interpolant (`generic_fast_tanh_float`, also ONNX Runtime's CPU tanh),
//! +-1 outside [-9, 9], in a loop the compiler vectorises. With autodiff it is one tracked operation whose backward pass is
//! `grad (1 - y^2)`, as burn's. Elsewhere it is burn's tanh.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::prelude::*;
use rayon::prelude::*;

use crate::flex::on_flex;

/// tanh of every value of `x`.
pub(crate) fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.device().is_autodiff() {
        return tracked(x);
    }
    plain(&x).unwrap_or_else(|| x.tanh())
}

fn plain<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    on_flex(x, x.dims(), |values| {
        let mut out = vec![0.0f32; values.len()];
        out.par_chunks_mut(CHUNK)
            .zip(values.par_chunks(CHUNK))
            .for_each(|(out, values)| rational_slice(values, out));
        out
    })
}

/// Values per parallel task: small enough to split a 7x7 batch's activations across the cores,
/// large enough that scheduling does not show.
const CHUNK: usize = 1 << 14;

/// [`rational`] of every value, in the widest vectors the CPU has (chosen at run time, as gemm
/// chooses its kernels): the binary's baseline is SSE2, two f64 per instruction, and this loop
/// was half of sampling the FFJORD moons model in the profile. Rust does not contract or
/// reorder float arithmetic, so every width gives the same bits.
fn rational_slice(values: &[f32], out: &mut [f32]) {
    crate::simd::widest(
        #[inline(always)]
        || rational_loop(values, out),
    )
}

#[inline(always)]
fn rational_loop(values: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(values) {
        *o = rational(v);
    }
}

/// Eigen's interpolant, evaluated in f64: in f32 its rounding makes it 3.9e-7 off near |x| = 5.8
/// (6.5 ulp), and stiff dynamics amplify that (the harness's strong-dynamics round trip went
/// from 4.5e-5 to 2.9e-4); in f64 it is within 5.5e-8 of tanh, as libm's tanhf (6.0e-8).
/// NaN stays NaN.
#[inline(always)]
pub(crate) fn rational(x: f32) -> f32 {
    const ALPHA: [f64; 7] = [
        4.893_524_558_917_86e-3,
        6.372_619_288_754_36e-4,
        1.485_722_357_179_79e-5,
        5.122_297_090_371_14e-8,
        -8.604_671_522_137_35e-11,
        2.000_187_904_824_77e-13,
        -2.760_768_477_423_55e-16,
    ];
    const BETA: [f64; 4] = [
        4.893_525_185_543_85e-3,
        2.268_434_632_439e-3,
        1.185_347_056_866_54e-4,
        1.198_258_394_667_02e-6,
    ];
    let x = f64::from(x).clamp(-9.0, 9.0);
    let x2 = x * x;
    let p = ALPHA.iter().rev().fold(0.0, |acc, &a| acc * x2 + a) * x;
    let q = BETA.iter().rev().fold(0.0, |acc, &b| acc * x2 + b);
    (p / q) as f32
}

/// [`tanh`] as one tracked operation on the CPU backend, with or without gradient
/// checkpointing; burn's tanh elsewhere.
fn tracked<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    tracked_with::<D, NoCheckpointing>(&x)
        .or_else(|| tracked_with::<D, BalancedCheckpointing>(&x))
        .unwrap_or_else(|| x.tanh())
}

fn tracked_with<const D: usize, C: CheckpointStrategy>(x: &Tensor<D>) -> Option<Tensor<D>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let inner = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let plain_x = Tensor::<D>::from_primitive::<Flex>(inner.primitive().clone());
    let y = plain(&plain_x)?;
    let primitive = |t: Tensor<D>| {
        t.try_into_primitive::<Flex>()
            .expect("tanh's tensors stay on the CPU backend")
    };
    let out = match <Tanh<D> as Backward<Flex, 1>>::prepare::<C>(Tanh, [inner.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(y.clone(), primitive(y)),
        OpsKind::UnTracked(prep) => prep.finish(primitive(y)),
    };
    Some(Tensor::<D>::from_primitive::<Autodiff<Flex, C>>(out))
}

#[derive(Debug)]
struct Tanh<const D: usize>;

impl<const D: usize> Backward<Flex, 1> for Tanh<D> {
    /// The output.
    type State = Tensor<D>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            let grad = Tensor::<D>::from_primitive::<Flex>(grad);
            let y = ops.state;
            let slope = y.clone().mul(y).neg().add_scalar(1.0);
            let g = (grad * slope)
                .try_into_primitive::<Flex>()
                .expect("tanh's tensors stay on the CPU backend");
            grads.register::<Flex>(node.id, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn tanh_matches_libm_and_its_gradient_matches_burns() {
        // The interpolant against f64 tanh, over the range and beyond its clamp.
        let worst = (-2_000_000..=2_000_000)
            .map(|i| i as f32 * 6e-6)
            .chain([-1e30, -20.0, -9.5, -1e-30, 0.0, 1e-30, 9.5, 20.0, 1e30])
            .map(|x| (rational(x) as f64 - (x as f64).tanh()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 7e-8, "the interpolant is off by {worst:e}");
        assert!(rational(f32::NAN).is_nan());
        // The widest vectors this CPU has give the scalar loop's bits.
        let xs: Vec<f32> = (-40_000..=40_000)
            .map(|i| i as f32 * 3e-4)
            .chain([-1e30, -9.0, 9.0, 1e30, f32::NAN])
            .collect();
        let mut out = vec![0.0; xs.len()];
        rational_slice(&xs, &mut out);
        for (&x, &o) in xs.iter().zip(&out) {
            let scalar = rational(x);
            assert!(
                o.to_bits() == scalar.to_bits() || (o.is_nan() && scalar.is_nan()),
                "at {x}: {o} against the scalar loop's {scalar}"
            );
        }
        // With gradient checkpointing too (the training loop's default), as an operation of ours.
        for device in [
            Device::flex().autodiff(),
            Device::flex().autodiff().gradient_checkpointing(),
        ] {
            let x = Tensor::<3>::random([3, 40, 500], Distribution::Normal(0.0, 3.0), &device)
                .require_grad();
            assert!(
                tracked_with::<3, NoCheckpointing>(&x)
                    .or_else(|| tracked_with::<3, BalancedCheckpointing>(&x))
                    .is_some()
            );
            gradient_matches_burns(x);
        }
    }

    fn gradient_matches_burns(x: Tensor<3>) {
        let device = x.device();
        let weights = Tensor::<3>::random(x.dims(), Distribution::Default, &device);
        let ours = tanh(x.clone());
        let theirs = x.clone().tanh();
        let d = (ours.clone() - theirs.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(d < 2e-7, "values differ by {d}");
        let ours = x.grad(&(ours * weights.clone()).sum().backward()).unwrap();
        let theirs = x.grad(&(theirs * weights).sum().backward()).unwrap();
        let d = (ours - theirs).abs().max().into_scalar::<f32>();
        assert!(d < 1e-6, "gradients differ by {d}");
    }
}
