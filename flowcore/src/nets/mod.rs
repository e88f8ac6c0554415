//! Parameter networks: they predict the parameters of a transform from the conditioning part
//! of the input (and an optional condition `c`), and know nothing of the transform itself. One
//! network type per file, each with its spec; the registry below gathers them.
//!
//! The last layer of every network starts at zero, so a new coupling predicts zero raw
//! parameters and, by the convention of [`crate::transform`], starts as the identity.

mod activation;
mod dense;
mod glow_conv;
mod made;
mod mlp;
mod narrow;
mod ode_conv;
mod ode_net;
mod periodic_conv;
mod product;
mod res_mlp;
mod tanh;
pub(crate) use tanh::{rational as rational_tanh, tanh};

use burn::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use activation::Activation;
pub use glow_conv::{ConvSpec, GlowConvNet};
pub use made::{Made, MadeSpec, hidden_degrees};
pub use mlp::{Mlp, MlpSpec};
pub use ode_conv::{OdeConvNet, TimeConv};
pub use ode_net::{Dynamics, OdeActivation, OdeNet, OdeNetSpec, TimeInput, TimeLinear};
pub use periodic_conv::{PeriodicConvNet, PeriodicConvSpec};
pub use res_mlp::{ResBlock, ResMlp, ResMlpSpec};

use crate::{FlowError, Result};

/// What a network maps: dense features, or image channels at a fixed spatial size. Flattened
/// images are in NCHW order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetIo {
    /// `[batch, inputs]` to `[batch, outputs]`.
    Dense {
        /// Input features (the conditioning part of the coupling).
        inputs: usize,
        /// Output features.
        outputs: usize,
    },
    /// `[batch, in_channels * height * width]` to `[batch, out_channels * height * width]`.
    Image {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
}

impl NetIo {
    /// `(inputs, outputs)` of a dense network; an error for images.
    fn dense(self) -> Result<(usize, usize)> {
        match self {
            Self::Dense { inputs, outputs } => Ok((inputs, outputs)),
            Self::Image { .. } => Err(FlowError::config(
                "an image mask needs a conv network (kind = \"conv\"), not an MLP",
            )),
        }
    }
}

impl NetIo {
    /// `(in_channels, out_channels, height, width)` of an image network; an error naming
    /// `net` for dense sizes.
    fn image(self, net: &str) -> Result<(usize, usize, usize, usize)> {
        match self {
            Self::Image {
                in_channels,
                out_channels,
                height,
                width,
            } => Ok((in_channels, out_channels, height, width)),
            Self::Dense { .. } => Err(FlowError::config(format!(
                "a {net} network needs an image mask (channel or checkerboard), not a dense one"
            ))),
        }
    }
}

/// What the spec of one network type does: build the network for the sizes of its layer.
pub trait BuildNet:
    Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned + Into<NetSpec>
{
    /// The network it builds.
    type Net: Conditioner;

    /// Build the network for `io`; `cond_dim` extra inputs carry the condition.
    fn build(&self, io: NetIo, cond_dim: usize, device: &Device) -> Result<Self::Net>;
}

/// A parameter network: raw parameters from the flattened conditioning input.
pub trait Conditioner {
    /// Predict raw parameters from the flattened conditioning input `x` and the optional
    /// condition `cond` (`[batch, cond_dim]`).
    fn predict(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2>;
}

/// Generates [`ParamNet`], [`NetSpec`] and their dispatch from `Variant(Spec => Net) = "kind"`
/// lines; as for layers, the kind and the variant name are part of configs and checkpoints.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($spec:ty => $net:ty) = $kind:literal,)*) => {
        /// Any parameter network.
        // Unboxed for the same reason as `Layer`: `Module` has no impl for `Box`.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum ParamNet {
            $($(#[$doc])* $variant($net),)*
        }

        /// Serializable description of a parameter network, tagged by its `kind`; the input
        /// and output sizes come from the layer that owns it.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum NetSpec {
            $($(#[$doc])* #[serde(rename = $kind)] $variant($spec),)*
        }

        impl NetSpec {
            /// Build the network for the given sizes; `cond_dim` extra inputs carry the
            /// condition.
            pub fn build(&self, io: NetIo, cond_dim: usize, device: &Device) -> Result<ParamNet> {
                Ok(match self {
                    $(Self::$variant(spec) => ParamNet::$variant(spec.build(io, cond_dim, device)?),)*
                })
            }
        }

        $(impl From<$spec> for NetSpec {
            fn from(spec: $spec) -> Self {
                Self::$variant(spec)
            }
        })*

        impl ParamNet {
            /// Predict raw parameters from the flattened conditioning input `x` and the
            /// optional condition `cond` (`[batch, cond_dim]`).
            pub fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
                match self {
                    $(Self::$variant(net) => net.predict(x, cond),)*
                }
            }
        }
    };
}

registry! {
    /// A fully connected network ([`Mlp`]).
    Mlp(MlpSpec => Mlp) = "mlp",
    /// A residual MLP ([`ResMlp`]).
    ResMlp(ResMlpSpec => ResMlp) = "res_mlp",
    /// Glow's convolutional network ([`GlowConvNet`]).
    Conv(ConvSpec => GlowConvNet) = "conv",
    /// Convolutions with periodic padding, for lattices ([`PeriodicConvNet`]).
    PeriodicConv(PeriodicConvSpec => PeriodicConvNet) = "periodic_conv",
}

/// `x` with the condition appended as features.
fn append_cond(x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
    match cond {
        Some(c) => Tensor::cat(vec![x, c.clone()], 1),
        None => x,
    }
}
