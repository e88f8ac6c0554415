//! Elementwise invertible transforms whose parameters come from a network (the "inner"
//! transforms of couplings and autoregressive layers): affine, additive, and the
//! rational-quadratic spline ([`Spline`]). Parameters come as `[batch, k, d]`: `k` raw values
//! for each of the `d` transformed features, in the layout of a network output `[batch, k * d]`.
//!
//! Every transform here is the identity when all its raw parameters are zero. Couplings rely on
//! that twice: a zero-initialised last layer makes a new flow the identity, and a checkerboard
//! coupling zeroes the parameters of the conditioning positions to leave them unchanged.

mod affine_pass;
mod affine_tracked;
mod dual;
pub(crate) mod exp_ln;
mod spline;
mod spline_kernel;
mod spline_pass;

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};
use serde::{Deserialize, Serialize};

pub use spline::Spline;

/// How an affine transform turns the raw network output `h` into a log-scale.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScaleFn {
    /// `log s = c tanh(h / c)`: RealNVP's exponential scale with a soft clamp at `±c`.
    Tanh {
        /// The soft clamp `c`.
        clamp: f64,
    },
    /// `log s = c (2/π) atan(h / c)`: the soft clamp of Ardizzone et al. (FrEIA).
    Atan {
        /// The soft clamp `c`.
        clamp: f64,
    },
    /// `s = sigmoid(h + 2) / sigmoid(2)`: Glow's scale, divided by its value at `h = 0` so that
    /// a zero-initialised network gives the identity. The scale lies in `(0, 1.135)`.
    Sigmoid,
}

impl Default for ScaleFn {
    fn default() -> Self {
        Self::Tanh { clamp: 3.0 }
    }
}

impl ScaleFn {
    /// The log-scale for raw output `h`.
    pub fn log_scale(&self, h: Tensor<2>) -> Tensor<2> {
        match *self {
            Self::Tanh { clamp } => h.div_scalar(clamp).tanh().mul_scalar(clamp),
            Self::Atan { clamp } => h
                .div_scalar(clamp)
                .atan()
                .mul_scalar(clamp * std::f64::consts::FRAC_2_PI),
            Self::Sigmoid => {
                // ln sigmoid(2) = -ln(1 + e^-2)
                let offset = -(1.0 + (-2.0f64).exp()).ln();
                log_sigmoid(h.add_scalar(2.0)).sub_scalar(offset)
            }
        }
    }

    /// The scale and its log for raw output `h`, `(s, log s)`. Glow's sigmoid scale takes one
    /// sigmoid and one log instead of a log-sigmoid and an exp: log-sigmoid's log1p per value
    /// was the costliest elementwise call of Glow's scoring. Below `h + 2 = -80`, where the
    /// sigmoid would leave f32's normal range, the scale stays at `sigmoid(-80)`.
    pub fn scale_and_log(&self, h: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        match *self {
            Self::Sigmoid => {
                let at_zero = 1.0 / (1.0 + (-2.0f64).exp());
                let s = sigmoid(h.add_scalar(2.0).clamp_min(-80.0)).div_scalar(at_zero);
                (s.clone(), s.log())
            }
            _ => {
                let log_s = self.log_scale(h);
                (log_s.clone().exp(), log_s)
            }
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        match *self {
            Self::Tanh { clamp } | Self::Atan { clamp } if !(clamp.is_finite() && clamp > 0.0) => {
                Err(crate::FlowError::config(format!(
                    "scale clamp must be a positive number, got {clamp}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The elementwise transform of a coupling.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    /// `z = x s + t` (RealNVP, Glow). Parameters: shift `t`, raw scale `h`.
    Affine {
        /// How `h` becomes `log s`.
        #[serde(default)]
        scale: ScaleFn,
    },
    /// `z = x + t` (NICE), volume preserving. Parameter: shift `t`.
    Additive,
    /// The monotone rational-quadratic spline of neural spline flows. Parameters: `3K - 1`.
    RationalQuadratic(Spline),
}

impl Default for Transform {
    fn default() -> Self {
        Self::Affine {
            scale: ScaleFn::default(),
        }
    }
}

impl Transform {
    /// How many raw values per transformed feature the network predicts.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Affine { .. } => 2,
            Self::Additive => 1,
            Self::RationalQuadratic(spline) => spline.num_params(),
        }
    }

    /// Data to latent, `x` `[batch, d]` with `params` `[batch, k, d]`. Returns the output and
    /// the elementwise log|dz/dx| (`None` where it is zero everywhere).
    pub fn forward(&self, x: Tensor<2>, params: Tensor<3>) -> (Tensor<2>, Option<Tensor<2>>) {
        match self {
            Self::Affine { scale } => {
                let fused = affine_pass::apply(*scale, &x, &params, false)
                    .or_else(|| affine_tracked::forward(*scale, &x, &params));
                if let Some((z, log_s)) = fused {
                    return (z, Some(log_s));
                }
                let (shift, h) = (param(&params, 0), param(&params, 1));
                let (s, log_s) = scale.scale_and_log(h);
                (x * s + shift, Some(log_s))
            }
            Self::Additive => (x + param(&params, 0), None),
            Self::RationalQuadratic(spline) => {
                let (z, ld) = spline.forward(x, params);
                (z, Some(ld))
            }
        }
    }

    /// Latent to data: the inverse of [`Transform::forward`] for the same parameters, with the
    /// elementwise log|dx/dz|.
    pub fn inverse(&self, z: Tensor<2>, params: Tensor<3>) -> (Tensor<2>, Option<Tensor<2>>) {
        match self {
            Self::Affine { scale } => {
                if let Some((x, log_det)) = affine_pass::apply(*scale, &z, &params, true) {
                    return (x, Some(log_det));
                }
                let (shift, h) = (param(&params, 0), param(&params, 1));
                let (s, log_s) = scale.scale_and_log(h);
                ((z - shift) / s, Some(log_s.neg()))
            }
            Self::Additive => (z - param(&params, 0), None),
            Self::RationalQuadratic(spline) => {
                let (x, ld) = spline.inverse(z, params);
                (x, Some(ld))
            }
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        match self {
            Self::Affine { scale } => scale.validate(),
            Self::Additive => Ok(()),
            Self::RationalQuadratic(spline) => spline.validate(),
        }
    }
}

/// Raw parameter `j` of every feature, `[batch, d]`.
fn param(params: &Tensor<3>, j: usize) -> Tensor<2> {
    let [batch, _, d] = params.dims();
    params.clone().narrow(1, j, 1).reshape([batch, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glows_sigmoid_scale_matches_its_log_sigmoid_form_and_stays_finite() {
        let device = Device::flex();
        let values = vec![-200.0f32, -81.0, -30.0, -2.0, 0.0, 0.5, 3.0, 40.0, 200.0];
        let n = values.len();
        let h = Tensor::<2>::from_data(burn::tensor::TensorData::new(values, [1, n]), &device);
        let (s, log_s) = ScaleFn::Sigmoid.scale_and_log(h.clone());
        let exact = ScaleFn::Sigmoid
            .log_scale(h)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let s = s.into_data().try_to_vec::<f32>().unwrap();
        let log_s = log_s.into_data().try_to_vec::<f32>().unwrap();
        for i in 0..n {
            assert!(
                s[i].is_finite() && s[i] > 0.0 && log_s[i].is_finite(),
                "value {i}"
            );
            assert!(
                (s[i].ln() - log_s[i]).abs() < 1e-5,
                "log s is the log of s at {i}"
            );
            // Above the clamp, the log-sigmoid form; below it, the scale at the clamp.
            let expected = if i == 0 {
                -80.0f32 + 0.126_928
            } else {
                exact[i]
            };
            assert!(
                (log_s[i] - expected).abs() < 1e-4 * expected.abs().max(1.0),
                "at {i}: {} against {expected}",
                log_s[i]
            );
        }
    }
}
