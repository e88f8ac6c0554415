//! PNG figures with plotters: scatter plots of points (every pair of axes for 3-D) with
//! highlighted points, and training curves. The font is embedded (DejaVu Sans Mono, see
//! `apps/assets/DejaVu-LICENSE`), so plots draw on machines without fonts, such as containers.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
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
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FAMILY, 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|x| e(&x))?;
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
        .caption("NLL per epoch (nats per point)", (FAMILY, 20))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5f64..epochs as f64 + 0.5, y)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("NLL")
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
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FAMILY, 13))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
