//! Figures of outlier scores: ROC curves and per-folder histograms.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::{FAMILY, PALETTE, draw_legend, err, png, range, register_font};

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
    png(path, (560, 560), |root| {
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(root)
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
        Ok(())
    })
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
    png(path, (720, 440), |root| {
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(root)
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
        Ok(())
    })
}
