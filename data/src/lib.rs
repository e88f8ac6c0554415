//! flowdata: datasets and loaders for flowmodels. Toy point distributions (drawn fresh for
//! every batch from a seed), point files, image folders on disk, S3 or embedded, and the
//! forward simulators of the inverse problems, conditional generators, HDF5 tables of
//! conditions and data read in shuffled, prefetched blocks, and ROOT TTrees of flat branches.

mod conditional;
pub mod images;
pub mod inverse;
mod points;
mod root;
pub mod s3;
pub mod stream;
mod table;
mod toy;

pub use conditional::{Conditional, digamma, ln_gamma};
pub use points::{
    LabelledPoints, OUTLIER_SPREADS, Points, read_labelled_points_csv, read_points_csv,
};
pub use root::{read_root_table, read_root_tree};
pub use stream::{ShuffledRows, StreamOptions};
pub use table::{Block, ColumnRange, Hdf5Table, TableReader, write_hdf5_table};
pub use toy::Toy;

/// Errors reading data; each names the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file that could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file whose content is not what was expected.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An unknown dataset name or bad parameter.
    #[error("{0}")]
    Invalid(String),
    /// An image that could not be read or decoded.
    #[error("{path}: {reason}")]
    Image {
        /// The image.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A seeded random stream for one batch: the same `(seed, index)` gives the same batch on every
/// run, so a resumed run draws what an uninterrupted one would have.
pub fn batch_rng(seed: u64, index: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// A seeded random stream for row `row` of batch `index`: rows drawn from their own streams can
/// be made apart (each rank of a data-parallel run makes only its rows) and still equal the
/// same rows of the whole batch.
pub fn row_rng(seed: u64, index: u64, row: usize) -> rand_chacha::ChaCha8Rng {
    // A distinct seed per row (Weyl sequence), the batch index as the stream.
    batch_rng(
        seed ^ (row as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        index,
    )
}
