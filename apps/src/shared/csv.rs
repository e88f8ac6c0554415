//! CSV output: rows of numbers with a header, and fields quoted where they must be.

use std::path::Path;

use anyhow::{Context, Result};

/// Column names `{prefix}0, {prefix}1, ...`.
pub fn axis_names(dim: usize, prefix: &str) -> Vec<String> {
    (0..dim).map(|j| format!("{prefix}{j}")).collect()
}

/// Rows of `values` (`[n, dim]`) as CSV text with a header, plus an extra column when given.
pub fn csv_text(
    values: &[f32],
    dim: usize,
    columns: &[String],
    extra: Option<(&str, &[f32])>,
) -> String {
    let mut out = columns.join(",");
    if let Some((name, _)) = extra {
        out.push(',');
        out.push_str(name);
    }
    out.push('\n');
    for (i, row) in values.chunks(dim).enumerate() {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        out.push_str(&cells.join(","));
        if let Some((_, col)) = extra {
            out.push(',');
            out.push_str(&col[i].to_string());
        }
        out.push('\n');
    }
    out
}

/// Write rows of `values` (`[n, dim]`) as CSV with a header, plus an extra column when given.
pub fn write_csv(
    path: &Path,
    values: &[f32],
    dim: usize,
    columns: &[String],
    extra: Option<(&str, &[f32])>,
) -> Result<()> {
    flowcore::io::write_atomic(path, csv_text(values, dim, columns, extra).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
