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

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Result, anyhow};
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

/// A figure drawn to a hidden file beside its path and renamed over it once complete, so that
/// an error or a full disk never leaves a truncated figure under the real name; the hidden
/// file is removed when the figure is not committed.
pub(super) struct Partial {
    pub(super) tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Partial {
    pub(super) fn new(path: &Path) -> Self {
        let name = path
            .file_name()
            .map_or_else(|| "figure.png".into(), |n| n.to_string_lossy().to_string());
        // The extension stays last: plotters picks the image format by it.
        Self {
            tmp: path.with_file_name(format!(".{}.partial.{name}", std::process::id())),
            path: path.to_path_buf(),
            committed: false,
        }
    }

    pub(super) fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| anyhow!("plot {}: {e}", self.path.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
