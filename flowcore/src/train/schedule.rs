//! Learning-rate schedules. The rate is a function of the step and, for reduce-on-plateau, of a
//! small state updated at epoch ends; both are saved in checkpoints, so a resumed run follows
//! the same curve.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule, relative to the configured base rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// `rate * decay_rate^(step / decay_steps)`, the exponent floored when `staircase`.
    ExponentialDecay {
        /// Factor per `decay_steps`.
        decay_rate: f64,
        /// Steps per factor.
        decay_steps: u64,
        /// Decay in whole steps of `decay_steps` (TensorFlow's staircase).
        #[serde(default = "yes")]
        staircase: bool,
    },
    /// SGDR (Loshchilov & Hutter): cosine from the base rate to `min_lr` over `period` steps,
    /// then restart, each period `period_mult` times longer.
    CosineWarmRestarts {
        /// Steps of the first period.
        period: u64,
        /// Growth of the period after each restart.
        #[serde(default = "one")]
        period_mult: f64,
        /// The rate at the end of each period.
        #[serde(default)]
        min_lr: f64,
    },
    /// Multiply the rate by `factor` when the validation loss has not improved by `threshold`
    /// for `patience` epochs, down to `min_lr`.
    ReduceOnPlateau {
        /// Factor applied at a plateau.
        factor: f64,
        /// Epochs without improvement before reducing.
        patience: usize,
        /// Smallest improvement that counts.
        #[serde(default)]
        threshold: f64,
        /// The rate is never reduced below this.
        #[serde(default)]
        min_lr: f64,
    },
}

fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}

/// The mutable part of a schedule: reduce-on-plateau's current factor and its record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Current multiplier of the base rate.
    pub factor: f64,
    /// Best validation NLL seen.
    #[serde(with = "infinity_as_null")]
    pub best: f64,
    /// Epochs since it improved.
    pub bad_epochs: usize,
}

impl Default for ScheduleState {
    fn default() -> Self {
        Self {
            factor: 1.0,
            best: f64::INFINITY,
            bad_epochs: 0,
        }
    }
}

impl Schedule {
    /// Check the parameters; errors name the bad value.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Self::ExponentialDecay {
                decay_rate,
                decay_steps,
                ..
            } if !(decay_rate > 0.0 && decay_steps > 0) => Err(format!(
                "exponential_decay needs decay_rate > 0 and decay_steps > 0, got {decay_rate} and {decay_steps}"
            )),
            Self::CosineWarmRestarts {
                period,
                period_mult,
                ..
            } if period == 0 || period_mult < 1.0 => Err(format!(
                "cosine_warm_restarts needs period > 0 and period_mult >= 1, got {period} and {period_mult}"
            )),
            Self::ReduceOnPlateau { factor, .. } if !(factor > 0.0 && factor < 1.0) => Err(
                format!("reduce_on_plateau needs 0 < factor < 1, got {factor}"),
            ),
            _ => Ok(()),
        }
    }

    /// The rate at `step` (0-based) for base rate `base`.
    pub fn rate(&self, base: f64, step: u64, state: &ScheduleState) -> f64 {
        match *self {
            Self::Constant => base,
            Self::ExponentialDecay {
                decay_rate,
                decay_steps,
                staircase,
            } => {
                let p = step as f64 / decay_steps as f64;
                base * decay_rate.powf(if staircase { p.floor() } else { p })
            }
            Self::CosineWarmRestarts {
                period,
                period_mult,
                min_lr,
            } => {
                let (mut start, mut len) = (0f64, period as f64);
                while step as f64 >= start + len {
                    start += len;
                    len *= period_mult;
                }
                let t = (step as f64 - start) / len;
                min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Self::ReduceOnPlateau { min_lr, .. } => (base * state.factor).max(min_lr),
        }
    }

    /// Update the state with an epoch's validation NLL.
    pub fn on_epoch_end(&self, val_loss: f64, state: &mut ScheduleState) {
        if let Self::ReduceOnPlateau {
            factor,
            patience,
            threshold,
            ..
        } = *self
        {
            if val_loss < state.best - threshold {
                state.best = val_loss;
                state.bad_epochs = 0;
            } else {
                state.bad_epochs += 1;
                if state.bad_epochs > patience {
                    state.factor *= factor;
                    state.bad_epochs = 0;
                }
            }
        }
    }
}

/// JSON has no infinity: store "no value yet" (`f64::INFINITY`) as `null`.
pub(crate) mod infinity_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}
