//! flowcore: normalizing flows and invertible neural networks on burn.
//!
//! Direction convention, everywhere: `forward` maps data `x` to latent `z`, `inverse` maps `z`
//! to `x`; both return the per-sample `log|det J|` of the map they compute.
//!
//! - [`Bijector`], [`Chain`], [`Invert`]: the abstraction and its combinators.
//! - [`layers`]: couplings, permutations, ActNorm, 1x1 convolution, squeeze, logit,
//!   multiscale factor-out, one file each; [`layer`]: the registry that gathers them.
//! - [`nets`]: the parameter networks, separate from the [`transform`]s they parametrise.
//! - [`arch`]: RealNVP-dense and Glow from config; [`Flow`]: base distribution + bijector.
//! - [`Partition`]: the named blocks on both sides of an invertible network; [`inn`]: the
//!   INN objective on it (Ardizzone et al.) and the conditional (cINN) alternative.
//! - [`checkpoint`]: safetensors with a JSON header, written atomically ([`io`]).
//! - [`train`]: the training engine.
//! - [`lattice`]: the phi^4 action and the reverse-KL objective of flows trained without data.
//!
//! Run tracking (MLflow) is the crate `flowtrack`, beside this one.

pub mod arch;
pub mod base;
mod bijector;
pub mod checkpoint;
pub mod classify;
pub mod conv;
mod error;
mod flex;
mod flow;
pub mod inn;
pub mod io;
pub mod lattice;
pub mod layer;
pub mod layers;
pub mod nets;
pub mod ode;
pub mod partition;
pub mod penalty;
mod simd;
pub mod tensor_util;
pub mod testing;
pub mod threads;
pub mod train;
pub mod transform;

pub use arch::{ArchitectureConfig, DataShape, GlowConfig, LayerList, RealNvpConfig};
pub use base::BaseConfig;
pub use bijector::{Bijector, Chain, DataInit, Invert};
pub use error::{FlowError, Result};
pub use flow::{Flow, standard_normal};
pub use layer::{Layer, LayerSpec};
pub use partition::{Block, Partition, Role, Side};
