//! Continuous normalizing flows (FFJORD, Grathwohl et al. 2019): one or more continuous blocks,
//! each optionally after an ActNorm, conditional when the data carry a condition. The defaults
//! are FFJORD's toy-data model: one block, a 64-64-64 concat-squash network with tanh, and
//! Dormand-Prince at rtol = atol = 1e-5. On images, `network = "conv"` makes the dynamics 3x3
//! convolutions (FFJORD's image models), after an optional logit and squeezes.

use serde::{Deserialize, Serialize};

use super::{Architecture, DataShape};
use crate::layer::LayerSpec;
use crate::layers::{
    ActNormSpec, FfjordSpec, ImageShape, LogitSpec, ProbeNoise, SqueezeSpec, TraceEstimator,
};
use crate::nets::{OdeActivation, TimeInput};
use crate::ode::{OdeGradient, OdeSolver};
use crate::{FlowError, Result};

fn one() -> usize {
    1
}

fn sixty_four_thrice() -> Vec<usize> {
    vec![64, 64, 64]
}

/// The kind of dynamics network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OdeNetwork {
    /// Fully connected layers on the features.
    #[default]
    Dense,
    /// 3x3 convolutions on images; the hidden widths are channels.
    Conv,
}

/// `num_blocks` continuous blocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FfjordConfig {
    /// Features; 0 (or absent): those of the data.
    #[serde(default)]
    pub dim: usize,
    /// Continuous blocks in sequence.
    #[serde(default = "one")]
    pub num_blocks: usize,
    /// Hidden widths of every block's dynamics network.
    #[serde(default = "sixty_four_thrice")]
    pub hidden_units: Vec<usize>,
    /// Hidden nonlinearity (smooth: tanh or softplus).
    #[serde(default)]
    pub activation: OdeActivation,
    /// How the network sees the time: `concat_squash` or `concat`.
    #[serde(default)]
    pub time_input: TimeInput,
    /// The solver: `{ method = "dopri5", rtol, atol, max_steps }` or `{ method = "rk4", steps }`.
    #[serde(default)]
    pub solver: OdeSolver,
    /// The trace while training: `exact` or `hutchinson`.
    #[serde(default)]
    pub trace: TraceEstimator,
    /// Hutchinson's noise: `rademacher` or `gaussian`.
    #[serde(default)]
    pub noise: ProbeNoise,
    /// An ActNorm before every block.
    #[serde(default)]
    pub actnorm: bool,
    /// Size of the optional condition (0: unconditional).
    #[serde(default)]
    pub cond_dim: usize,
    /// RNODE's kinetic-energy weight (Finlay et al. 2020; 0: off; they use 0.01).
    #[serde(default)]
    pub kinetic_weight: f64,
    /// RNODE's Jacobian-norm weight (0: off; they use 0.01).
    #[serde(default)]
    pub jacobian_weight: f64,
    /// The dynamics network: `dense` or `conv` (images).
    #[serde(default)]
    pub network: OdeNetwork,
    /// Image channels for `conv`; 0 (or absent): those of the data.
    #[serde(default)]
    pub channels: usize,
    /// Image height for `conv`; 0 (or absent): that of the data.
    #[serde(default)]
    pub height: usize,
    /// Image width for `conv`; 0 (or absent): that of the data.
    #[serde(default)]
    pub width: usize,
    /// Logit preprocessing with this alpha (as Glow's); none when absent.
    #[serde(default)]
    pub logit_alpha: Option<f64>,
    /// 2x2 squeezes before the blocks (`conv` only): fewer, deeper planes.
    #[serde(default)]
    pub squeezes: usize,
    /// Hutchinson probes per sample for densities outside training; 0: the exact trace (its
    /// cost grows with the features: images need probes).
    #[serde(default)]
    pub eval_probes: usize,
    /// Training gradients: `backprop` through the solver's steps (exact for the discretised
    /// solve), or `adjoint` (a backward solve: memory independent of the steps, about twice
    /// the evaluations).
    #[serde(default)]
    pub gradient: OdeGradient,
}

impl Default for FfjordConfig {
    fn default() -> Self {
        Self {
            dim: 0,
            num_blocks: 1,
            hidden_units: sixty_four_thrice(),
            activation: OdeActivation::default(),
            time_input: TimeInput::default(),
            solver: OdeSolver::default(),
            trace: TraceEstimator::default(),
            noise: ProbeNoise::default(),
            actnorm: false,
            cond_dim: 0,
            kinetic_weight: 0.0,
            jacobian_weight: 0.0,
            network: OdeNetwork::default(),
            channels: 0,
            height: 0,
            width: 0,
            logit_alpha: None,
            squeezes: 0,
            eval_probes: 0,
            gradient: OdeGradient::default(),
        }
    }
}

impl FfjordConfig {
    /// The logit and squeezes before the blocks, and the image shape the blocks see (`conv`).
    fn preprocessing(&self) -> Result<(Vec<LayerSpec>, Option<ImageShape>)> {
        let mut specs = Vec::new();
        if let Some(alpha) = self.logit_alpha {
            specs.push(
                LogitSpec {
                    dim: self.dim,
                    alpha,
                }
                .into(),
            );
        }
        if self.network == OdeNetwork::Dense {
            if self.squeezes > 0 {
                return Err(FlowError::config(
                    "ffjord: squeezes need network = \"conv\" (images)",
                ));
            }
            return Ok((specs, None));
        }
        let mut shape = ImageShape::new(self.channels, self.height, self.width);
        if shape.numel() != self.dim {
            return Err(FlowError::config(format!(
                "ffjord: network = \"conv\" needs images: the shape {shape} has {} values, the \
                 data {} (channels, height and width come from the config or from image data)",
                shape.numel(),
                self.dim
            )));
        }
        let input = shape;
        for done in 0..self.squeezes {
            if !shape.height.is_multiple_of(2) || !shape.width.is_multiple_of(2) {
                return Err(FlowError::config(format!(
                    "ffjord: images of {input} cannot be squeezed {} times (each halves the \
                     height and width): after {done} they are {shape}, with an odd side",
                    self.squeezes
                )));
            }
            specs.push(SqueezeSpec { shape }.into());
            shape = ImageShape::new(shape.channels * 4, shape.height / 2, shape.width / 2);
        }
        Ok((specs, Some(shape)))
    }
}

impl Architecture for FfjordConfig {
    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        let bad = |what: String| Err(FlowError::config(format!("ffjord: {what}")));
        if self.dim == 0 {
            return bad("dim must be at least 1".into());
        }
        if self.num_blocks == 0 {
            return bad("num_blocks must be at least 1".into());
        }
        if self.hidden_units.is_empty() || self.hidden_units.contains(&0) {
            return bad(format!(
                "hidden_units must be one or more positive widths, got {:?}",
                self.hidden_units
            ));
        }
        if let Err(e) = self.solver.check() {
            return bad(e);
        }
        for (key, w) in [
            ("kinetic_weight", self.kinetic_weight),
            ("jacobian_weight", self.jacobian_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(format!("{key} = {w}: expected a finite weight >= 0"));
            }
        }
        let (mut specs, image) = self.preprocessing()?;
        for _ in 0..self.num_blocks {
            if self.actnorm {
                specs.push(match image {
                    Some(s) => ActNormSpec {
                        channels: s.channels,
                        spatial: s.spatial(),
                    }
                    .into(),
                    None => ActNormSpec::dense(self.dim).into(),
                });
            }
            specs.push(
                FfjordSpec {
                    dim: self.dim,
                    hidden: self.hidden_units.clone(),
                    activation: self.activation,
                    time: self.time_input,
                    solver: self.solver,
                    trace: self.trace,
                    noise: self.noise,
                    cond_dim: self.cond_dim,
                    kinetic_weight: self.kinetic_weight,
                    jacobian_weight: self.jacobian_weight,
                    image,
                    eval_probes: self.eval_probes,
                    gradient: self.gradient,
                }
                .into(),
            );
        }
        Ok(specs)
    }

    fn with_data_shape(mut self, shape: &DataShape) -> Self {
        shape.fill_dense(&mut self.dim, &mut self.cond_dim);
        shape.fill_image(&mut self.channels, &mut self.height, &mut self.width);
        self
    }

    fn cond_dim(&self) -> usize {
        self.cond_dim
    }
}
