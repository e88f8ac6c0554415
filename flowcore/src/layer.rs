//! The layer registry: [`Layer`], the sum of all layer types, and [`LayerSpec`], its
//! serializable description, both generated from one list.
//!
//! A layer type is one file of [`crate::layers`] that owns its spec (a struct implementing
//! [`BuildLayer`]), its layer (implementing [`Bijector`] and [`DataInit`]) and the checks of its
//! values. Adding one is that file (declared and re-exported in `layers/mod.rs`), one line in
//! the `registry!` list below and one case in the harness (`flowcore/tests/harness/`). A flow
//! is built from specs and checkpoints store the specs' source (the architecture config), so
//! any flow that can be described can be saved and rebuilt.

use burn::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// Every layer type and its spec, for the registry.
use crate::layers::*;
use crate::{Bijector, Chain, DataInit, FlowError, Invert, Result};

/// What the spec of one layer type does: check its values and build the layer.
pub trait BuildLayer:
    Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned + Into<LayerSpec>
{
    /// The layer it builds.
    type Layer: Bijector + DataInit;

    /// Check the spec and make the layer with fresh parameters (every coupling starting as the
    /// identity).
    fn build(&self, device: &Device) -> Result<Self::Layer>;

    /// Size of the condition the layer takes (0: none).
    fn cond_dim(&self) -> usize {
        0
    }
}

/// Generates [`Layer`], [`LayerSpec`] and their dispatch from `Variant(Spec => Layer) = "kind"`
/// lines: the kind is the `kind` key of configs and checkpoints, the variant name is part of
/// every parameter's path in checkpoints. Neither may change for a registered layer.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($spec:ty => $layer:ty) = $kind:literal,)*) => {
        /// Every layer type of flowcore.
        // Variants are unboxed because burn's `Module` derive has no impl for `Box`; a flow
        // holds tens of layers, so the padding costs nothing that matters.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum Layer {
            $($(#[$doc])* $variant($layer),)*
        }

        /// A serializable description of a [`Layer`], tagged by its `kind`.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum LayerSpec {
            $($(#[$doc])* #[serde(rename = $kind)] $variant($spec),)*
        }

        impl LayerSpec {
            /// The kind, as written in configs, for error messages.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $kind,)*
                }
            }

            /// Build the layer on `device`.
            pub fn build(&self, device: &Device) -> Result<Layer> {
                Ok(match self {
                    $(Self::$variant(spec) => Layer::$variant(spec.build(device)?),)*
                })
            }

            /// Size of the condition the layer takes (0: none).
            pub fn cond_dim(&self) -> usize {
                match self {
                    $(Self::$variant(spec) => spec.cond_dim(),)*
                }
            }
        }

        $(impl From<$spec> for LayerSpec {
            fn from(spec: $spec) -> Self {
                Self::$variant(spec)
            }
        })*

        impl Bijector for Layer {
            fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
                match self {
                    $(Self::$variant(l) => l.forward(x, cond),)*
                }
            }

            fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
                match self {
                    $(Self::$variant(l) => l.inverse(z, cond),)*
                }
            }

            fn inverse_without_logdet(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
                match self {
                    $(Self::$variant(l) => l.inverse_without_logdet(z, cond),)*
                }
            }

            fn dim(&self) -> usize {
                match self {
                    $(Self::$variant(l) => l.dim(),)*
                }
            }
        }

        impl DataInit for Layer {
            fn initialize(self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Self, Tensor<2>) {
                match self {
                    $(Self::$variant(l) => {
                        let (l, z) = l.initialize(x, cond);
                        (Self::$variant(l), z)
                    })*
                }
            }

            fn init_flags(&self, flags: &mut Vec<bool>) {
                match self {
                    $(Self::$variant(l) => l.init_flags(flags),)*
                }
            }

            fn set_init_flags(&mut self, flags: &mut dyn Iterator<Item = bool>) {
                match self {
                    $(Self::$variant(l) => l.set_init_flags(flags),)*
                }
            }
        }
    };
}

registry! {
    /// A coupling layer ([`Coupling`]).
    Coupling(CouplingSpec => Coupling) = "coupling",
    /// A fixed permutation ([`Permute`]).
    Permute(PermuteSpec => Permute) = "permute",
    /// ActNorm ([`ActNorm`]).
    ActNorm(ActNormSpec => ActNorm) = "act_norm",
    /// An invertible 1x1 convolution ([`InvConv1x1`]).
    InvConv(InvConvSpec => InvConv1x1) = "inv_conv",
    /// 2x2 space-to-depth ([`Squeeze`]).
    Squeeze(SqueezeSpec => Squeeze) = "squeeze",
    /// Logit preprocessing ([`Logit`]).
    Logit(LogitSpec => Logit) = "logit",
    /// An LU-parametrised linear map with a bias ([`LuLinear`]).
    LuLinear(LuLinearSpec => LuLinear) = "lu_linear",
    /// A masked autoregressive layer ([`Autoregressive`]).
    Autoregressive(AutoregressiveSpec => Autoregressive) = "autoregressive",
    /// Multiscale factor-out ([`FactorOut`]).
    FactorOut(FactorOutSpec => FactorOut) = "factor_out",
    /// A per-value spline on the real line ([`SiteSpline`]).
    SiteSpline(SiteSplineSpec => SiteSpline) = "site_spline",
    /// A continuous flow ([`Ffjord`]).
    Ffjord(FfjordSpec => Ffjord) = "ffjord",
    /// Layers in sequence.
    Chain(ChainSpec => Chain<Layer>) = "chain",
    /// Layers in sequence, run backwards.
    Invert(InvertSpec => Invert<Chain<Layer>>) = "invert",
}

/// An error unless `value` is positive; `what` names the key.
pub(crate) fn positive(what: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(FlowError::config(format!("{what} must be positive")));
    }
    Ok(())
}

/// Build a chain, checking that every layer maps the same number of features.
pub fn build_chain(specs: &[LayerSpec], device: &Device) -> Result<Chain<Layer>> {
    if specs.is_empty() {
        return Err(FlowError::config("a chain needs at least one layer"));
    }
    let mut layers: Vec<Layer> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let layer = spec
            .build(device)
            .map_err(|e| FlowError::config(format!("layer {i} ({}): {}", spec.name(), strip(e))))?;
        if let Some(first) = layers.first()
            && first.dim() != layer.dim()
        {
            return Err(FlowError::config(format!(
                "layer {i} ({}) maps {} features but layer 0 ({}) maps {}",
                spec.name(),
                layer.dim(),
                specs[0].name(),
                first.dim()
            )));
        }
        layers.push(layer);
    }
    Ok(Chain::new(layers))
}

/// The largest condition any of `specs` takes.
pub fn specs_cond_dim(specs: &[LayerSpec]) -> usize {
    specs.iter().map(LayerSpec::cond_dim).max().unwrap_or(0)
}

fn strip(e: FlowError) -> String {
    match e {
        FlowError::Config(msg) => msg,
        other => other.to_string(),
    }
}
