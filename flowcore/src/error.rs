//! The one error type of the library: every variant names what was wrong (the key, block, file or
//! tensor) so that a binary can print it as it is.

use std::path::PathBuf;

/// Errors from building, validating, saving and loading flows.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A partition whose blocks do not add up or are malformed.
    #[error("invalid partition: {0}")]
    Partition(String),
    /// An architecture or layer configuration that cannot be built.
    #[error("invalid architecture config: {0}")]
    Config(String),
    /// A checkpoint that cannot be read or does not fit the model.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file that could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl FlowError {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Result with [`FlowError`].
pub type Result<T, E = FlowError> = std::result::Result<T, E>;
