//! Global-norm gradient clipping (Pascanu et al.): all gradients scaled together so their joint
//! L2 norm is at most `max_norm`. burn's own clipping works per parameter, which changes the
//! direction of the update; this keeps it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// Clip `grads` of `module`'s parameters to global norm `max_norm` (no clipping when `None`).
/// Returns the gradients and the global norm before and after.
pub fn clip_global_norm<M: Module>(
    module: &M,
    grads: GradientsParams,
    max_norm: Option<f64>,
) -> (GradientsParams, f64, f64) {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    struct Scale {
        grads: GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }

    let mut sum = SumSquares {
        grads: &grads,
        total: None,
    };
    module.visit(&mut sum);
    let norm = sum.total.map_or(0.0, |t| t.into_scalar::<f64>().sqrt());
    match max_norm {
        Some(max) if norm > max && norm.is_finite() => {
            let factor = max / (norm + 1e-6);
            let mut scale = Scale { grads, factor };
            module.visit(&mut scale);
            (scale.grads, norm, norm * factor)
        }
        _ => (grads, norm, norm),
    }
}
