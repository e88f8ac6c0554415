//! Adam and AdamW as one pass over each parameter on the CPU backend.
//!
//! burn's optimizers update a parameter in about a dozen tensor operations (scale the moments,
//! square the gradient, add, take the root, divide, ...), each a pass over the parameter's
//! values into freshly allocated memory. For app 1's 12 x [512, 512] RealNVP (3.1M parameters)
//! that was a quarter of a training step. Here the moments and the parameter are updated in one
//! pass, in place where the buffers are not shared, split over rayon's threads when large.
//!
//! The arithmetic is burn's, operation for operation, in f32, so the updates are the same to
//! the bit; the state types are burn's, so checkpoints and their optimizer records are
//! unchanged. Tensors on another backend (CUDA) go through burn's own step.

use burn::backend::Flex;
use burn::optim::{
    AdamConfig, AdamState, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer,
};
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

type FlexTensor = <Flex as burn::backend::BackendTypes>::FloatTensorPrimitive;

/// Below this many values a parameter is updated on the calling thread alone.
const PARALLEL_VALUES: usize = 1 << 15;

/// The betas and epsilon of Adam and AdamW.
#[derive(Clone, Copy, Debug)]
struct Moments {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

/// Adam (Kingma & Ba) as burn's `AdamConfig` with the same betas and epsilon computes it.
#[derive(Clone)]
pub(crate) struct Adam {
    moments: Moments,
    fallback: burn::optim::Adam,
}

impl Adam {
    pub(crate) fn new(epsilon: f32) -> Self {
        Self {
            moments: Moments {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon,
            },
            fallback: AdamConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.999)
                .with_epsilon(epsilon)
                .build(),
        }
    }
}

/// AdamW (Loshchilov & Hutter) as burn's `AdamWConfig` computes it.
#[derive(Clone)]
pub(crate) struct AdamW {
    moments: Moments,
    weight_decay: f32,
    fallback: burn::optim::AdamW,
}

impl AdamW {
    pub(crate) fn new(epsilon: f32, weight_decay: f32) -> Self {
        Self {
            moments: Moments {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon,
            },
            weight_decay,
            fallback: AdamWConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.999)
                .with_epsilon(epsilon)
                .with_weight_decay(weight_decay)
                .build(),
        }
    }
}

/// The scalars of one update at step `time` (1 for the first).
#[derive(Clone, Copy)]
enum Rule {
    /// burn's Adam: `p - lr * (m * c) / (sqrt(v) + eps')`.
    Adam {
        combined: f32,
        epsilon: f32,
        lr: f32,
    },
    /// burn's AdamW: `p * keep - lr * (m / c1) / (sqrt(v / c2) + eps)`.
    AdamW {
        correction_1: f32,
        correction_2: f32,
        epsilon: f32,
        keep: f32,
        lr: f32,
    },
}

impl Rule {
    /// The pass over one chunk. Each rule gets a loop of its own without branches, so that
    /// the compiler turns it into vector instructions.
    #[inline(always)]
    fn pass(self, chunk: Chunk, first: bool, betas: [f32; 2]) {
        match self {
            Rule::Adam {
                combined,
                epsilon,
                lr,
            } => moments_then(chunk, first, betas, |p, m, v| {
                p - (m * combined) / (v.sqrt() + epsilon) * lr
            }),
            Rule::AdamW {
                correction_1,
                correction_2,
                epsilon,
                keep,
                lr,
            } => moments_then(chunk, first, betas, |p, m, v| {
                p * keep - (m / correction_1) / ((v / correction_2).sqrt() + epsilon) * lr
            }),
        }
    }

    /// [`Self::pass`] in the widest vectors the CPU has (16 values an instruction with
    /// AVX-512, where the build's baseline has 4).
    fn pass_fastest(self, chunk: Chunk, first: bool, betas: [f32; 2]) {
        crate::simd::widest(
            #[inline(always)]
            || self.pass(chunk, first, betas),
        )
    }
}

/// Parameter, first and second moments (written) and gradient (read) of one chunk.
type Chunk<'a> = (&'a mut [f32], &'a mut [f32], &'a mut [f32], &'a [f32]);

/// New moments from the gradient, then the parameter from them by `rule`, value by value.
#[inline(always)]
fn moments_then(
    (ps, ms, vs, gs): Chunk,
    first: bool,
    [beta_1, beta_2]: [f32; 2],
    rule: impl Fn(f32, f32, f32) -> f32,
) {
    let n = ps.len();
    let (ms, vs, gs) = (&mut ms[..n], &mut vs[..n], &gs[..n]);
    let (factor_1, factor_2) = (1.0 - beta_1, 1.0 - beta_2);
    // As burn writes it: `m * b1 + g * (1 - b1)`, `v * b2 + g^2 * (1 - b2)`; the first step
    // starts from `g * (1 - b1)` and `g^2 * (1 - b2)`.
    if first {
        for i in 0..n {
            let g = gs[i];
            let (m, v) = (g * factor_1, (g * g) * factor_2);
            (ms[i], vs[i]) = (m, v);
            ps[i] = rule(ps[i], m, v);
        }
    } else {
        for i in 0..n {
            let g = gs[i];
            let m = ms[i] * beta_1 + g * factor_1;
            let v = vs[i] * beta_2 + (g * g) * factor_2;
            (ms[i], vs[i]) = (m, v);
            ps[i] = rule(ps[i], m, v);
        }
    }
}

impl Moments {
    fn adam(&self, time: usize, lr: LearningRate) -> Rule {
        let time = time as i32;
        let correction_2_sqrt = (1.0 - self.beta_2.powi(time)).sqrt();
        Rule::Adam {
            combined: correction_2_sqrt / (1.0 - self.beta_1.powi(time)),
            epsilon: self.epsilon * correction_2_sqrt,
            lr: lr as f32,
        }
    }

    fn adam_w(&self, time: usize, lr: LearningRate, weight_decay: f32) -> Rule {
        let time = time as i32;
        let decay = lr * weight_decay as f64;
        Rule::AdamW {
            correction_1: 1.0 - self.beta_1.powi(time),
            correction_2: 1.0 - self.beta_2.powi(time),
            epsilon: self.epsilon,
            keep: if decay == 0.0 {
                1.0
            } else {
                (1.0 - decay) as f32
            },
            lr: lr as f32,
        }
    }

    /// One step over plain CPU tensors: the new parameter and moments, or the inputs back when
    /// any of them is not an f32 tensor of the CPU backend.
    fn step<const D: usize>(
        &self,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdaptiveMomentumState<D>>,
        rule: impl FnOnce(usize) -> Rule,
    ) -> Result<(Tensor<D>, AdaptiveMomentumState<D>), Box<Inputs<D>>> {
        let shape = tensor.shape();
        let usable = |t: &Tensor<D>| t.dtype() == DType::F32 && t.shape() == shape;
        let state_usable = state
            .as_ref()
            .is_none_or(|s| s.max_moment_2.is_none() && usable(&s.moment_1) && usable(&s.moment_2));
        if !(usable(&tensor) && usable(&grad) && state_usable) {
            return Err(Box::new((tensor, grad, state)));
        }
        let Some(p) = into_flex(&tensor) else {
            return Err(Box::new((tensor, grad, state)));
        };
        drop(tensor);
        let g = into_flex(&grad).expect("the gradient is on the parameter's backend");
        drop(grad);
        let (time, moments) = match state {
            Some(s) => {
                let m = into_flex(&s.moment_1).expect("Adam's state is on the parameter's backend");
                let v = into_flex(&s.moment_2).expect("Adam's state is on the parameter's backend");
                (s.time + 1, Some((m, v)))
            }
            None => (1, None),
        };
        let (p, m, v) = update(p, &g, moments, [self.beta_1, self.beta_2], rule(time));
        let back = |t: FlexTensor| Tensor::<D>::from_primitive::<Flex>(t);
        let state = AdaptiveMomentumState::new(time, back(m), back(v));
        Ok((back(p), state))
    }
}

type Inputs<const D: usize> = (Tensor<D>, Tensor<D>, Option<AdaptiveMomentumState<D>>);

/// The CPU backend's primitive of `t`, contiguous. The caller drops `t` after, so that a buffer
/// held by `t` alone is held by the primitive alone and can be written in place.
fn into_flex<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    let flex = t.clone().try_into_primitive::<Flex>().ok()?;
    Some(match flex.layout().contiguous_offsets() {
        Some((0, end)) if end == flex.layout().shape().num_elements() => flex,
        _ => flex.to_contiguous(),
    })
}

/// The pass: new moments from the gradient, then the parameter from them.
fn update(
    mut p: FlexTensor,
    g: &FlexTensor,
    moments: Option<(FlexTensor, FlexTensor)>,
    betas: [f32; 2],
    rule: Rule,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let g_values = g.storage::<f32>();
    let n = g_values.len();
    let fresh = || FlexTensor::empty(g.layout().shape().clone(), DType::F32);
    let (mut m, mut v, first) = match moments {
        Some((m, v)) => (m, v, false),
        None => (fresh(), fresh(), true),
    };
    // Copied first only where another tensor still holds the buffer.
    let ps = &mut p.storage_mut::<f32>()[..n];
    let ms = &mut m.storage_mut::<f32>()[..n];
    let vs = &mut v.storage_mut::<f32>()[..n];
    if n >= PARALLEL_VALUES && rayon::current_num_threads() > 1 {
        let chunk = n.div_ceil(4 * rayon::current_num_threads()).max(4096);
        ps.par_chunks_mut(chunk)
            .zip(ms.par_chunks_mut(chunk))
            .zip(vs.par_chunks_mut(chunk).zip(g_values.par_chunks(chunk)))
            .for_each(|((p, m), (v, g))| rule.pass_fastest((p, m, v, g), first, betas));
    } else {
        rule.pass_fastest((ps, ms, vs, g_values), first, betas);
    }
    (p, m, v)
}

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let moments = self.moments;
        match moments.step(tensor, grad, state.map(|s| s.momentum), |time| {
            moments.adam(time, lr)
        }) {
            Ok((tensor, momentum)) => (tensor, Some(AdamState::new(momentum))),
            Err(inputs) => {
                let (tensor, grad, momentum) = *inputs;
                self.fallback
                    .step(lr, tensor, grad, momentum.map(AdamState::new))
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <burn::optim::Adam as Optimizer>::to_device(state, device)
    }
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (moments, decay) = (self.moments, self.weight_decay);
        match moments.step(tensor, grad, state.map(|s| s.momentum), |time| {
            moments.adam_w(time, lr, decay)
        }) {
            Ok((tensor, momentum)) => (tensor, Some(AdamWState { momentum })),
            Err(inputs) => {
                let (tensor, grad, momentum) = *inputs;
                let state = momentum.map(|momentum| AdamWState { momentum });
                self.fallback.step(lr, tensor, grad, state)
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <burn::optim::AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests;
