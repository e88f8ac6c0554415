//! Points from CSV files: one point per line, comma-separated numbers, an optional header line.

use std::path::Path;

use crate::DataError;

/// A set of points, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Points {
    /// `n * dim` values.
    pub values: Vec<f32>,
    /// Number of points.
    pub n: usize,
    /// Dimension of every point.
    pub dim: usize,
    /// Column names, from the header if there was one.
    pub columns: Vec<String>,
}

/// Read a CSV of points. Every row must have the same number of finite numbers; a first line
/// that does not parse as numbers is taken as the header. Errors name the file and line.
pub fn read_points_csv(path: &Path) -> Result<Points, DataError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut values = Vec::new();
    let mut columns = Vec::new();
    let mut dim = None;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Result<Vec<f32>, _> = fields.iter().map(|f| f.parse::<f32>()).collect();
        let err = |reason: String| DataError::Parse {
            path: shown.clone(),
            line: i + 1,
            reason,
        };
        match parsed {
            Err(_) if dim.is_none() && columns.is_empty() => {
                columns = fields.iter().map(|s| s.to_string()).collect();
                dim = Some(columns.len());
            }
            Err(_) => {
                let bad = fields
                    .iter()
                    .find(|f| f.parse::<f32>().is_err())
                    .unwrap_or(&"");
                return Err(err(format!("`{bad}` is not a number")));
            }
            Ok(row) => {
                if let Some(bad) = row.iter().find(|v| !v.is_finite()) {
                    return Err(err(format!("{bad} is not a finite number")));
                }
                match dim {
                    Some(d) if d != row.len() => {
                        return Err(err(format!(
                            "{} values, but the file has {d} columns",
                            row.len()
                        )));
                    }
                    None => dim = Some(row.len()),
                    _ => {}
                }
                values.extend(row);
                n += 1;
            }
        }
    }
    let dim = dim.unwrap_or(0);
    if n == 0 {
        return Err(DataError::Parse {
            path: shown,
            line: 0,
            reason: "no points in the file".into(),
        });
    }
    if columns.is_empty() {
        columns = (0..dim).map(|j| format!("x{j}")).collect();
    }
    Ok(Points {
        values,
        n,
        dim,
        columns,
    })
}
