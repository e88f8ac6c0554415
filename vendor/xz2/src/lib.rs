//! `xz2`'s API, from `liblzma` (a maintained fork with the same modules): see Cargo.toml for why.

pub use liblzma::*;
