//! flowcore: normalizing flows and invertible neural networks on burn.
//!
//! Direction convention, everywhere: `forward` maps data `x` to latent `z`, `inverse` maps `z`
//! to `x`; both return the per-sample `log|det J|` of the map they compute.
//!
//! - [`Bijector`], [`Chain`], [`Invert`]: the abstraction and its combinators.
//! - [`layers`]: couplings, permutations, ActNorm, 1x1 convolution, squeeze, logit; and
//!   [`layer::FactorOut`] for multiscale flows.
//! - [`nets`]: the parameter networks, separate from the [`transform`]s they parametrise.
//! - [`arch`]: RealNVP-dense and Glow from config; [`Flow`]: base distribution + bijector.
//! - [`Partition`]: the named blocks on both sides of an invertible network; [`inn`]: the
//!   INN objective on it (Ardizzone et al.) and the conditional (cINN) alternative.
//! - [`checkpoint`]: safetensors with a JSON header, written atomically.

pub mod arch;
pub mod base;
mod bijector;
pub mod checkpoint;
pub mod classify;
mod error;
mod flow;
pub mod inn;
pub mod layer;
pub mod layers;
pub mod nets;
pub mod partition;
pub mod tensor_util;
pub mod testing;
pub mod tracking;
pub mod train;
pub mod transform;

pub use arch::{ArchitectureConfig, GlowConfig, RealNvpConfig};
pub use base::BaseConfig;
pub use bijector::{Bijector, Chain, Invert};
pub use error::{FlowError, Result};
pub use flow::{Flow, standard_normal};
pub use layer::{Layer, LayerSpec};
pub use partition::{Block, Partition, Role, Side};
