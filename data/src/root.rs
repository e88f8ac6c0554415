//! Tables in ROOT files: the flat numeric branches of one TTree, read with `oxyroot` (pure Rust),
//! as [`Points`] whose columns are the branch names, so that a ROOT table goes wherever a CSV
//! table goes. Branches that a flat table cannot hold (jagged arrays, strings, objects) are left
//! out and listed in the log.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use oxyroot::{Branch, Named, ReaderTree, RootFile};

use crate::{DataError, Points};

/// The numeric types a flat branch may have, as ROOT names them.
const NUMERIC: [&str; 11] = [
    "float", "double", "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t",
    "int64_t", "uint64_t", "bool",
];

/// The rows of the TTree `tree` of each file (the file's only TTree when `tree` is `None`),
/// one after the other. Every file must have the same flat numeric branches.
pub fn read_root_table(files: &[PathBuf], tree: Option<&str>) -> Result<Points, DataError> {
    let mut table: Option<Points> = None;
    for path in files {
        let part = read_root_tree(path, tree)?;
        match &mut table {
            None => table = Some(part),
            Some(t) if t.columns != part.columns => {
                return Err(invalid(
                    path,
                    format!(
                        "its branches ({}) are not those of {} ({})",
                        part.columns.join(", "),
                        files[0].display(),
                        t.columns.join(", ")
                    ),
                ));
            }
            Some(t) => {
                let offset = t.n;
                t.values.extend(part.values);
                t.lines.extend(part.lines.iter().map(|l| l + offset));
                t.n += part.n;
            }
        }
    }
    table.ok_or_else(|| DataError::Invalid("no ROOT file given".into()))
}

/// The flat numeric branches of one TTree. `lines` holds each row's 1-based entry number.
pub fn read_root_tree(path: &Path, tree: Option<&str>) -> Result<Points, DataError> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(DataError::Io {
            path: path.display().to_string(),
            source,
        });
    }
    // oxyroot panics on some malformed files (it unwraps while decoding baskets): a damaged
    // file must be an error naming it, not an abort.
    catch_unwind(AssertUnwindSafe(|| read_tree(path, tree))).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the reader failed");
        Err(invalid(path, format!("not a readable ROOT file ({why})")))
    })
}

fn read_tree(path: &Path, tree: Option<&str>) -> Result<Points, DataError> {
    let mut file = RootFile::open(path)
        .map_err(|e| invalid(path, format!("not a readable ROOT file ({e})")))?;
    let trees: Vec<String> = file
        .keys()
        .iter()
        .filter(|k| k.class_name() == "TTree")
        .map(|k| k.name().to_string())
        .collect();
    let name = match tree {
        Some(t) if trees.iter().any(|n| n == t) => t.to_string(),
        Some(t) => {
            return Err(invalid(
                path,
                format!("no TTree `{t}` (its TTrees: {})", list(&trees)),
            ));
        }
        None if trees.len() == 1 => trees[0].clone(),
        None => {
            return Err(invalid(
                path,
                format!("name the TTree to read (its TTrees: {})", list(&trees)),
            ));
        }
    };
    let tree = file
        .get_tree(&name)
        .map_err(|e| invalid(path, format!("TTree `{name}`: {e}")))?;
    columns(path, &name, &tree)
}

fn columns(path: &Path, name: &str, tree: &ReaderTree) -> Result<Points, DataError> {
    let n = usize::try_from(tree.entries())
        .map_err(|_| invalid(path, format!("TTree `{name}` has a negative entry count")))?;
    let (flat, other): (Vec<&Branch>, Vec<&Branch>) = tree
        .branches()
        .partition(|b| NUMERIC.contains(&b.item_type_name().as_str()));
    if !other.is_empty() {
        tracing::info!(
            "{}: TTree `{name}`: left out the branches that are not flat numbers: {}",
            path.display(),
            other
                .iter()
                .map(|b| format!("{} ({})", b.name(), b.item_type_name()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if flat.is_empty() {
        return Err(invalid(
            path,
            format!("TTree `{name}` has no flat numeric branch"),
        ));
    }
    let dim = flat.len();
    let mut values = vec![0f32; n * dim];
    for (j, branch) in flat.iter().enumerate() {
        let column = read_branch(branch).map_err(|e| {
            invalid(
                path,
                format!("TTree `{name}`, branch `{}`: {e}", branch.name()),
            )
        })?;
        if column.len() != n {
            return Err(invalid(
                path,
                format!(
                    "TTree `{name}`, branch `{}`: {} entries where the tree has {n}",
                    branch.name(),
                    column.len()
                ),
            ));
        }
        for (i, v) in column.into_iter().enumerate() {
            if !v.is_finite() {
                return Err(DataError::Parse {
                    path: path.display().to_string(),
                    line: i + 1,
                    reason: format!("entry {}: branch `{}` is {v}", i + 1, branch.name()),
                });
            }
            values[i * dim + j] = v;
        }
    }
    Ok(Points {
        values,
        n,
        dim,
        columns: flat.iter().map(|b| b.name().to_string()).collect(),
        lines: (1..=n).collect(),
    })
}

/// One branch as `f32`, the precision training uses.
fn read_branch(b: &Branch) -> oxyroot::Result<Vec<f32>> {
    Ok(match b.item_type_name().as_str() {
        "float" => b.as_iter::<f32>()?.collect(),
        "double" => b.as_iter::<f64>()?.map(|v| v as f32).collect(),
        "int8_t" => b.as_iter::<i8>()?.map(f32::from).collect(),
        "uint8_t" => b.as_iter::<u8>()?.map(f32::from).collect(),
        "int16_t" => b.as_iter::<i16>()?.map(f32::from).collect(),
        "uint16_t" => b.as_iter::<u16>()?.map(f32::from).collect(),
        "int32_t" => b.as_iter::<i32>()?.map(|v| v as f32).collect(),
        "uint32_t" => b.as_iter::<u32>()?.map(|v| v as f32).collect(),
        "int64_t" => b.as_iter::<i64>()?.map(|v| v as f32).collect(),
        "uint64_t" => b.as_iter::<u64>()?.map(|v| v as f32).collect(),
        _ => b
            .as_iter::<bool>()?
            .map(|v| f32::from(u8::from(v)))
            .collect(),
    })
}

fn invalid(path: &Path, reason: String) -> DataError {
    DataError::Invalid(format!("{}: {reason}", path.display()))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_points_csv;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/root")
            .join(name)
    }

    /// The fixtures were written by uproot (`make_fixtures.py`), with the same rows as a CSV.
    #[test]
    fn uproot_trees_read_as_the_rows_written() {
        let csv = read_points_csv(&fixture("grid.csv")).unwrap();
        for file in ["grid.root", "grid_lzma.root"] {
            let t = read_root_tree(&fixture(file), None).unwrap();
            assert_eq!((t.n, t.dim), (1000, 7), "{file}");
            let mut names = t.columns.clone();
            names.sort();
            // `hits` is jagged: only its counter `nhits` is a flat column.
            let flat = ["c0", "c1", "label", "nhits", "weight", "x0", "x1"];
            assert_eq!(names, flat, "{file}");
            for (j, name) in csv.columns.iter().enumerate() {
                let k = t.columns.iter().position(|c| c == name).unwrap();
                for i in 0..t.n {
                    let (a, b) = (t.values[i * t.dim + k], csv.values[i * csv.dim + j]);
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs(),
                        "{file} {name} row {i}: {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn several_files_are_one_table_and_mismatches_are_named() {
        let files = [fixture("grid.root"), fixture("grid_lzma.root")];
        let t = read_root_table(&files, Some("events")).unwrap();
        assert_eq!(t.n, 2000);
        assert_eq!(t.values[..t.dim], t.values[1000 * t.dim..1001 * t.dim]);

        let err = read_root_tree(&files[0], Some("tree"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("grid.root") && err.contains("no TTree `tree`"),
            "{err}"
        );
        assert!(err.contains("events"), "{err}");
        let err = read_root_tree(&fixture("grid.csv"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("grid.csv") && err.contains("not a readable ROOT file"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_file_and_zstd_baskets_are_errors_naming_the_file() {
        let err = read_root_tree(&fixture("grid_zstd.root"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("grid_zstd.root"), "{err}");
        let bytes = std::fs::read(fixture("grid.root")).unwrap();
        let dir = std::env::temp_dir().join(format!("flowdata-root-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cut = dir.join("cut.root");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_root_tree(&cut, None).unwrap_err().to_string();
        assert!(err.contains("cut.root"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
