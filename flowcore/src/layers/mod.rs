//! The invertible layers, one type per file, each with its spec. The registry in
//! [`crate::layer`] gathers them so that a flow is a plain list of layers that derives `Module`.

mod actnorm;
mod autoregressive;
mod chain;
mod coupling;
mod factor_out;
mod ffjord;
mod invconv;
mod logit;
mod lu;
mod lu_linear;
mod permute;
mod site_spline;
mod squeeze;

pub use actnorm::{ActNorm, ActNormSpec};
pub use autoregressive::{Autoregressive, AutoregressiveSpec};
pub use chain::{ChainSpec, InvertSpec};
pub use coupling::{Coupling, CouplingSpec, Mask};
pub use factor_out::{FactorOut, FactorOutSpec};
pub use ffjord::{Ffjord, FfjordSpec, ProbeNoise, TraceEstimator};
pub use invconv::{InvConv1x1, InvConvSpec};
pub use logit::{Logit, LogitSpec};
pub use lu_linear::{LuLinear, LuLinearSpec};
pub use permute::{PermutationKind, Permute, PermuteSpec};
pub use site_spline::{SiteSpline, SiteSplineSpec};
pub use squeeze::{Squeeze, SqueezeSpec};

use serde::{Deserialize, Serialize};

/// The shape of one image, channels first. Image layers see it flattened in NCHW order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageShape {
    /// Channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// `channels x height x width`.
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }

    /// Number of values in one image.
    pub const fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Pixels per channel.
    pub const fn spatial(&self) -> usize {
        self.height * self.width
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}
