//! The adjoint method (Chen et al. 2018; torchdiffeq's `odeint_adjoint`): the gradients of a
//! solve come from a second solve, backwards in time, of the state beside its adjoint
//! `a = dL/dz` and the adjoints of the parameters and the condition, instead of
//! back-propagating through the forward solve's steps.
//!
//! What it trades: a training step keeps only the end point of the forward solve, so its memory
//! no longer grows with the number of steps; the backward solve costs about as many evaluations
//! again, each with a vector-Jacobian product, and its gradients are those of the continuous
//! problem, accurate to the backward solve's tolerance, not the exact gradients of the
//! discretised forward solve.
//!
//! The state is `[z | e]`, where `e` (a log-det, RNODE's integrals) integrates a function of z
//! along its path, so the adjoint of `e` is constant. burn has no hook for a backward pass of
//! one's own at the tensor level, so the solve is registered as one operation of burn's autodiff
//! backend, with three inputs: the start, the dynamics' parameters in one flat vector, and the
//! condition. Its backward pass evaluates each vector-Jacobian product as a small graph of its
//! own (a separate graph, which burn's autodiff runs while the outer backward is in progress).

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DispatchKindConversion, DispatchTensor, Flex};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// burn-autodiff's tensor, whose type is public but whose module is not.
type AutodiffTensor<B> = FloatTensor<Autodiff<B>>;

use super::{OdeSolver, SolveStats, StepLimit, record_failure};

/// How the gradients of a continuous layer's solve are computed while training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OdeGradient {
    /// Back-propagation through the solver's steps: exact gradients of the discretised solve,
    /// memory growing with the steps.
    #[default]
    Backprop,
    /// The adjoint method: a backward solve, memory independent of the steps.
    Adjoint,
}

/// Dynamics of a state `[z | e]` whose parameters come as one flat vector: `de/dt` may depend
/// on z, never on e.
pub trait AugmentedDynamics: Clone + Send + Debug + 'static {
    /// `[dz/dt | de/dt]` at `t`, the parameters laid out as [`flatten`] lays out the module
    /// they were taken from.
    fn derivative(
        &self,
        theta: &Tensor<1>,
        t: f64,
        z: Tensor<2>,
        cond: Option<&Tensor<2>>,
    ) -> Tensor<2>;
}

struct Gather(Vec<Tensor<1>>);

impl ModuleVisitor for Gather {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

/// A module's float parameters in one vector, in the order the module visits them.
pub fn flatten<M: Module>(module: &M) -> Tensor<1> {
    let mut gather = Gather(Vec::new());
    module.visit(&mut gather);
    Tensor::cat(gather.0, 0)
}

struct Scatter<'a> {
    theta: &'a Tensor<1>,
    offset: usize,
}

impl ModuleMapper for Scatter<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, _) = param.consume();
        let dims = value.dims();
        let n = dims.iter().product();
        let value = self.theta.clone().narrow(0, self.offset, n).reshape(dims);
        self.offset += n;
        Param::initialized(id, value)
    }
}

/// `module` with its float parameters read from `theta` (as [`flatten`] wrote them), as
/// functions of `theta`: gradients reach `theta`.
pub fn unflatten<M: Module>(module: M, theta: &Tensor<1>) -> M {
    let mut scatter = Scatter { theta, offset: 0 };
    let module = module.map(&mut scatter);
    debug_assert_eq!(scatter.offset, theta.dims()[0], "parameter vector size");
    module
}

/// Integrate `[x | 0]` (`extra` zero columns) from `t0` to `t1` with gradients by the adjoint
/// method. `theta` is the flat parameter vector the system reads, tracked; `cond` as the
/// system sees it. None when the tensors are not on a backend this supports (then
/// back-propagate through the steps instead): the CPU's, and with the `cuda` feature CubeCL's.
#[allow(clippy::too_many_arguments)]
pub fn solve<S: AugmentedDynamics>(
    system: S,
    solver: OdeSolver,
    theta: Tensor<1>,
    x: Tensor<2>,
    cond: Option<Tensor<2>>,
    extra: usize,
    t0: f64,
    t1: f64,
) -> Option<Result<(Tensor<2>, SolveStats), StepLimit>> {
    let settings = Saved {
        solver,
        dim: 0,
        extra,
        t0,
        t1,
    };
    #[cfg(feature = "cuda")]
    if x.clone()
        .try_into_primitive::<Autodiff<burn::backend::Cube>>()
        .is_ok()
    {
        return on::<burn::backend::Cube, S>(system, settings, theta, x, cond);
    }
    on::<Flex, S>(system, settings, theta, x, cond)
}

/// [`solve`] on backend `B`, if the tensors are there.
fn on<B: Backend, S: AugmentedDynamics>(
    system: S,
    settings: Saved,
    theta: Tensor<1>,
    x: Tensor<2>,
    cond: Option<Tensor<2>>,
) -> Option<Result<(Tensor<2>, SolveStats), StepLimit>>
where
    DispatchTensor: DispatchKindConversion<B> + DispatchKindConversion<Autodiff<B>>,
{
    let x = x.try_into_primitive::<Autodiff<B>>().ok()?;
    let theta = theta.try_into_primitive::<Autodiff<B>>().ok()?;
    let cond = match cond {
        Some(c) => Some(c.try_into_primitive::<Autodiff<B>>().ok()?),
        None => None,
    };
    Some(run::<B, S>(system, settings, x, theta, cond))
}

/// The solve's settings.
#[derive(Clone, Copy, Debug)]
struct Saved {
    solver: OdeSolver,
    dim: usize,
    extra: usize,
    t0: f64,
    t1: f64,
}

/// What the backward pass needs: the end point, the inputs it differentiates by, the system.
#[derive(Clone, Debug)]
struct State<S> {
    system: S,
    saved: Saved,
    y1: Tensor<2>,
    theta: Tensor<1>,
    cond: Option<Tensor<2>>,
}

#[derive(Debug)]
struct AdjointSolve<S>(PhantomData<S>);

fn primitive<B: Backend, const D: usize>(t: Tensor<D>) -> B::FloatTensorPrimitive
where
    DispatchTensor: DispatchKindConversion<B>,
{
    t.try_into_primitive::<B>()
        .expect("the adjoint solve's tensors stay on their backend")
}

fn run<B: Backend, S: AugmentedDynamics>(
    system: S,
    mut saved: Saved,
    x: AutodiffTensor<B>,
    theta: AutodiffTensor<B>,
    cond: Option<AutodiffTensor<B>>,
) -> Result<(Tensor<2>, SolveStats), StepLimit>
where
    DispatchTensor: DispatchKindConversion<B> + DispatchKindConversion<Autodiff<B>>,
{
    let plain = |t: &AutodiffTensor<B>| t.primitive().clone();
    let x_value = Tensor::<2>::from_primitive::<B>(plain(&x));
    let theta_value = Tensor::<1>::from_primitive::<B>(plain(&theta));
    let cond_value = cond
        .as_ref()
        .map(|c| Tensor::<2>::from_primitive::<B>(plain(c)));
    let [batch, dim] = x_value.dims();
    saved.dim = dim;
    let y0 = if saved.extra > 0 {
        let zeros = Tensor::<2>::zeros([batch, saved.extra], &x_value.device());
        Tensor::cat(vec![x_value.clone(), zeros.cast(x_value.dtype())], 1)
    } else {
        x_value.clone()
    };
    let f = |t: f64, y: Tensor<2>| {
        system.derivative(&theta_value, t, y.narrow(1, 0, dim), cond_value.as_ref())
    };
    let (y1, stats) = saved.solver.solve(f, y0, saved.t0, saved.t1)?;
    // Without a condition the third input is a constant stand-in, never differentiated.
    let cond_input = cond.unwrap_or_else(|| AutodiffTensor::new(plain(&x)));
    let op = AdjointSolve::<S>(PhantomData);
    let nodes = [x.node(), theta.node(), cond_input.node()];
    let out = match <AdjointSolve<S> as Backward<B, 3>>::prepare::<NoCheckpointing>(op, nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = State {
                system,
                saved,
                y1: y1.clone(),
                theta: theta_value,
                cond: cond_value,
            };
            prep.finish(state, primitive::<B, 2>(y1))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive::<B, 2>(y1)),
    };
    Ok((Tensor::<2>::from_primitive::<Autodiff<B>>(out), stats))
}

impl<B: Backend, S: AugmentedDynamics> Backward<B, 3> for AdjointSolve<S>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    type State = State<S>;

    fn backward(self, ops: Ops<State<S>, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, theta_node, cond_node] = ops.parents;
        let grad = Tensor::<2>::from_primitive::<B>(grads.consume::<B>(&ops.node));
        let state = &ops.state;
        let wants_cond = cond_node.is_some() && state.cond.is_some();
        let (gx, gtheta, gcond) = match adjoint_solve(state, grad, wants_cond) {
            Ok(g) => g,
            Err(limit) => {
                record_failure(format!(
                    "the adjoint solve of a continuous layer ({} features) stopped at t = {:.6} \
                     of [{}, {}] after {} step attempts (last step {:.3e}); raise \
                     solver.max_steps or the tolerances, or regularise the dynamics",
                    state.saved.dim,
                    limit.time,
                    state.saved.t1,
                    state.saved.t0,
                    limit.attempts,
                    limit.step
                ));
                let nan2 = |t: &Tensor<2>| t.clone().mul_scalar(f64::NAN);
                let x_like = state.y1.clone().narrow(1, 0, state.saved.dim);
                (
                    nan2(&x_like),
                    state.theta.clone().mul_scalar(f64::NAN),
                    state.cond.as_ref().map(nan2),
                )
            }
        };
        if let Some(node) = x_node {
            grads.register::<B>(node.id, primitive::<B, 2>(gx));
        }
        if let Some(node) = theta_node {
            grads.register::<B>(node.id, primitive::<B, 1>(gtheta));
        }
        if let (Some(node), Some(gcond)) = (cond_node, gcond) {
            grads.register::<B>(node.id, primitive::<B, 2>(gcond));
        }
    }
}

/// Solve `[z, a_z, a_theta, a_c]` from `t1` back to `t0`, as one row so that one step size and
/// one error norm serve all four: `dz/dt = f`, and each adjoint's derivative is minus the
/// vector-Jacobian product of `[a_z | a_e]` with `[f | de/dt]`.
fn adjoint_solve<S: AugmentedDynamics>(
    state: &State<S>,
    grad: Tensor<2>,
    wants_cond: bool,
) -> Result<(Tensor<2>, Tensor<1>, Option<Tensor<2>>), StepLimit> {
    let Saved {
        solver,
        dim,
        extra,
        t0,
        t1,
    } = state.saved;
    let [batch, _] = state.y1.dims();
    let device = state.y1.device();
    let dtype = state.y1.dtype();
    let nz = batch * dim;
    let np = state.theta.dims()[0];
    let nc = match (&state.cond, wants_cond) {
        (Some(c), true) => c.shape().num_elements(),
        _ => 0,
    };
    let a_e = (extra > 0).then(|| grad.clone().narrow(1, dim, extra));
    let row = |t: Tensor<2>| {
        let n = t.shape().num_elements();
        t.reshape([1, n])
    };
    let mut parts = vec![
        row(state.y1.clone().narrow(1, 0, dim)),
        row(grad.narrow(1, 0, dim)),
        Tensor::<2>::zeros([1, np + nc], &device).cast(dtype),
    ];
    parts.retain(|p| p.dims()[1] > 0);
    let y = Tensor::cat(parts, 1);
    let f = |t: f64, y: Tensor<2>| {
        let z = y.clone().narrow(1, 0, nz).reshape([batch, dim]);
        let a_z = y.narrow(1, nz, nz).reshape([batch, dim]);
        let z = z.autodiff().require_grad();
        let theta = state.theta.clone().autodiff().require_grad();
        let cond = state.cond.clone().map(|c| {
            if wants_cond {
                c.autodiff().require_grad()
            } else {
                c
            }
        });
        let out = state.system.derivative(&theta, t, z.clone(), cond.as_ref());
        let weights = match &a_e {
            Some(a_e) => Tensor::cat(vec![a_z, a_e.clone()], 1),
            None => a_z,
        };
        let grads = (out.clone() * weights).sum().backward();
        let zeros = |n: usize| Tensor::<2>::zeros([1, n], &device).cast(dtype);
        let mut parts = vec![
            row(out.narrow(1, 0, dim).inner()),
            z.grad(&grads).map_or_else(|| zeros(nz), |g| row(g.neg())),
            theta
                .grad(&grads)
                .map_or_else(|| zeros(np), |g| g.neg().reshape([1, np])),
        ];
        if nc > 0 {
            let g = cond.as_ref().and_then(|c| c.grad(&grads));
            parts.push(g.map_or_else(|| zeros(nc), |g| row(g.neg())));
        }
        parts.retain(|p| p.dims()[1] > 0);
        Tensor::cat(parts, 1)
    };
    let (y0, stats) = solver.solve(f, y, t1, t0)?;
    tracing::trace!(nfe = stats.nfe, steps = stats.steps, "adjoint solve");
    let gx = y0.clone().narrow(1, nz, nz).reshape([batch, dim]);
    let gtheta = y0.clone().narrow(1, 2 * nz, np).reshape([np]);
    let gcond = (nc > 0).then(|| {
        let c = state.cond.as_ref().expect("a condition");
        y0.narrow(1, 2 * nz + np, nc).reshape(c.dims())
    });
    Ok((gx, gtheta, gcond))
}
