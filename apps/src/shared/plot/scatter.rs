//! Scatter plots of points, every pair of axes, with highlighted rows on top.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::{FAMILY, draw_legend, err, png, range, register_font};

/// Points to scatter: row-major `[n, dim]`, with some rows drawn highlighted on top.
pub struct ScatterSet<'a> {
    /// Row-major values.
    pub values: &'a [f32],
    /// Features per point (2 or 3 are plotted as all pairs of axes; more use the first 3).
    pub dim: usize,
    /// Rows to highlight.
    pub highlight: &'a [usize],
    /// Legend entry of the highlighted rows.
    pub highlight_label: &'a str,
    /// Axis names, one per feature.
    pub axes: &'a [String],
}

/// Scatter `set` to `path` (PNG) with a caption; one panel per pair of axes.
pub fn scatter(path: &Path, caption: &str, set: &ScatterSet) -> Result<()> {
    register_font();
    let e = err(path);
    let dim = set.dim.min(3);
    let pairs: Vec<(usize, usize)> = if dim < 2 {
        return Err(anyhow!("plot {}: need at least 2 features", path.display()));
    } else if dim == 2 {
        vec![(0, 1)]
    } else {
        vec![(0, 1), (0, 2), (1, 2)]
    };
    let n = set.values.len() / set.dim;
    let panel = 520u32;
    png(path, (panel * pairs.len() as u32, panel + 40), |root| {
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let root = root.titled(caption, (FAMILY, 22)).map_err(|x| e(&x))?;
        let areas = root.split_evenly((1, pairs.len()));
        let highlighted: std::collections::HashSet<usize> = set.highlight.iter().copied().collect();
        let at = |i: usize, j: usize| f64::from(set.values[i * set.dim + j]);
        for (area, &(a, b)) in areas.iter().zip(&pairs) {
            let name = |j: usize| set.axes.get(j).cloned().unwrap_or_else(|| format!("x{j}"));
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(
                    range((0..n).map(|i| at(i, a))),
                    range((0..n).map(|i| at(i, b))),
                )
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc(name(a))
                .y_desc(name(b))
                .label_style((FAMILY, 13))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|x| e(&x))?;
            let normal = RGBColor(31, 119, 180).mix(0.35).filled();
            chart
                .draw_series(
                    (0..n)
                        .filter(|i| !highlighted.contains(i))
                        .map(|i| Circle::new((at(i, a), at(i, b)), 2, normal)),
                )
                .map_err(|x| e(&x))?
                .label("points")
                .legend(move |(x, y)| Circle::new((x, y), 4, normal));
            if !set.highlight.is_empty() {
                let red = RGBColor(214, 39, 40).filled();
                chart
                    .draw_series(
                        set.highlight
                            .iter()
                            .filter(|&&i| i < n)
                            .map(|&i| Circle::new((at(i, a), at(i, b)), 4, red)),
                    )
                    .map_err(|x| e(&x))?
                    .label(set.highlight_label)
                    .legend(move |(x, y)| Circle::new((x, y), 4, red));
            }
            draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(|x| e(&x))?;
        }
        Ok(())
    })
}
