//! Architectures from config, one kind per file, gathered by the registry below: the two of the
//! original `flow_models` (RealNVP on dense vectors and Glow on images, in the layouts of
//! TensorFlow Probability's bijectors, whose key names are accepted as aliases), neural spline
//! flows (`nsf`), masked autoregressive flows (`maf`, `nsf_autoregressive`, and IAF as their
//! inverse), lattice flows (`lattice`), continuous flows (`ffjord`) and a free list of layers. An application gives an architecture the shape of its data with
//! [`ArchitectureConfig::with_data_shape`], as burn's layers take theirs with
//! `with_num_features`.

mod ffjord;
mod glow;
mod lattice;
mod layer_list;
mod maf;
mod nsf;
mod real_nvp;

use serde::{Deserialize, Serialize};

pub use ffjord::{FfjordConfig, OdeNetwork};
pub use glow::{GlowConfig, ImageMask};
pub use lattice::LatticeFlowConfig;
pub use layer_list::LayerList;
pub use maf::{MafConfig, NsfAutoregressiveConfig};
pub use nsf::{NsfConfig, NsfMixing};
pub use real_nvp::{DenseNet, Mixing, RealNvpConfig, ResidualOptions};

use crate::Result;
use crate::layer::LayerSpec;
use crate::layers::ImageShape;

/// The shape of the data a flow is for: features per sample, their image shape when they are
/// images, and the size of the condition that comes with each sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataShape {
    /// Features per sample (an image's `channels * height * width`).
    pub features: usize,
    /// The image shape, when the features are an image.
    pub image: Option<ImageShape>,
    /// Values of the condition per sample (0: none).
    pub cond_dim: usize,
}

impl DataShape {
    /// Dense vectors of `features` values.
    pub const fn features(features: usize) -> Self {
        Self {
            features,
            image: None,
            cond_dim: 0,
        }
    }

    /// Images of `shape`.
    pub const fn image(shape: ImageShape) -> Self {
        Self {
            features: shape.numel(),
            image: Some(shape),
            cond_dim: 0,
        }
    }

    /// The same data with a condition of `cond_dim` values per sample.
    pub const fn with_cond_dim(self, cond_dim: usize) -> Self {
        Self { cond_dim, ..self }
    }

    /// Fill the image sizes that a config leaves to the data (0), when the data are images.
    fn fill_image(&self, channels: &mut usize, height: &mut usize, width: &mut usize) {
        if let Some(image) = self.image {
            for (field, value) in [
                (channels, image.channels),
                (height, image.height),
                (width, image.width),
            ] {
                if *field == 0 {
                    *field = value;
                }
            }
        }
    }

    /// Fill the sizes of a dense architecture that its config leaves to the data (0).
    fn fill_dense(&self, dim: &mut usize, cond_dim: &mut usize) {
        if *dim == 0 {
            *dim = self.features;
        }
        if *cond_dim == 0 {
            *cond_dim = self.cond_dim;
        }
    }
}

/// The default depth of the spline and autoregressive flows (zuko's and nflows' examples').
fn five_layers() -> usize {
    5
}

/// The default conditioner of the spline and autoregressive flows.
fn two_hidden_of_128() -> Vec<usize> {
    vec![128, 128]
}

/// What the config of one architecture kind does.
pub trait Architecture:
    Clone + std::fmt::Debug + PartialEq + Serialize + Into<ArchitectureConfig>
{
    /// The layers it consists of, after checking the config.
    fn to_specs(&self) -> Result<Vec<LayerSpec>>;

    /// The config with what it leaves to the data (sizes given as 0 or absent) taken from
    /// `shape`; what the config gives stays, so that a mismatch is reported when the flow meets
    /// the data.
    fn with_data_shape(self, shape: &DataShape) -> Self;

    /// Size of the condition the flow takes (0: none).
    fn cond_dim(&self) -> usize;
}

/// Generates [`ArchitectureConfig`] and its dispatch from `Variant(Config) = "kind"` lines.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($config:ty) = $kind:literal,)*) => {
        /// Which flow to build, tagged by its `kind`. Saved in every checkpoint, so a
        /// checkpoint rebuilds its own model.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum ArchitectureConfig {
            $($(#[$doc])* #[serde(rename = $kind)] $variant($config),)*
        }

        impl ArchitectureConfig {
            /// The kind, as written in configs.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $kind,)*
                }
            }

            /// The layers this architecture consists of, after checking the config.
            pub fn to_specs(&self) -> Result<Vec<LayerSpec>> {
                match self {
                    $(Self::$variant(c) => c.to_specs(),)*
                }
            }

            /// The config with the sizes it leaves to the data taken from `shape`.
            pub fn with_data_shape(self, shape: &DataShape) -> Self {
                match self {
                    $(Self::$variant(c) => Self::$variant(c.with_data_shape(shape)),)*
                }
            }

            /// Size of the condition the flow takes (0: none).
            pub fn cond_dim(&self) -> usize {
                match self {
                    $(Self::$variant(c) => c.cond_dim(),)*
                }
            }
        }

        $(impl From<$config> for ArchitectureConfig {
            fn from(config: $config) -> Self {
                Self::$variant(config)
            }
        })*
    };
}

registry! {
    /// RealNVP on dense vectors ([`RealNvpConfig`]).
    RealNvpDense(RealNvpConfig) = "real_nvp_dense",
    /// Glow on images ([`GlowConfig`]).
    Glow(GlowConfig) = "glow",
    /// Any list of layers ([`LayerList`]).
    Layers(LayerList) = "layers",
    /// Neural spline flow: spline couplings ([`NsfConfig`]).
    Nsf(NsfConfig) = "nsf",
    /// Masked autoregressive flow ([`MafConfig`]).
    Maf(MafConfig) = "maf",
    /// Autoregressive neural spline flow ([`NsfAutoregressiveConfig`]).
    NsfAutoregressive(NsfAutoregressiveConfig) = "nsf_autoregressive",
    /// Checkerboard couplings on a periodic lattice ([`LatticeFlowConfig`]).
    Lattice(LatticeFlowConfig) = "lattice",
    /// Continuous normalizing flow ([`FfjordConfig`]).
    Ffjord(FfjordConfig) = "ffjord",
}

/// The seed of the `index`-th random choice of an architecture seeded with `seed`.
fn derive_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index as u64 + 1)
}
