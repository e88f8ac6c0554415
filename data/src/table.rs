//! Tables of conditions `c` and data `x` in HDF5 files: one 2-D numeric dataset per file, `c`
//! and `x` as column ranges. [`Hdf5Table::open`] checks every file before any work (it opens,
//! the dataset is there, 2-D, wide enough, its first and last rows read), so a bad file is
//! named before training starts. Rows are read in blocks, never the whole file; see
//! [`crate::stream`] for the shuffled, prefetched stream training reads.

use std::path::{Path, PathBuf};

use hdf5_pure::File;

use crate::DataError;

/// Columns `start..end` of a table (end exclusive, as Python slices them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnRange {
    /// First column.
    pub start: usize,
    /// One past the last column.
    pub end: usize,
}

impl ColumnRange {
    /// Columns in the range.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether it holds no column.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl std::str::FromStr for ColumnRange {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        let bad = || {
            DataError::Invalid(format!(
                "`{s}` is not a column range: write START:END, e.g. 0:14 for columns 0 to 13"
            ))
        };
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        let start: usize = a.trim().parse().map_err(|_| bad())?;
        let end: usize = b.trim().parse().map_err(|_| bad())?;
        if end <= start {
            return Err(bad());
        }
        Ok(Self { start, end })
    }
}

impl std::fmt::Display for ColumnRange {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}:{}", self.start, self.end)
    }
}

/// Consecutive rows of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Index of the file in the table.
    pub file: usize,
    /// First row.
    pub start: u64,
    /// Rows.
    pub rows: u64,
}

/// The HDF5 files of a table, checked.
#[derive(Clone, Debug)]
pub struct Hdf5Table {
    files: Vec<PathBuf>,
    dataset: String,
    c: ColumnRange,
    x: ColumnRange,
    width: usize,
    rows: Vec<u64>,
}

impl Hdf5Table {
    /// The table of `dataset` in `files` with `c` and `x` at those columns. Every file is
    /// opened and its dataset checked; errors name the file, the dataset and the range.
    pub fn open(
        files: &[PathBuf],
        dataset: &str,
        c: ColumnRange,
        x: ColumnRange,
    ) -> Result<Self, DataError> {
        if files.is_empty() {
            return Err(DataError::Invalid("no HDF5 files given".into()));
        }
        let mut rows = Vec::with_capacity(files.len());
        let mut width = None;
        for path in files {
            let (n, w) = check_file(path, dataset, c, x)?;
            match width {
                Some(first) if first != w => {
                    return Err(DataError::Invalid(format!(
                        "{}: dataset `{dataset}` has {w} columns, but {} has {first}",
                        path.display(),
                        files[0].display()
                    )));
                }
                _ => width = Some(w),
            }
            rows.push(n);
        }
        Ok(Self {
            files: files.to_vec(),
            dataset: dataset.to_string(),
            c,
            x,
            width: width.unwrap_or(0),
            rows,
        })
    }

    /// The files.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Rows of every file.
    pub fn rows(&self) -> &[u64] {
        &self.rows
    }

    /// Rows in all.
    pub fn total_rows(&self) -> u64 {
        self.rows.iter().sum()
    }

    /// Values of `c` per row.
    pub fn cond_dim(&self) -> usize {
        self.c.len()
    }

    /// Values of `x` per row.
    pub fn dim(&self) -> usize {
        self.x.len()
    }

    /// Every file cut into blocks of at most `block_rows` rows, in file order.
    pub fn blocks(&self, block_rows: u64) -> Vec<Block> {
        let block_rows = block_rows.max(1);
        let mut out = Vec::new();
        for (file, &n) in self.rows.iter().enumerate() {
            let mut start = 0;
            while start < n {
                let rows = block_rows.min(n - start);
                out.push(Block { file, start, rows });
                start += rows;
            }
        }
        out
    }

    /// A reader with its own open files (one per thread).
    pub fn reader(&self) -> TableReader {
        TableReader {
            table: self.clone(),
            open: (0..self.files.len()).map(|_| None).collect(),
        }
    }
}

/// Reads blocks of an [`Hdf5Table`], keeping its files open.
pub struct TableReader {
    table: Hdf5Table,
    open: Vec<Option<File>>,
}

impl TableReader {
    /// The rows of `block`: conditions `[rows, cond_dim]` and data `[rows, dim]`, row-major.
    /// A value that is not finite is an error naming the file, the row and the column.
    pub fn read(&mut self, block: &Block) -> Result<(Vec<f32>, Vec<f32>), DataError> {
        let t = &self.table;
        let path = &t.files[block.file];
        let io = |e: hdf5_pure::Error| hdf5_error(path, &t.dataset, e);
        if self.open[block.file].is_none() {
            self.open[block.file] = Some(File::open_streaming(path).map_err(io)?);
        }
        let file = self.open[block.file].as_ref().expect("opened above");
        let values = file
            .dataset(&t.dataset)
            .and_then(|d| d.read_f32_rows(block.start, block.rows))
            .map_err(io)?;
        let w = t.width;
        if values.len() != block.rows as usize * w {
            return Err(DataError::Invalid(format!(
                "{}: dataset `{}` rows {}..{} read {} values, expected {}: is the file \
                 truncated?",
                path.display(),
                t.dataset,
                block.start,
                block.start + block.rows,
                values.len(),
                block.rows as usize * w
            )));
        }
        let mut c = Vec::with_capacity(block.rows as usize * t.c.len());
        let mut x = Vec::with_capacity(block.rows as usize * t.x.len());
        for (i, row) in values.chunks(w).enumerate() {
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(DataError::Invalid(format!(
                    "{}: dataset `{}` row {} column {j} is {}: a flow cannot train on it",
                    path.display(),
                    t.dataset,
                    block.start + i as u64,
                    row[j]
                )));
            }
            c.extend_from_slice(&row[t.c.start..t.c.end]);
            x.extend_from_slice(&row[t.x.start..t.x.end]);
        }
        Ok((c, x))
    }
}

/// Rows and columns of `dataset` in `path`, after checking it can be read where `c` and `x`
/// say.
fn check_file(
    path: &Path,
    dataset: &str,
    c: ColumnRange,
    x: ColumnRange,
) -> Result<(u64, usize), DataError> {
    if !path.is_file() {
        return Err(DataError::Invalid(format!(
            "{}: no such file",
            path.display()
        )));
    }
    let err = |e: hdf5_pure::Error| hdf5_error(path, dataset, e);
    let file = File::open_streaming(path).map_err(err)?;
    let ds = match file.dataset(dataset) {
        Ok(ds) => ds,
        Err(e) => {
            let names = file.root().datasets().unwrap_or_default();
            return Err(DataError::Invalid(format!(
                "{}: no dataset `{dataset}` ({e}); the file has: {}",
                path.display(),
                if names.is_empty() {
                    "no datasets at its root".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
    };
    let shape = ds.shape().map_err(err)?;
    let [n, w] = shape[..] else {
        return Err(DataError::Invalid(format!(
            "{}: dataset `{dataset}` has shape {shape:?}; a table is 2-D, [rows, columns]",
            path.display()
        )));
    };
    for (name, range) in [("c", c), ("x", x)] {
        if range.end as u64 > w {
            return Err(DataError::Invalid(format!(
                "{}: the column range {name} = {range} lies outside dataset `{dataset}`, which \
                 has {w} columns (0:{w})",
                path.display()
            )));
        }
    }
    if n == 0 {
        return Err(DataError::Invalid(format!(
            "{}: dataset `{dataset}` has no rows",
            path.display()
        )));
    }
    // The first and last rows: a truncated file fails here, not hours into training.
    for start in [0, n - 1] {
        let got = ds.read_f32_rows(start, 1).map_err(err)?;
        if got.len() as u64 != w {
            return Err(DataError::Invalid(format!(
                "{}: dataset `{dataset}` row {start} cannot be read whole: is the file \
                 truncated?",
                path.display()
            )));
        }
    }
    Ok((n, w as usize))
}

fn hdf5_error(path: &Path, dataset: &str, e: hdf5_pure::Error) -> DataError {
    DataError::Invalid(format!(
        "{}: cannot read HDF5 dataset `{dataset}`: {e} (is the file complete, an HDF5 file?)",
        path.display()
    ))
}

/// Write `values` (`[rows, width]`, row-major) as the 2-D dataset `dataset` of a new HDF5
/// file at `path`, in chunks of `chunk_rows` rows, deflated at `deflate` when given. The file
/// appears whole or not at all (written beside it, then renamed).
pub fn write_hdf5_table(
    path: &Path,
    dataset: &str,
    values: &[f32],
    width: usize,
    chunk_rows: usize,
    deflate: Option<u32>,
) -> Result<(), DataError> {
    let rows = values.len() / width.max(1);
    let mut builder = hdf5_pure::FileBuilder::new();
    let ds = builder.create_dataset(dataset);
    ds.with_f32_data(values)
        .with_shape(&[rows as u64, width as u64])
        .with_chunks(&[chunk_rows.clamp(1, rows.max(1)) as u64, width as u64]);
    if let Some(level) = deflate {
        ds.with_deflate(level);
    }
    let tmp = path.with_extension("h5.partial");
    builder
        .write(&tmp)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(hdf5_pure::Error::Io))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            DataError::Invalid(format!("{}: cannot write: {e}", path.display()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &Path, files: usize, rows: usize, deflate: Option<u32>) -> Vec<PathBuf> {
        (0..files)
            .map(|f| {
                let values: Vec<f32> = (0..rows * 5).map(|k| (f * 100_000 + k) as f32).collect();
                let path = dir.join(format!("t{f}.h5"));
                write_hdf5_table(&path, "data", &values, 5, 7, deflate).unwrap();
                path
            })
            .collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flowdata-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn blocks_read_back_the_columns_asked_for() {
        let dir = scratch("blocks");
        for deflate in [None, Some(4)] {
            let files = table(&dir, 2, 30, deflate);
            let t = Hdf5Table::open(
                &files,
                "data",
                "0:2".parse().unwrap(),
                "2:5".parse().unwrap(),
            )
            .unwrap();
            assert_eq!(t.total_rows(), 60);
            let blocks = t.blocks(8);
            assert_eq!(blocks.len(), 8);
            assert_eq!(
                blocks[3],
                Block {
                    file: 0,
                    start: 24,
                    rows: 6
                }
            );
            let mut r = t.reader();
            let (c, x) = r
                .read(&Block {
                    file: 1,
                    start: 10,
                    rows: 3,
                })
                .unwrap();
            // Row 10 of file 1 holds 100000 + 50..55.
            assert_eq!(c[..2], [100_050.0, 100_051.0]);
            assert_eq!(x[..3], [100_052.0, 100_053.0, 100_054.0]);
            assert_eq!((c.len(), x.len()), (6, 9));
        }
    }

    #[test]
    fn bad_tables_are_named() {
        let dir = scratch("bad");
        let files = table(&dir, 1, 30, None);
        let open = |files: &[PathBuf], ds: &str, c: &str, x: &str| {
            Hdf5Table::open(files, ds, c.parse().unwrap(), x.parse().unwrap())
                .unwrap_err()
                .to_string()
        };
        let e = open(&files, "events", "0:2", "2:5");
        assert!(
            e.contains("no dataset `events`") && e.contains("data"),
            "{e}"
        );
        let e = open(&files, "data", "0:2", "2:9");
        assert!(e.contains("x = 2:9") && e.contains("5 columns"), "{e}");
        let e = open(&[dir.join("missing.h5")], "data", "0:2", "2:5");
        assert!(
            e.contains("missing.h5") && e.contains("no such file"),
            "{e}"
        );
        let bytes = std::fs::read(&files[0]).unwrap();
        let cut = dir.join("cut.h5");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let e = open(&[cut], "data", "0:2", "2:5");
        assert!(e.contains("cut.h5"), "{e}");
        assert!("3:1".parse::<ColumnRange>().is_err());
    }
}
