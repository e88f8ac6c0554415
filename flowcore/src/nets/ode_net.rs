//! The dynamics network of continuous flows, f(t, z, c): fully connected layers that see the
//! time, either concatenated to their input or through FFJORD's concat-squash gate and bias
//! (Grathwohl et al. 2019), with smooth nonlinearities, and the condition through a small
//! linear embedding computed once per solve (linear, so that a shift proportional to the
//! condition stays one layer away; a tanh there saturated on the tails of whitened conditions).
//!
//! Besides f it returns tangents J v of the network for given directions v, propagated forward
//! layer by layer with the same tensor operations: with the unit vectors as directions they
//! give the exact trace of df/dz, with random ones Hutchinson's estimate. The trace is then an
//! ordinary function of the parameters, so first-order back-propagation trains it.

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation;
use serde::{Deserialize, Serialize};

use crate::{FlowError, Result};

/// How a layer sees the time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInput {
    /// `(W h + b) * sigmoid(g t + g0) + u t` (FFJORD's `concatsquash`).
    #[default]
    ConcatSquash,
    /// `W [h, t] + b` (FFJORD's `concat`).
    Concat,
}

/// A smooth nonlinearity of the dynamics (its derivative enters the trace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OdeActivation {
    /// tanh.
    #[default]
    Tanh,
    /// softplus, log(1 + e^x).
    Softplus,
}

impl OdeActivation {
    /// The activation at `pre`.
    pub(crate) fn value<const D: usize>(self, pre: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Tanh => super::tanh(pre),
            Self::Softplus => activation::softplus(pre, 1.0),
        }
    }

    /// The activation and its derivative at `pre`.
    pub(crate) fn apply<const D: usize>(self, pre: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
        match self {
            Self::Tanh => {
                let h = super::tanh(pre);
                let d = h.clone().powi_scalar(2).neg().add_scalar(1.0);
                (h, d)
            }
            Self::Softplus => (
                activation::softplus(pre.clone(), 1.0),
                activation::sigmoid(pre),
            ),
        }
    }
}

/// The sizes and kind of a dynamics network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdeNetSpec {
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: OdeActivation,
    /// How layers see the time.
    #[serde(default)]
    pub time: TimeInput,
}

impl OdeNetSpec {
    /// A network for `dim` features and a condition of `cond_dim` values; the last layer starts
    /// at zero, so the flow starts as the identity.
    pub fn build(&self, dim: usize, cond_dim: usize, device: &Device) -> Result<OdeNet> {
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(FlowError::config(
                "the dynamics network needs hidden widths, all positive",
            ));
        }
        // One column goes in as it is; several through an embedding as wide as the data.
        let (embed, cond_width) = match cond_dim {
            0 => (None, 0),
            1 => (None, 1),
            c => {
                let width = c.min(dim.max(8));
                (Some(LinearConfig::new(c, width).init(device)), width)
            }
        };
        let mut widths = vec![dim + cond_width];
        widths.extend(&self.hidden);
        widths.push(dim);
        let last = widths.len() - 2;
        let layers = (0..=last)
            .map(|i| TimeLinear::new(widths[i], widths[i + 1], self.time, i == last, device))
            .collect();
        Ok(OdeNet {
            layers,
            embed,
            activation: self.activation,
            dim,
        })
    }
}

/// One layer that sees the time.
#[derive(Module, Debug)]
pub struct TimeLinear {
    linear: Linear,
    /// Concat: the time's column of the weight; concat-squash: the gate's weight.
    time_weight: Param<Tensor<1>>,
    /// Concat-squash: the gate's bias and the time bias's weight.
    gate_bias: Option<Param<Tensor<1>>>,
    time_bias: Option<Param<Tensor<1>>>,
}

impl TimeLinear {
    fn new(inputs: usize, outputs: usize, time: TimeInput, zero: bool, device: &Device) -> Self {
        let linear = LinearConfig::new(inputs, outputs)
            .with_initializer(initializer(zero))
            .init(device);
        let (time_weight, gate_bias, time_bias) = time_params(outputs, time, zero, device);
        Self {
            linear,
            time_weight,
            gate_bias,
            time_bias,
        }
    }

    /// `(value, gate)` at time `t`: the pre-activation, and the factor on the tangents.
    fn forward(&self, h: Tensor<2>, t: f64) -> (Tensor<2>, Option<Tensor<2>>) {
        see_time(
            super::dense::dense(&self.linear, h, None),
            1,
            t,
            &self.time_weight,
            self.gate_bias.as_ref().zip(self.time_bias.as_ref()),
        )
    }

    /// The tangent of the pre-activation for tangents `v` of the input's first `rows` values.
    fn tangent(&self, v: Tensor<2>, rows: usize, gate: Option<&Tensor<2>>) -> Tensor<2> {
        let w = self.linear.weight.val();
        let w = if rows < w.dims()[0] {
            w.narrow(0, 0, rows)
        } else {
            w
        };
        let out = super::product::product(v, w);
        match gate {
            Some(g) => out * g.clone(),
            None => out,
        }
    }
}

/// The weights' initializer: zero for the last layer, so the flow starts as the identity.
pub(crate) fn initializer(zero: bool) -> Initializer {
    if zero {
        Initializer::Zeros
    } else {
        Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false,
        }
    }
}

/// A dynamics network f(t, z, c) with its tangents: what a continuous block integrates.
pub trait Dynamics {
    /// f(t, z, c) alone, for a solve that needs no trace (sampling).
    fn value(&self, t: f64, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2>;

    /// `(f(t, z, c), J v)` for `z: [batch, dim]`, an embedded condition, and `k` tangent
    /// directions per sample, `v: [k * batch, dim]` (direction-major).
    fn eval(
        &self,
        t: f64,
        z: Tensor<2>,
        cond: Option<&Tensor<2>>,
        v: Tensor<2>,
    ) -> (Tensor<2>, Tensor<2>);
}

/// A layer's time parameters for `outputs` channels: the time weight, and for concat-squash
/// the gate's bias and the time bias's weight; zero where the layer starts at zero.
pub(crate) type TimeParams = (
    Param<Tensor<1>>,
    Option<Param<Tensor<1>>>,
    Option<Param<Tensor<1>>>,
);

/// [`TimeParams`] at their initial values.
pub(crate) fn time_params(
    outputs: usize,
    time: TimeInput,
    zero: bool,
    device: &Device,
) -> TimeParams {
    let small = |zero: bool| {
        let t: Tensor<1> = if zero {
            Tensor::zeros([outputs], device)
        } else {
            Tensor::random(
                [outputs],
                burn::tensor::Distribution::Uniform(-1.0, 1.0),
                device,
            )
        };
        Param::from_tensor(t)
    };
    let squash = time == TimeInput::ConcatSquash;
    (
        small(zero),
        squash.then(|| small(false)),
        squash.then(|| small(zero)),
    )
}

/// `(value, gate)` of a layer's output `out` (channels on `axis`) at time `t`: with a gate
/// (concat-squash) `out * sigmoid(g t + g0) + u t`, else `out + w t`; the gate also scales
/// the tangents.
pub(crate) fn see_time<const D: usize>(
    out: Tensor<D>,
    axis: usize,
    t: f64,
    time_weight: &Param<Tensor<1>>,
    squash: Option<(&Param<Tensor<1>>, &Param<Tensor<1>>)>,
) -> (Tensor<D>, Option<Tensor<D>>) {
    let mut shape = [1usize; D];
    shape[axis] = out.dims()[axis];
    match squash {
        Some((gate_bias, time_bias)) => {
            let gate = activation::sigmoid(time_weight.val().mul_scalar(t) + gate_bias.val())
                .reshape(shape);
            let bias = time_bias.val().mul_scalar(t).reshape(shape);
            (out * gate.clone() + bias, Some(gate))
        }
        None => (out + time_weight.val().mul_scalar(t).reshape(shape), None),
    }
}

/// f(t, z, c) with its tangents.
#[derive(Module, Debug)]
pub struct OdeNet {
    layers: Vec<TimeLinear>,
    embed: Option<Linear>,
    #[module(skip)]
    activation: OdeActivation,
    #[module(skip)]
    dim: usize,
}

impl OdeNet {
    /// The condition as the layers see it, computed once per solve.
    pub fn embed(&self, cond: Option<&Tensor<2>>) -> Option<Tensor<2>> {
        let c = cond?.clone();
        Some(match &self.embed {
            Some(e) => e.forward(c),
            None => c,
        })
    }
}

impl Dynamics for OdeNet {
    fn value(&self, t: f64, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        let mut h = match cond {
            Some(c) => Tensor::cat(vec![z, c.clone()], 1),
            None => z,
        };
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let (pre, _) = layer.forward(h, t);
            h = if i == last {
                pre
            } else {
                self.activation.value(pre)
            };
        }
        h
    }

    fn eval(
        &self,
        t: f64,
        z: Tensor<2>,
        cond: Option<&Tensor<2>>,
        v: Tensor<2>,
    ) -> (Tensor<2>, Tensor<2>) {
        let [batch, _] = z.dims();
        let k = v.dims()[0] / batch;
        let mut h = match cond {
            Some(c) => Tensor::cat(vec![z, c.clone()], 1),
            None => z,
        };
        let mut tangent = v;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let rows = if i == 0 { self.dim } else { usize::MAX };
            let (pre, gate) = layer.forward(h, t);
            tangent = layer.tangent(tangent, rows, gate.as_ref());
            if i == last {
                h = pre;
            } else {
                let (act, slope) = self.activation.apply(pre);
                let width = act.dims()[1];
                tangent = (tangent.reshape([k, batch, width]) * slope.unsqueeze::<3>())
                    .reshape([k * batch, width]);
                h = act;
            }
        }
        (h, tangent)
    }
}
