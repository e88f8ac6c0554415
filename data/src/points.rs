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
    /// The 1-based line of the file each point came from.
    pub lines: Vec<usize>,
}

/// How far from its column's median, in units of the column's median absolute deviation, a
/// value may lie: beyond it a flow's f32 arithmetic cannot absorb it (a 1e30 among values of
/// order 1 overflows the log-density), and it is far more likely a typo or a unit error than
/// data (a Cauchy sample of a hundred million rows stays within it).
pub const OUTLIER_SPREADS: f64 = 1e8;

impl Points {
    /// Refuse a value that lies more than [`OUTLIER_SPREADS`] spreads from its column's
    /// median, naming the file (`path`), line, column and value.
    pub fn check_outliers(&self, path: &str) -> Result<(), DataError> {
        for j in 0..self.dim {
            let mut column: Vec<f64> = (0..self.n)
                .map(|i| f64::from(self.values[i * self.dim + j]))
                .collect();
            column.sort_by(f64::total_cmp);
            let median = column[column.len() / 2];
            let mut deviations: Vec<f64> = column.iter().map(|v| (v - median).abs()).collect();
            deviations.sort_by(f64::total_cmp);
            // A constant column spreads by nothing: judge it against its own magnitude.
            let spread = deviations[deviations.len() / 2].max(1e-6 * median.abs().max(1.0));
            for i in 0..self.n {
                let v = f64::from(self.values[i * self.dim + j]);
                let distance = (v - median).abs() / spread;
                if distance > OUTLIER_SPREADS {
                    return Err(DataError::Parse {
                        path: path.to_string(),
                        line: self.lines[i],
                        reason: format!(
                            "{:e} in column `{}` lies {distance:.1e} spreads (median absolute \
                             deviations) from the column's median {:e}: a typo or a unit \
                             error? A flow cannot train on it",
                            self.values[i * self.dim + j],
                            self.columns[j],
                            median as f32
                        ),
                    });
                }
            }
        }
        Ok(())
    }
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
    let mut lines = Vec::new();
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
                lines.push(i + 1);
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
        lines,
    })
}

/// Points with a class label each.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledPoints {
    /// The features (the label column left out).
    pub points: Points,
    /// The class index of every point, into `class_names`.
    pub labels: Vec<usize>,
    /// The classes, sorted (numerically when every label is an integer).
    pub class_names: Vec<String>,
}

/// Read a CSV of labelled points: a header naming the columns, numeric features, and the
/// column `label_column` holding each point's class (any text). Errors name the file, the line
/// and, when the label column is missing, the columns there are.
pub fn read_labelled_points_csv(
    path: &Path,
    label_column: &str,
) -> Result<LabelledPoints, DataError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let parse_err = |line: usize, reason: String| DataError::Parse {
        path: shown.clone(),
        line,
        reason,
    };
    let Some((header_line, header)) = lines.next() else {
        return Err(parse_err(0, "no points in the file".into()));
    };
    let columns: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
    let Some(label_at) = columns.iter().position(|c| c == label_column) else {
        return Err(parse_err(
            header_line,
            format!(
                "labels missing: no column `{label_column}` in the header (columns: {})",
                columns.join(", ")
            ),
        ));
    };
    let mut values = Vec::new();
    let mut raw_labels = Vec::new();
    let mut point_lines = Vec::new();
    for (line, text) in lines {
        point_lines.push(line);
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(parse_err(
                line,
                format!(
                    "{} fields, but the header has {}",
                    fields.len(),
                    columns.len()
                ),
            ));
        }
        for (j, f) in fields.iter().enumerate() {
            if j == label_at {
                if f.is_empty() {
                    return Err(parse_err(line, format!("no label in `{label_column}`")));
                }
                raw_labels.push(f.to_string());
            } else {
                let v: f32 = f
                    .parse()
                    .map_err(|_| parse_err(line, format!("`{f}` is not a number")))?;
                if !v.is_finite() {
                    return Err(parse_err(line, format!("{v} is not a finite number")));
                }
                values.push(v);
            }
        }
    }
    if raw_labels.is_empty() {
        return Err(parse_err(header_line, "no points in the file".into()));
    }
    let mut class_names: Vec<String> = raw_labels.clone();
    class_names.sort();
    class_names.dedup();
    if class_names.iter().all(|c| c.parse::<i64>().is_ok()) {
        class_names.sort_by_key(|c| c.parse::<i64>().unwrap_or(0));
    }
    let labels = raw_labels
        .iter()
        .map(|l| class_names.iter().position(|c| c == l).unwrap_or(0))
        .collect();
    let dim = columns.len() - 1;
    Ok(LabelledPoints {
        points: Points {
            n: raw_labels.len(),
            dim,
            values,
            columns: columns
                .into_iter()
                .enumerate()
                .filter(|(j, _)| *j != label_at)
                .map(|(_, c)| c)
                .collect(),
            lines: point_lines,
        },
        labels,
        class_names,
    })
}
