//! [`Layer`], the sum of all layer types, and [`LayerSpec`], its serializable description.
//!
//! A flow is built from specs and checkpoints store the spec's source (the architecture
//! config), so any flow that can be described can be saved and rebuilt.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layers::{
    ActNorm, Coupling, ImageShape, InvConv1x1, Logit, Mask, PermutationKind, Permute, Squeeze,
};
use crate::nets::NetSpec;
use crate::transform::Transform;
use crate::{Bijector, Chain, FlowError, Invert, Result};

/// Multiscale factor-out (RealNVP, Glow): the first `active` features go on through the inner
/// layers, the rest leave the flow here as latent features, unchanged.
#[derive(Module, Debug)]
pub struct FactorOut {
    inner: Chain<Layer>,
    #[module(skip)]
    active: usize,
    #[module(skip)]
    dim: usize,
}

impl FactorOut {
    fn split(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        (
            x.clone().narrow(1, 0, self.active),
            x.narrow(1, self.active, self.dim - self.active),
        )
    }
}

impl Bijector for FactorOut {
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let (a, rest) = self.split(x);
        let (z, ld) = self.inner.forward(a, cond);
        (Tensor::cat(vec![z, rest], 1), ld)
    }

    fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let (a, rest) = self.split(z);
        let (x, ld) = self.inner.inverse(a, cond);
        (Tensor::cat(vec![x, rest], 1), ld)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn initialize(self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Self, Tensor<2>) {
        let (a, rest) = self.split(x);
        let (inner, z) = self.inner.initialize(a, cond);
        let out = Tensor::cat(vec![z, rest], 1);
        (Self { inner, ..self }, out)
    }

    fn init_flags(&self, flags: &mut Vec<bool>) {
        self.inner.init_flags(flags);
    }

    fn set_init_flags(&mut self, flags: &mut dyn Iterator<Item = bool>) {
        self.inner.set_init_flags(flags);
    }
}

/// Every layer type of flowcore.
// Variants are unboxed because burn's `Module` derive has no impl for `Box`; a flow holds tens
// of layers, so the padding costs nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Layer {
    /// [`Coupling`].
    Coupling(Coupling),
    /// [`Permute`].
    Permute(Permute),
    /// [`ActNorm`].
    ActNorm(ActNorm),
    /// [`InvConv1x1`].
    InvConv(InvConv1x1),
    /// [`Squeeze`].
    Squeeze(Squeeze),
    /// [`Logit`].
    Logit(Logit),
    /// [`FactorOut`].
    FactorOut(FactorOut),
    /// A nested [`Chain`].
    Chain(Chain<Layer>),
    /// An inverted chain.
    Invert(Invert<Chain<Layer>>),
}

macro_rules! each_layer {
    ($self:expr, $l:ident => $body:expr) => {
        match $self {
            Layer::Coupling($l) => $body,
            Layer::Permute($l) => $body,
            Layer::ActNorm($l) => $body,
            Layer::InvConv($l) => $body,
            Layer::Squeeze($l) => $body,
            Layer::Logit($l) => $body,
            Layer::FactorOut($l) => $body,
            Layer::Chain($l) => $body,
            Layer::Invert($l) => $body,
        }
    };
}

macro_rules! each_layer_owned {
    ($self:expr, $l:ident => $body:expr, $wrap:ident => $rewrap:expr) => {
        match $self {
            Layer::Coupling($l) => {
                let ($wrap, z) = $body;
                (Layer::Coupling($rewrap), z)
            }
            Layer::Permute($l) => {
                let ($wrap, z) = $body;
                (Layer::Permute($rewrap), z)
            }
            Layer::ActNorm($l) => {
                let ($wrap, z) = $body;
                (Layer::ActNorm($rewrap), z)
            }
            Layer::InvConv($l) => {
                let ($wrap, z) = $body;
                (Layer::InvConv($rewrap), z)
            }
            Layer::Squeeze($l) => {
                let ($wrap, z) = $body;
                (Layer::Squeeze($rewrap), z)
            }
            Layer::Logit($l) => {
                let ($wrap, z) = $body;
                (Layer::Logit($rewrap), z)
            }
            Layer::FactorOut($l) => {
                let ($wrap, z) = $body;
                (Layer::FactorOut($rewrap), z)
            }
            Layer::Chain($l) => {
                let ($wrap, z) = $body;
                (Layer::Chain($rewrap), z)
            }
            Layer::Invert($l) => {
                let ($wrap, z) = $body;
                (Layer::Invert($rewrap), z)
            }
        }
    };
}

impl Bijector for Layer {
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        each_layer!(self, l => l.forward(x, cond))
    }

    fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        each_layer!(self, l => l.inverse(z, cond))
    }

    fn dim(&self) -> usize {
        each_layer!(self, l => l.dim())
    }

    fn initialize(self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Self, Tensor<2>) {
        each_layer_owned!(self, l => l.initialize(x, cond), done => done)
    }

    fn init_flags(&self, flags: &mut Vec<bool>) {
        each_layer!(self, l => l.init_flags(flags))
    }

    fn set_init_flags(&mut self, flags: &mut dyn Iterator<Item = bool>) {
        each_layer!(self, l => l.set_init_flags(flags))
    }
}

fn one() -> usize {
    1
}

/// A serializable description of a [`Layer`]; [`LayerSpec::build`] checks it and makes the
/// layer with fresh parameters (every coupling starting as the identity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// A coupling layer.
    Coupling {
        /// Which features condition, which are transformed.
        mask: Mask,
        /// The elementwise transform.
        #[serde(default)]
        transform: Transform,
        /// The parameter network.
        net: NetSpec,
        /// Size of the optional condition `c` (0: unconditional).
        #[serde(default)]
        cond_dim: usize,
    },
    /// A fixed permutation.
    Permute {
        /// Features.
        dim: usize,
        /// Reverse or random.
        #[serde(default)]
        permutation: PermutationKind,
        /// Seed of a random permutation.
        #[serde(default)]
        seed: u64,
    },
    /// ActNorm over `channels` channels of `spatial` values each.
    ActNorm {
        /// Channels (features, for dense data).
        channels: usize,
        /// Values per channel (1 for dense data).
        #[serde(default = "one")]
        spatial: usize,
    },
    /// Invertible 1x1 convolution, LU-parametrised.
    InvConv {
        /// Channels.
        channels: usize,
        /// Pixels per channel.
        spatial: usize,
        /// Seed of the fixed permutation `P`.
        #[serde(default)]
        seed: u64,
    },
    /// 2x2 space-to-depth of images of `shape`.
    Squeeze {
        /// Input shape.
        shape: ImageShape,
    },
    /// Logit preprocessing.
    Logit {
        /// Features.
        dim: usize,
        /// Squeeze into `(alpha, 1 - alpha)` first.
        alpha: f64,
    },
    /// Multiscale factor-out: `layers` act on the first `active` of `dim` features.
    FactorOut {
        /// Features in.
        dim: usize,
        /// Features that go on through `layers`.
        active: usize,
        /// The inner layers.
        layers: Vec<LayerSpec>,
    },
    /// Layers in sequence.
    Chain {
        /// The layers, data to latent.
        layers: Vec<LayerSpec>,
    },
    /// Layers in sequence, run backwards.
    Invert {
        /// The layers whose inverse this is.
        layers: Vec<LayerSpec>,
    },
}

impl LayerSpec {
    /// A short name for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Coupling { .. } => "coupling",
            Self::Permute { .. } => "permute",
            Self::ActNorm { .. } => "act_norm",
            Self::InvConv { .. } => "inv_conv",
            Self::Squeeze { .. } => "squeeze",
            Self::Logit { .. } => "logit",
            Self::FactorOut { .. } => "factor_out",
            Self::Chain { .. } => "chain",
            Self::Invert { .. } => "invert",
        }
    }

    /// Build the layer on `device`.
    pub fn build(&self, device: &Device) -> Result<Layer> {
        let layer = match self {
            Self::Coupling {
                mask,
                transform,
                net,
                cond_dim,
            } => Layer::Coupling(Coupling::new(
                mask.clone(),
                *transform,
                net,
                *cond_dim,
                device,
            )?),
            Self::Permute {
                dim,
                permutation,
                seed,
            } => {
                positive("permute dim", *dim)?;
                Layer::Permute(Permute::new(*dim, *permutation, *seed))
            }
            Self::ActNorm { channels, spatial } => {
                positive("act_norm channels", *channels)?;
                positive("act_norm spatial", *spatial)?;
                Layer::ActNorm(ActNorm::new(*channels, *spatial, device))
            }
            Self::InvConv {
                channels,
                spatial,
                seed,
            } => {
                positive("inv_conv channels", *channels)?;
                positive("inv_conv spatial", *spatial)?;
                Layer::InvConv(InvConv1x1::new(*channels, *spatial, *seed, device))
            }
            Self::Squeeze { shape } => Layer::Squeeze(Squeeze::new(*shape)?),
            Self::Logit { dim, alpha } => {
                positive("logit dim", *dim)?;
                Layer::Logit(Logit::new(*dim, *alpha)?)
            }
            Self::FactorOut {
                dim,
                active,
                layers,
            } => {
                if *active == 0 || active >= dim {
                    return Err(FlowError::config(format!(
                        "factor_out must keep between 1 and {} of its {dim} features active, got {active}",
                        dim.saturating_sub(1)
                    )));
                }
                let inner = build_chain(layers, device)?;
                if inner.dim() != *active {
                    return Err(FlowError::config(format!(
                        "factor_out keeps {active} features active but its inner layers map {}",
                        inner.dim()
                    )));
                }
                Layer::FactorOut(FactorOut {
                    inner,
                    active: *active,
                    dim: *dim,
                })
            }
            Self::Chain { layers } => Layer::Chain(build_chain(layers, device)?),
            Self::Invert { layers } => Layer::Invert(Invert {
                inner: build_chain(layers, device)?,
            }),
        };
        Ok(layer)
    }
}

fn positive(what: &str, value: usize) -> Result<()> {
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

fn strip(e: FlowError) -> String {
    match e {
        FlowError::Config(msg) => msg,
        other => other.to_string(),
    }
}
