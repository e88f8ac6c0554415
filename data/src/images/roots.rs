//! Where images come from: a folder, an S3 prefix, or a set compiled into the binary.

use std::path::PathBuf;

use crate::DataError;
use crate::s3::{S3Config, S3Location};

/// The embedded default image set of application 2 (see `data/default/fashion-mnist/README.md`),
/// as `(path relative to its root, file bytes)`.
pub static EMBEDDED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/embedded_images.rs"));

/// The embedded labelled set of application 3 (see
/// `data/default/fashion-mnist-classes/README.md`).
pub static EMBEDDED_CLASSES: &[(&str, &[u8])] =
    include!(concat!(env!("OUT_DIR"), "/embedded_classes.rs"));

/// The name that selects [`EMBEDDED`] wherever an image root is expected.
pub const EMBEDDED_ROOT: &str = "embedded:fashion-mnist";

/// An image set compiled into the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddedSet {
    /// `embedded:fashion-mnist`: sneakers to learn, sneakers and bags to score.
    FashionMnist,
    /// `embedded:fashion-mnist-classes`: four classes to learn, with a fifth in `val/` only.
    FashionMnistClasses,
}

impl EmbeddedSet {
    /// Every set, for messages.
    pub const ALL: [Self; 2] = [Self::FashionMnist, Self::FashionMnistClasses];

    /// Its root name, `embedded:<set>`.
    pub fn root(self) -> &'static str {
        match self {
            Self::FashionMnist => EMBEDDED_ROOT,
            Self::FashionMnistClasses => "embedded:fashion-mnist-classes",
        }
    }

    /// Its files.
    pub fn files(self) -> &'static [(&'static str, &'static [u8])] {
        match self {
            Self::FashionMnist => EMBEDDED,
            Self::FashionMnistClasses => EMBEDDED_CLASSES,
        }
    }

    /// The set named by `embedded:<set>` (`embedded` alone: application 2's).
    pub fn parse(name: &str) -> Result<Self, DataError> {
        if name == "embedded" {
            return Ok(Self::FashionMnist);
        }
        Self::ALL
            .into_iter()
            .find(|s| s.root() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.root()).collect();
                DataError::Invalid(format!(
                    "unknown embedded image set `{name}`; there are {}",
                    names.join(", ")
                ))
            })
    }
}

/// Where images come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageRoot {
    /// A folder on local disk.
    Disk(PathBuf),
    /// A set compiled into the binary.
    Embedded(EmbeddedSet),
    /// A prefix in an S3 bucket, and how to reach the store.
    S3(S3Location, S3Config),
}

impl ImageRoot {
    /// `embedded:<set>`, `s3://bucket/prefix` (reached as the environment says, see
    /// [`S3Config::from_env`]) or a path.
    pub fn parse(s: &str) -> Result<Self, DataError> {
        if s == "embedded" || s.starts_with("embedded:") {
            return Ok(Self::Embedded(EmbeddedSet::parse(s)?));
        }
        if s.starts_with("s3://") {
            return Ok(Self::S3(S3Location::parse(s)?, S3Config::from_env()));
        }
        Ok(Self::Disk(PathBuf::from(s)))
    }
}
