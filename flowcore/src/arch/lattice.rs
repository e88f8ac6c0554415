//! Flows for fields on a periodic lattice (Albergo, Kanshin, Shanahan 2019): checkerboard
//! couplings whose networks are convolutions with periodic padding, and a per-site spline at the
//! data end. Optionally Z2-equivariant, for the `phi -> -phi` symmetry of the phi^4 theory.

use serde::{Deserialize, Serialize};

use super::{Architecture, DataShape};
use crate::layer::LayerSpec;
use crate::layers::{CouplingSpec, ImageShape, Mask, SiteSplineSpec};
use crate::nets::{Activation, NetSpec, PeriodicConvSpec};
use crate::transform::Transform;
use crate::{FlowError, Result};

fn eight() -> usize {
    8
}
fn hidden() -> Vec<usize> {
    vec![8, 8]
}
fn three() -> usize {
    3
}
fn tanh() -> Activation {
    Activation::Tanh
}

/// A flow for fields on a periodic lattice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatticeFlowConfig {
    /// The lattice shape, e.g. `[8, 8]` (empty: from the data).
    #[serde(default)]
    pub lattice: Vec<usize>,
    /// Checkerboard couplings, alternating which sites they transform (1-D and 2-D lattices).
    #[serde(default = "eight")]
    pub couplings: usize,
    /// The couplings' transform.
    #[serde(default)]
    pub transform: Transform,
    /// Hidden channels of each coupling's periodic convolutions.
    #[serde(default = "hidden")]
    pub hidden_channels: Vec<usize>,
    /// Odd kernel size of the convolutions.
    #[serde(default = "three")]
    pub kernel_size: usize,
    /// Their nonlinearity.
    #[serde(default = "tanh")]
    pub activation: Activation,
    /// Z2-equivariant couplings (affine or additive) and spline.
    #[serde(default)]
    pub z2: bool,
    /// The per-site spline at the data end (absent: none); its `dim` comes from the lattice.
    #[serde(default)]
    pub site_spline: Option<SiteSplineSpec>,
}

impl LatticeFlowConfig {
    /// The lattice as the image the couplings see: `1 x 1 x L` or `1 x H x W`, axes of length
    /// one dropped; `None` for a single site.
    fn image(&self) -> Result<Option<ImageShape>> {
        let long: Vec<usize> = self.lattice.iter().copied().filter(|&l| l > 1).collect();
        match long.as_slice() {
            [] => Ok(None),
            [l] => Ok(Some(ImageShape::new(1, 1, *l))),
            [h, w] => Ok(Some(ImageShape::new(1, *h, *w))),
            _ => Err(FlowError::config(format!(
                "checkerboard couplings are built for 1-D and 2-D lattices, not the {}-D lattice \
                 {:?}; use couplings = 0 with a site_spline",
                long.len(),
                self.lattice
            ))),
        }
    }
}

impl Architecture for LatticeFlowConfig {
    fn to_specs(&self) -> Result<Vec<LayerSpec>> {
        let sites: usize = self.lattice.iter().product();
        if self.lattice.is_empty() || sites == 0 {
            return Err(FlowError::config(format!(
                "lattice must be a shape of positive lengths, got {:?}",
                self.lattice
            )));
        }
        let mut specs = Vec::new();
        if let Some(s) = &self.site_spline {
            if self.z2 && !s.symmetric {
                return Err(FlowError::config(
                    "z2 = true needs site_spline.symmetric = true",
                ));
            }
            specs.push(LayerSpec::SiteSpline(SiteSplineSpec {
                dim: sites,
                ..s.clone()
            }));
        }
        if self.couplings > 0 {
            let Some(shape) = self.image()? else {
                return Err(FlowError::config(
                    "a single site has no checkerboard: use couplings = 0 with a site_spline",
                ));
            };
            let net = NetSpec::PeriodicConv(PeriodicConvSpec {
                hidden_channels: self.hidden_channels.clone(),
                kernel_size: self.kernel_size,
                activation: self.activation,
                output_bias: !self.z2,
            });
            for i in 0..self.couplings {
                specs.push(LayerSpec::Coupling(CouplingSpec {
                    mask: Mask::Checkerboard {
                        shape,
                        flip: i % 2 == 1,
                    },
                    transform: self.transform,
                    net: net.clone(),
                    cond_dim: 0,
                    z2: self.z2,
                }));
            }
        }
        if specs.is_empty() {
            return Err(FlowError::config(
                "a lattice flow needs couplings or a site_spline",
            ));
        }
        Ok(specs)
    }

    fn with_data_shape(mut self, shape: &DataShape) -> Self {
        if self.lattice.is_empty() {
            self.lattice = match shape.image {
                Some(i) if i.height == 1 => vec![i.width],
                Some(i) => vec![i.height, i.width],
                None => vec![shape.features],
            };
        }
        self
    }

    fn cond_dim(&self) -> usize {
        0
    }
}
