//! Figures of several panels of lines and points, and the decision map of a 2-D classifier.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::{FAMILY, PALETTE, draw_legend, err, png, range, register_font};

/// Lines of one kind in a [`Panel`]: each line a polyline, all in one color.
pub struct Series {
    /// Legend entry (none: no entry).
    pub label: Option<String>,
    /// The polylines.
    pub lines: Vec<Vec<(f64, f64)>>,
    /// Index into the palette; `None` for black.
    pub color: Option<usize>,
    /// Opacity, 0 to 1.
    pub alpha: f64,
    /// Stroke width in pixels.
    pub width: u32,
    /// Draw a marker at every point instead of lines.
    pub markers: bool,
}

impl Series {
    /// A series of `lines` in palette color `color` (`None`: black).
    pub fn new(lines: Vec<Vec<(f64, f64)>>, color: Option<usize>) -> Self {
        Self {
            label: None,
            lines,
            color,
            alpha: 1.0,
            width: 2,
            markers: false,
        }
    }

    /// With a legend entry.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Thin and translucent, for bundles of many lines.
    pub fn faint(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self.width = 1;
        self
    }

    /// Markers at the points, no lines.
    pub fn markers(mut self) -> Self {
        self.markers = true;
        self
    }
}

/// One chart of a figure.
pub struct Panel {
    /// Its title.
    pub title: String,
    /// Axis descriptions.
    pub x_desc: String,
    /// See `x_desc`.
    pub y_desc: String,
    /// What it shows, drawn in order.
    pub series: Vec<Series>,
    /// Fixed axis ranges (`None`: fit the data).
    pub x_range: Option<std::ops::Range<f64>>,
    /// See `x_range`.
    pub y_range: Option<std::ops::Range<f64>>,
}

impl Panel {
    /// A panel with axes fitted to its data.
    pub fn new(title: impl Into<String>, x_desc: &str, y_desc: &str, series: Vec<Series>) -> Self {
        Self {
            title: title.into(),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            series,
            x_range: None,
            y_range: None,
        }
    }

    /// The same axis ranges as the panels given (so they compare by eye).
    pub fn share_ranges(panels: &mut [Panel]) {
        let points = || {
            panels
                .iter()
                .flat_map(|p| p.series.iter().flat_map(|s| s.lines.iter().flatten()))
        };
        let x = range(points().map(|p| p.0).collect::<Vec<_>>().into_iter());
        let y = range(points().map(|p| p.1).collect::<Vec<_>>().into_iter());
        for p in panels {
            p.x_range.get_or_insert(x.clone());
            p.y_range.get_or_insert(y.clone());
        }
    }
}

/// A figure of `panels` in `columns` columns, each `size` pixels, under a caption.
pub fn panels(
    path: &Path,
    caption: &str,
    panels: &[Panel],
    columns: usize,
    size: (u32, u32),
) -> Result<()> {
    register_font();
    let e = err(path);
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    png(
        path,
        (size.0 * columns as u32, size.1 * rows as u32 + 40),
        |root| {
            root.fill(&WHITE).map_err(|x| e(&x))?;
            let root = root.titled(caption, (FAMILY, 22)).map_err(|x| e(&x))?;
            let areas = root.split_evenly((rows, columns));
            for (panel, area) in panels.iter().zip(areas) {
                let points = || panel.series.iter().flat_map(|s| s.lines.iter().flatten());
                let x = panel
                    .x_range
                    .clone()
                    .unwrap_or_else(|| range(points().map(|p| p.0)));
                let y = panel
                    .y_range
                    .clone()
                    .unwrap_or_else(|| range(points().map(|p| p.1)));
                let mut chart = ChartBuilder::on(&area)
                    .caption(&panel.title, (FAMILY, 16))
                    .margin(10)
                    .x_label_area_size(34)
                    .y_label_area_size(56)
                    .build_cartesian_2d(x, y)
                    .map_err(|x| e(&x))?;
                chart
                    .configure_mesh()
                    .x_desc(panel.x_desc.as_str())
                    .y_desc(panel.y_desc.as_str())
                    .label_style((FAMILY, 12))
                    .draw()
                    .map_err(|x| e(&x))?;
                let mut labelled = false;
                for series in &panel.series {
                    let base = series.color.map_or(BLACK, |c| PALETTE[c % PALETTE.len()]);
                    let style = base.mix(series.alpha).stroke_width(series.width);
                    let legend_style = base.stroke_width(2);
                    let mut last = None;
                    for line in &series.lines {
                        last = Some(if series.markers {
                            chart
                                .draw_series(
                                    line.iter()
                                        .map(|&p| Circle::new(p, 3 + series.width, style.filled())),
                                )
                                .map_err(|x| e(&x))?
                        } else {
                            chart
                                .draw_series(LineSeries::new(line.clone(), style))
                                .map_err(|x| e(&x))?
                        });
                    }
                    if let (Some(label), Some(drawn)) = (&series.label, last) {
                        drawn.label(label.clone()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], legend_style)
                        });
                        labelled = true;
                    }
                }
                if labelled {
                    draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(|x| e(&x))?;
                }
            }
            Ok(())
        },
    )
}

/// The outline of a normalised histogram (a density) of `values` over `bins` bins of `range`.
pub fn histogram_outline(
    values: &[f64],
    range: std::ops::Range<f64>,
    bins: usize,
) -> Vec<(f64, f64)> {
    let width = (range.end - range.start) / bins as f64;
    let mut counts = vec![0.0; bins];
    let n = values.len().max(1) as f64;
    for &v in values.iter().filter(|v| v.is_finite()) {
        if v >= range.start && v <= range.end {
            let b = (((v - range.start) / width) as usize).min(bins - 1);
            counts[b] += 1.0 / (n * width);
        }
    }
    let mut outline = vec![(range.start, 0.0)];
    for (b, &c) in counts.iter().enumerate() {
        let left = range.start + b as f64 * width;
        outline.push((left, c));
        outline.push((left + width, c));
    }
    outline.push((range.end, 0.0));
    outline
}

/// Decision regions of a 2-D classifier: each cell of an `nx x ny` grid over `x` and `y`
/// filled with the light colour of its predicted class (`cells`, row by row from the bottom),
/// and the points drawn in their true class's colour.
#[allow(clippy::too_many_arguments)]
pub fn decision_map(
    path: &Path,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    (nx, ny): (usize, usize),
    cells: &[usize],
    points: &[(f64, f64, usize)],
    names: &[String],
) -> Result<()> {
    register_font();
    let e = err(path);
    png(path, (720, 680), |root| {
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FAMILY, 18))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(x.clone(), y.clone())
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .label_style((FAMILY, 13))
            .draw()
            .map_err(|x| e(&x))?;
        let (dx, dy) = ((x.end - x.start) / nx as f64, (y.end - y.start) / ny as f64);
        let color = |k: usize| PALETTE[k % PALETTE.len()];
        chart
            .draw_series(cells.iter().enumerate().map(|(i, &k)| {
                let (cx, cy) = (i % nx, i / nx);
                let (x0, y0) = (x.start + cx as f64 * dx, y.start + cy as f64 * dy);
                Rectangle::new([(x0, y0), (x0 + dx, y0 + dy)], color(k).mix(0.25).filled())
            }))
            .map_err(|x| e(&x))?;
        for (k, name) in names.iter().enumerate() {
            let c = color(k);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == k)
                        .map(move |p| Circle::new((p.0, p.1), 2, c.filled())),
                )
                .map_err(|x| e(&x))?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(|x| e(&x))?;
        Ok(())
    })
}
