//! PNG figures with plotters: scatter plots of points (every pair of axes for 3-D) with
//! highlighted points, and training curves. The font is embedded (DejaVu Sans Mono, see
//! `apps/assets/DejaVu-LICENSE`), so plots draw on machines without fonts, such as containers.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded plot font did not load; plots will have no text");
        }
    });
}

fn err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> anyhow::Error + '_ {
    move |e| anyhow!("plot {}: {e}", path.display())
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw_legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FAMILY, 13))
        .position(position)
        .draw()
        .map_err(|e| e.to_string())
}

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

fn range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return -1.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    lo - pad..hi + pad
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
    let root =
        BitMapBackend::new(path, (panel * pairs.len() as u32, panel + 40)).into_drawing_area();
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
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Training curves: train and validation NLL per epoch, with a reference line (for example
/// the entropy of the data) when given.
pub fn nll_curves(
    path: &Path,
    train: &[f64],
    val: &[f64],
    reference: Option<(f64, &str)>,
) -> Result<()> {
    loss_curves(
        path,
        "NLL per epoch (nats per point)",
        "NLL",
        train,
        val,
        reference,
    )
}

/// The training and validation curves of a run's objective, titled `title`.
pub fn history_curves(
    path: &Path,
    title: &str,
    history: &[flowcore::train::EpochStats],
) -> Result<()> {
    let loss = history.last().map_or("loss", |e| e.loss.as_str());
    let train: Vec<f64> = history.iter().map(|e| e.train_loss).collect();
    let val: Vec<f64> = history.iter().map(|e| e.val_loss).collect();
    loss_curves(path, title, loss, &train, &val, None)
}

/// Training curves of any loss: train and validation per epoch, with a reference line when
/// given.
pub fn loss_curves(
    path: &Path,
    title: &str,
    y_desc: &str,
    train: &[f64],
    val: &[f64],
    reference: Option<(f64, &str)>,
) -> Result<()> {
    register_font();
    let e = err(path);
    let root = BitMapBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let epochs = train.len().max(val.len()).max(1);
    let all = train
        .iter()
        .chain(val)
        .copied()
        .chain(reference.map(|r| r.0));
    let y = range(all);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 20))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5f64..epochs as f64 + 0.5, y)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style((FAMILY, 13))
        .draw()
        .map_err(|x| e(&x))?;
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    let line = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, &y)| ((i + 1) as f64, y))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(line(train), blue.stroke_width(2)))
        .map_err(|x| e(&x))?
        .label("train")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(line(val), orange.stroke_width(2)))
        .map_err(|x| e(&x))?
        .label("validation")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], orange.stroke_width(2)));
    if let Some((value, label)) = reference {
        chart
            .draw_series(LineSeries::new(
                vec![(0.5, value), (epochs as f64 + 0.5, value)],
                BLACK.stroke_width(1),
            ))
            .map_err(|x| e(&x))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

// Matplotlib's tab10, reordered so the first three (blue, red, green) contrast most.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One ROC curve: `(false positive rate, true positive rate)` points and their area.
pub struct RocCurve {
    /// The score it belongs to.
    pub name: String,
    /// From (0, 0) to (1, 1).
    pub points: Vec<(f64, f64)>,
    /// Area under the curve.
    pub auroc: f64,
}

/// ROC curves, one per score, with the AUROC in the legend.
pub fn roc_curves(path: &Path, title: &str, curves: &[RocCurve]) -> Result<()> {
    register_font();
    let e = err(path);
    let root = BitMapBackend::new(path, (560, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("false positive rate")
        .y_desc("true positive rate")
        .label_style((FAMILY, 13))
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.3),
        ))
        .map_err(|x| e(&x))?;
    for (k, curve) in curves.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(curve.points.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("{} (AUROC {:.3})", curve.name, curve.auroc))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight).map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Histograms of one score per group (folder), as outlines over shared bins, with the
/// threshold as a vertical line.
pub fn histograms(
    path: &Path,
    title: &str,
    groups: &[(String, Vec<f64>)],
    threshold: Option<f64>,
) -> Result<()> {
    register_font();
    let e = err(path);
    let all = groups.iter().flat_map(|g| g.1.iter().copied());
    let x = range(all.chain(threshold));
    let bins = 40;
    let width = (x.end - x.start) / bins as f64;
    let counts: Vec<Vec<f64>> = groups
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0.0; bins];
            for &s in v.iter().filter(|s| s.is_finite()) {
                let b = (((s - x.start) / width) as usize).min(bins - 1);
                c[b] += 1.0 / v.len().max(1) as f64;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().fold(0.0, f64::max) * 1.1 + 1e-9;
    let root = BitMapBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x.clone(), 0.0..top)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .y_desc("fraction of the folder")
        .label_style((FAMILY, 13))
        .draw()
        .map_err(|x| e(&x))?;
    for (k, ((name, _), c)) in groups.iter().zip(&counts).enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut outline = vec![(x.start, 0.0)];
        for (b, &v) in c.iter().enumerate() {
            let left = x.start + b as f64 * width;
            outline.push((left, v));
            outline.push((left + width, v));
        }
        outline.push((x.end, 0.0));
        chart
            .draw_series(LineSeries::new(outline, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    if let Some(t) = threshold {
        chart
            .draw_series(LineSeries::new(
                vec![(t, 0.0), (t, top)],
                BLACK.stroke_width(1),
            ))
            .map_err(|x| e(&x))?
            .label("threshold")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

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
    let root = BitMapBackend::new(path, (size.0 * columns as u32, size.1 * rows as u32 + 40))
        .into_drawing_area();
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
    root.present().map_err(|x| e(&x))?;
    Ok(())
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
    let root = BitMapBackend::new(path, (720, 680)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
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
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
