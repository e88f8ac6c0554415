//! The matrix product of the parameter networks, `a [m, k] x b [k, n]`, as one tracked
//! operation on the CPU backend. Two things burn's product does not do:
//!
//! - It splits products from 1M multiply-adds over the cores (see
//!   [`crate::tensor_util::matmul`]); burn's CPU backend splits only from 192^3, so a dense
//!   layer of 128 x 128 on a batch of 4096 ran on one core. Paired runs on the Intel 2-core
//!   machine: MAF sampling 19.4 -> 27.5 batches/s, NSF sampling 15.1 -> 17.5, app 1's
//!   12 x [512, 512] 33.0 -> 41.2 steps/s.
//! - Autodiff's product takes the kernel's gradient of a convolution (`w [out, k] x columns
//!   [k, n]`, `n >> k`) as `gy [out, n] x columns^T [n, k]`: a row-major output over a
//!   transposed right operand, the layout in which gemm's AVX-512 kernels are slowest (9.6
//!   GFLOP/s at the lattice network's 8 x 72 x 16384, 46% of a phi^4 training step). Here it is
//!   [`matmul_transposed`]: `(columns [k, n] x gy^T [n, out])^T`, the same sums in the layout
//!   they run fastest in (63 GFLOP/s).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::prelude::*;

use crate::flex::primitive;
use crate::tensor_util::{matmul, matmul_transposed};

/// `weight [m, k] x columns [k, n]`: a dense layer's `x W` or a convolution's kernel times its
/// columns; burn's matrix product off the CPU backend.
pub(crate) fn product(weight: Tensor<2>, columns: Tensor<2>) -> Tensor<2> {
    if columns.device().is_autodiff()
        && let Some(y) = tracked::<NoCheckpointing>(&weight, &columns)
            .or_else(|| tracked::<BalancedCheckpointing>(&weight, &columns))
    {
        return y;
    }
    matmul(weight, columns)
}

fn tracked<C: CheckpointStrategy>(weight: &Tensor<2>, columns: &Tensor<2>) -> Option<Tensor<2>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let w = weight
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let x = columns
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?;
    let plain_w = Tensor::<2>::from_primitive::<Flex>(w.primitive().clone());
    let plain_x = Tensor::<2>::from_primitive::<Flex>(x.primitive().clone());
    let y = primitive::<Flex, 2>(matmul(plain_w.clone(), plain_x.clone()));
    let out = match <KernelProduct as Backward<Flex, 2>>::prepare::<C>(
        KernelProduct,
        [w.node(), x.node()],
    )
    .compute_bound()
    .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((plain_w, plain_x), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Some(Tensor::<2>::from_primitive::<Autodiff<Flex, C>>(out))
}

#[derive(Debug)]
struct KernelProduct;

impl Backward<Flex, 2> for KernelProduct {
    /// The kernel and the columns.
    type State = (Tensor<2>, Tensor<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [w_node, x_node] = ops.parents;
        let gy = Tensor::<2>::from_primitive::<Flex>(grads.consume::<Flex>(&ops.node));
        let (weight, columns) = ops.state;
        if let Some(node) = w_node {
            let gw = matmul_transposed(gy.clone(), columns);
            grads.register::<Flex>(node.id, primitive::<Flex, 2>(gw));
        }
        if let Some(node) = x_node {
            grads.register::<Flex>(
                node.id,
                primitive::<Flex, 2>(matmul(weight.transpose(), gy)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn the_product_and_its_gradients_equal_burns_matmul() {
        for device in [
            Device::flex().autodiff(),
            Device::flex().autodiff().gradient_checkpointing(),
        ] {
            let w = Tensor::<2>::random([8, 72], Distribution::Normal(0.0, 1.0), &device);
            let x = Tensor::<2>::random([72, 300], Distribution::Normal(0.0, 1.0), &device);
            let gy = Tensor::<2>::random([8, 300], Distribution::Normal(0.0, 1.0), &device);
            assert!(
                tracked::<NoCheckpointing>(&w, &x)
                    .or_else(|| tracked::<BalancedCheckpointing>(&w, &x))
                    .is_some()
            );
            // Both gradients, then each alone (the other tensor untracked).
            for wants in [(true, true), (true, false), (false, true)] {
                let track = |t: &Tensor<2>, on: bool| {
                    if on {
                        t.clone().require_grad()
                    } else {
                        t.clone()
                    }
                };
                let (w1, x1) = (track(&w, wants.0), track(&x, wants.1));
                let (w2, x2) = (track(&w, wants.0), track(&x, wants.1));
                let ours = product(w1.clone(), x1.clone());
                let theirs = w2.clone().matmul(x2.clone());
                let d = (ours.clone() - theirs.clone())
                    .abs()
                    .max()
                    .into_scalar::<f32>();
                assert!(d < 1e-4, "{wants:?}: products differ by {d}");
                let g1 = (ours * gy.clone()).sum().backward();
                let g2 = (theirs * gy.clone()).sum().backward();
                for (a, b, on, name) in [
                    (&w1, &w2, wants.0, "kernel"),
                    (&x1, &x2, wants.1, "columns"),
                ] {
                    match (a.grad(&g1), b.grad(&g2)) {
                        (Some(a), Some(b)) => {
                            let d = (a - b).abs().max().into_scalar::<f32>();
                            assert!(d < 1e-3, "{wants:?}: the {name}' gradients differ by {d}");
                        }
                        (None, None) => assert!(!on, "{wants:?}: no gradient for the {name}"),
                        _ => panic!("{wants:?}: the {name}' gradient is present on one side only"),
                    }
                }
            }
        }
    }
}
