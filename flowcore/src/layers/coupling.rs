//! Coupling layers (NICE, RealNVP, Glow): one part of the input passes unchanged and, through a
//! parameter network, sets the parameters of an elementwise transform of the other part.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::ImageShape;
use crate::layer::BuildLayer;
use crate::nets::{NetIo, NetSpec, ParamNet};
use crate::tensor_util::{cat_features, constant, indices, row_sum, zero_logdet};
use crate::transform::Transform;
use crate::{Bijector, DataInit, FlowError, Result};

/// Which features condition and which are transformed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mask {
    /// Dense vectors of any `dim >= 2`, odd included: the first `dim / 2` features condition and
    /// the other `dim - dim / 2` are transformed; `flip` swaps the roles.
    Half {
        /// Features.
        dim: usize,
        /// Transform the first part instead.
        #[serde(default)]
        flip: bool,
    },
    /// Images: the first `channels / 2` channels condition the rest; `flip` swaps the roles.
    Channel {
        /// Image shape.
        shape: ImageShape,
        /// Transform the first channels instead.
        #[serde(default)]
        flip: bool,
    },
    /// Dense vectors: the listed features are transformed and every other one conditions, for
    /// vectors whose blocks mean different things (an INN's parameter and observation sides).
    Features {
        /// Features.
        dim: usize,
        /// The transformed features, in any order; at least one, and not all.
        transformed: Vec<usize>,
    },
    /// Images: pixels with even `row + column` condition the odd ones; `flip` swaps them.
    Checkerboard {
        /// Image shape.
        shape: ImageShape,
        /// Transform the even pixels instead.
        #[serde(default)]
        flip: bool,
    },
}

impl Mask {
    /// Number of features the mask covers.
    pub fn dim(&self) -> usize {
        match self {
            Self::Half { dim, .. } | Self::Features { dim, .. } => *dim,
            Self::Channel { shape, .. } | Self::Checkerboard { shape, .. } => shape.numel(),
        }
    }
}

/// Where the two parts lie in the flattened input.
#[derive(Clone, Debug)]
enum Layout {
    /// Two contiguous ranges `(start, len)`: half and channel masks.
    Split {
        cond: (usize, usize),
        active: (usize, usize),
    },
    /// A 0/1 pattern over all features, 1 where a feature conditions.
    Pattern(Vec<f32>),
    /// Features picked by index: those that condition, those transformed, and the order that
    /// puts `[conditioning | transformed]` back in place.
    Indices {
        cond: Vec<usize>,
        active: Vec<usize>,
        restore: Vec<usize>,
    },
}

/// A coupling layer: one part of the input, through `net`, sets the parameters of `transform`
/// on the other part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouplingSpec {
    /// Which features condition, which are transformed.
    pub mask: Mask,
    /// The elementwise transform.
    #[serde(default)]
    pub transform: Transform,
    /// The parameter network.
    pub net: NetSpec,
    /// Size of the optional condition `c` (0: unconditional).
    #[serde(default)]
    pub cond_dim: usize,
    /// Make the layer commute with `x -> -x` (Z2 equivariance, for the phi -> -phi symmetry
    /// of a field theory): the network sees `x` and `-x`, its shift is made odd and its scale
    /// even. Affine and additive transforms only. Written only when set, so the configs of
    /// checkpoints from before it read and write back unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub z2: bool,
}

impl BuildLayer for CouplingSpec {
    type Layer = Coupling;

    fn build(&self, device: &Device) -> Result<Coupling> {
        if self.z2 && matches!(self.transform, Transform::RationalQuadratic(_)) {
            return Err(FlowError::config(
                "z2 = true needs an affine or additive transform: a spline's parameters have no \
                 parity that makes it odd",
            ));
        }
        let mut layer = Coupling::new(
            self.mask.clone(),
            self.transform,
            &self.net,
            self.cond_dim,
            device,
        )?;
        layer.z2 = self.z2;
        Ok(layer)
    }

    fn cond_dim(&self) -> usize {
        self.cond_dim
    }
}

/// A coupling layer: `z_active = T(x_active; net(x_cond, c))`, `z_cond = x_cond`.
#[derive(Module, Debug)]
pub struct Coupling {
    net: ParamNet,
    #[module(skip)]
    mask: Mask,
    #[module(skip)]
    transform: Transform,
    #[module(skip)]
    layout: Layout,
    #[module(skip)]
    z2: bool,
}

impl Coupling {
    /// A coupling whose network (built from `net`) starts at zero, so the layer starts as the
    /// identity. `cond_dim` is the size of the optional condition (0 for none).
    pub fn new(
        mask: Mask,
        transform: Transform,
        net: &NetSpec,
        cond_dim: usize,
        device: &Device,
    ) -> Result<Self> {
        transform.validate()?;
        let k = transform.num_params();
        let (layout, io) = match &mask {
            Mask::Half { dim, flip } => {
                if *dim < 2 {
                    return Err(FlowError::config(format!(
                        "a half-mask coupling needs at least 2 features, got {dim}"
                    )));
                }
                let a = dim / 2;
                let (cond, active) = if *flip {
                    ((a, dim - a), (0, a))
                } else {
                    ((0, a), (a, dim - a))
                };
                let io = NetIo::Dense {
                    inputs: cond.1,
                    outputs: k * active.1,
                };
                (Layout::Split { cond, active }, io)
            }
            Mask::Channel { shape, flip } => {
                if shape.channels < 2 || shape.spatial() == 0 {
                    return Err(FlowError::config(format!(
                        "a channel-mask coupling needs at least 2 channels, got an image of {shape}"
                    )));
                }
                let s = shape.spatial();
                let a = shape.channels / 2;
                let rest = shape.channels - a;
                let (cond_ch, active_ch) = if *flip {
                    ((a, rest), (0, a))
                } else {
                    ((0, a), (a, rest))
                };
                let io = NetIo::Image {
                    in_channels: cond_ch.1,
                    out_channels: k * active_ch.1,
                    height: shape.height,
                    width: shape.width,
                };
                let layout = Layout::Split {
                    cond: (cond_ch.0 * s, cond_ch.1 * s),
                    active: (active_ch.0 * s, active_ch.1 * s),
                };
                (layout, io)
            }
            Mask::Features { dim, transformed } => {
                let active = sorted_features(*dim, transformed)?;
                let cond: Vec<usize> = (0..*dim)
                    .filter(|i| active.binary_search(i).is_err())
                    .collect();
                let io = NetIo::Dense {
                    inputs: cond.len(),
                    outputs: k * active.len(),
                };
                let mut restore = vec![0; *dim];
                for (position, &feature) in cond.iter().chain(&active).enumerate() {
                    restore[feature] = position;
                }
                (
                    Layout::Indices {
                        cond,
                        active,
                        restore,
                    },
                    io,
                )
            }
            Mask::Checkerboard { shape, flip } => {
                if shape.spatial() < 2 || shape.channels == 0 {
                    return Err(FlowError::config(format!(
                        "a checkerboard coupling needs at least 2 pixels, got an image of {shape}"
                    )));
                }
                let mut pattern = Vec::with_capacity(shape.numel());
                for _ in 0..shape.channels {
                    for h in 0..shape.height {
                        for w in 0..shape.width {
                            let even = (h + w) % 2 == 0;
                            pattern.push(if even != *flip { 1.0 } else { 0.0 });
                        }
                    }
                }
                let io = NetIo::Image {
                    in_channels: shape.channels,
                    out_channels: k * shape.channels,
                    height: shape.height,
                    width: shape.width,
                };
                (Layout::Pattern(pattern), io)
            }
        };
        let net = net.build(io, cond_dim, device)?;
        Ok(Self {
            net,
            mask,
            transform,
            layout,
            z2: false,
        })
    }

    /// The network's raw parameters for conditioning input `x`; with `z2`, the first of the
    /// transform's parameters (the shift) odd in `x` and the others (the scale) even, from one
    /// pass over `x` and `-x` stacked.
    fn predict(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        if !self.z2 {
            return self.net.forward(x, cond);
        }
        let [batch, _] = x.dims();
        let both = Tensor::cat(vec![x.clone(), x.neg()], 0);
        let cond = cond.map(|c| Tensor::cat(vec![c.clone(), c.clone()], 0));
        let h = self.net.forward(both, cond.as_ref());
        let width = h.dims()[1];
        let (plus, minus) = (h.clone().narrow(0, 0, batch), h.narrow(0, batch, batch));
        let k = self.transform.num_params();
        let shift = width / k;
        let odd = (plus.clone() - minus.clone())
            .mul_scalar(0.5)
            .narrow(1, 0, shift);
        if k == 1 {
            return odd;
        }
        let even = (plus + minus)
            .mul_scalar(0.5)
            .narrow(1, shift, width - shift);
        Tensor::cat(vec![odd, even], 1)
    }

    fn run(
        &self,
        input: Tensor<2>,
        cond: Option<&Tensor<2>>,
        inverse: bool,
    ) -> (Tensor<2>, Tensor<1>) {
        let k = self.transform.num_params();
        let apply = |t: Tensor<2>, params: Tensor<2>| {
            // The network's `[batch, k * d]` holds parameter j of every feature in block j.
            let [batch, d] = t.dims();
            let params = params.reshape([batch, k, d]);
            if inverse {
                self.transform.inverse(t, params)
            } else {
                self.transform.forward(t, params)
            }
        };
        match &self.layout {
            Layout::Split { cond: c, active: a } => {
                let x_cond = input.clone().narrow(1, c.0, c.1);
                let x_active = input.narrow(1, a.0, a.1);
                let params = self.predict(x_cond.clone(), cond);
                let (out, ld) = apply(x_active, params);
                let logdet = match ld {
                    Some(ld) => row_sum(ld),
                    None => zero_logdet(&out),
                };
                let parts = if c.0 < a.0 {
                    vec![x_cond, out]
                } else {
                    vec![out, x_cond]
                };
                (cat_features(parts), logdet)
            }
            Layout::Indices {
                cond: c,
                active: a,
                restore,
            } => {
                let pick = |i: &[usize]| input.clone().select(1, indices(i, &input));
                let x_cond = pick(c);
                let params = self.predict(x_cond.clone(), cond);
                let (out, ld) = apply(pick(a), params);
                let logdet = match ld {
                    Some(ld) => row_sum(ld),
                    None => zero_logdet(&out),
                };
                let joined = Tensor::cat(vec![x_cond, out], 1);
                let order = indices(restore, &joined);
                (joined.select(1, order), logdet)
            }
            Layout::Pattern(pattern) => {
                let d = pattern.len();
                let keep = constant(pattern.clone(), [1, d], &input);
                let free = keep.clone().neg().add_scalar(1.0);
                // Zero parameters, the identity, wherever a feature conditions.
                let free_params = free.clone().repeat_dim(1, k);
                let params = self.predict(input.clone() * keep.clone(), cond) * free_params;
                let (out, ld) = apply(input.clone(), params);
                // Conditioning features are copied, not recomputed, so the map inverts exactly.
                let out = input * keep + out * free.clone();
                let logdet = match ld {
                    Some(ld) => row_sum(ld * free),
                    None => zero_logdet(&out),
                };
                (out, logdet)
            }
        }
    }

    /// The mask of this coupling.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }
}

/// The transformed features of a [`Mask::Features`], sorted, after checking that they are
/// distinct features of `dim` and leave at least one to condition.
fn sorted_features(dim: usize, transformed: &[usize]) -> Result<Vec<usize>> {
    let mut active = transformed.to_vec();
    active.sort_unstable();
    active.dedup();
    if active.len() != transformed.len() {
        return Err(FlowError::config(format!(
            "a features-mask coupling lists a feature twice: {transformed:?}"
        )));
    }
    if let Some(&out) = active.iter().find(|&&i| i >= dim) {
        return Err(FlowError::config(format!(
            "a features-mask coupling of {dim} features transforms feature {out}"
        )));
    }
    if active.is_empty() || active.len() == dim {
        return Err(FlowError::config(format!(
            "a features-mask coupling must transform at least one of its {dim} features and \
             leave at least one to condition, got {} transformed",
            active.len()
        )));
    }
    Ok(active)
}

impl Bijector for Coupling {
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.run(x, cond, false)
    }

    fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.run(z, cond, true)
    }

    fn dim(&self) -> usize {
        self.mask.dim()
    }
}

impl DataInit for Coupling {}
