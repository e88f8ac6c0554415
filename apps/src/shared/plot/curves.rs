//! Training curves: train and validation loss per epoch.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::{FAMILY, draw_legend, err, png, range, register_font};

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
    png(path, (720, 480), |root| {
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let epochs = train.len().max(val.len()).max(1);
        let all = train
            .iter()
            .chain(val)
            .copied()
            .chain(reference.map(|r| r.0));
        let y = range(all);
        let mut chart = ChartBuilder::on(root)
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
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(line(val), orange.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label("validation")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], orange.stroke_width(2))
            });
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
        Ok(())
    })
}

// Matplotlib's tab10, reordered so the first three (blue, red, green) contrast most.
