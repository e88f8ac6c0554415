//! PNG figures with plotters, one kind per file: scatter plots of points (every pair of axes
//! for 3-D) with highlighted points, training curves, ROC curves and score histograms, and
//! multi-panel figures of lines and points. The font is embedded (DejaVu Sans Mono, see
//! `apps/assets/DejaVu-LICENSE`), so plots draw on machines without fonts, such as containers.

mod curves;
mod panels;
mod scatter;
mod scores;

pub use curves::{history_curves, loss_curves, nll_curves};
pub use panels::{Panel, Series, decision_map, histogram_outline, panels};
pub use scatter::{ScatterSet, scatter};
pub use scores::{RocCurve, histograms, roc_curves};

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub(super) static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSansMono.ttf");
pub(super) const FAMILY: &str = "sans-serif";

pub(super) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded plot font did not load; plots will have no text");
        }
    });
}

pub(super) fn err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> anyhow::Error + '_ {
    move |e| anyhow!("plot {}: {e}", path.display())
}

pub(super) type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

pub(super) fn draw_legend<'a, 'b: 'a>(
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

pub(super) fn range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
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

pub(super) const PALETTE: [RGBColor; 10] = [
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

/// Draws a figure into memory and writes it as a PNG to a hidden file beside `path`, renamed
/// over it once complete, so that an error or a full disk never leaves a truncated figure under
/// the real name. The PNG is encoded by `image`, the crate the data loaders already build,
/// rather than by plotters' encoder, which would compile a second, older `image`.
pub(super) fn png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|x| err(path)(&x))?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "figure.png".into(), |n| n.to_string_lossy().to_string());
    let tmp = path.with_file_name(format!(".{}.partial.{name}", std::process::id()));
    let written = image::save_buffer_with_format(
        &tmp,
        &pixels,
        size.0,
        size.1,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(anyhow::Error::from)
    .and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::from));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("plot {}: {e}", path.display()));
    }
    Ok(())
}
