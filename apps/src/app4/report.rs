//! Application 4's report: accuracy, confusion and calibration, the decision regions of 2-D
//! data, and class-conditional samples, with whether they land in their own cluster.

use anyhow::Result;
use flowcore::classify::Classifier;
use flowcore::train::DataSource;

use super::{Report, RunGroup};
use crate::run::Reporter;
use crate::shared::classify::{Mode, class_log_probs, metrics, predictions};
use crate::shared::infer::to_vec;
use crate::shared::plot::{Panel, Series, decision_map, history_curves, panels};
use crate::shared::points::{PointRun, PointSet};

pub(super) fn report(
    point_run: &PointRun,
    run: &RunGroup,
    mode: Mode,
    data: &PointSet,
    classifier: &Classifier,
    r: &mut Reporter,
) -> Result<Report> {
    let device = crate::run::device();
    let flow = r.flow.clone();
    let classes = data.classes();
    let k = classes.len();
    let dim = data.dim();
    let (val_x, val_y) = data.labelled_validation();
    let lp = class_log_probs(classifier, &flow, &val_x, dim, &device);
    let m = metrics(&lp, &val_y, &classes);

    // Class-conditional samples, and for toy mixtures whether they land in their cluster.
    let per_class = run.samples_per_class.max(1);
    let mut samples: Vec<(Vec<f32>, usize)> = Vec::new();
    for c in 0..k {
        if let Some(x) = classifier.sample_class(
            &flow,
            c,
            k,
            per_class,
            1.0,
            r.training.seed + c as u64,
            &device,
        ) {
            samples.push((to_vec(x.into_data()), c));
        }
    }
    let in_cluster = match data.toy() {
        Some(toy) if toy.class_centre(0).is_some() => {
            let centres: Vec<Vec<f64>> = (0..k).filter_map(|c| toy.class_centre(c)).collect();
            let mut hits = 0usize;
            let mut total = 0usize;
            for (xs, c) in &samples {
                for p in xs.chunks(dim) {
                    let nearest = centres
                        .iter()
                        .enumerate()
                        .map(|(j, ctr)| {
                            let d: f64 = ctr
                                .iter()
                                .zip(p)
                                .map(|(a, b)| (a - f64::from(*b)).powi(2))
                                .sum();
                            (j, d)
                        })
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .map_or(usize::MAX, |(j, _)| j);
                    hits += usize::from(nearest == *c);
                    total += 1;
                }
            }
            Some(hits as f64 / total.max(1) as f64)
        }
        _ => None,
    };

    let shown = point_run.plot_points.min(val_y.len());
    let points: Vec<(f64, f64, usize)> = val_x
        .chunks(dim)
        .zip(&val_y)
        .take(shown)
        .map(|(p, &c)| (f64::from(p[0]), f64::from(p[1]), c))
        .collect();
    if dim == 2 {
        let (lo, hi) = points.iter().fold(
            ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]),
            |(lo, hi), p| {
                (
                    [lo[0].min(p.0), lo[1].min(p.1)],
                    [hi[0].max(p.0), hi[1].max(p.1)],
                )
            },
        );
        let pad = |a: f64, b: f64| 0.1 * (b - a).max(1e-3);
        let (xr, yr) = (
            lo[0] - pad(lo[0], hi[0])..hi[0] + pad(lo[0], hi[0]),
            lo[1] - pad(lo[1], hi[1])..hi[1] + pad(lo[1], hi[1]),
        );
        let n = 120;
        let grid: Vec<f32> = (0..n * n)
            .flat_map(|i| {
                let (cx, cy) = (i % n, i / n);
                [
                    (xr.start + (cx as f64 + 0.5) * (xr.end - xr.start) / n as f64) as f32,
                    (yr.start + (cy as f64 + 0.5) * (yr.end - yr.start) / n as f64) as f32,
                ]
            })
            .collect();
        let cells = predictions(&class_log_probs(classifier, &flow, &grid, 2, &device), k);
        decision_map(
            &r.figure("decision_regions.png"),
            &format!(
                "{}: decision regions ({}), accuracy {:.3}",
                data.name(),
                mode.name(),
                m.accuracy
            ),
            xr,
            yr,
            (n, n),
            &cells,
            &points,
            &classes,
        )?;
    }
    let series: Vec<Series> = samples
        .iter()
        .map(|(xs, c)| {
            Series::new(
                vec![
                    xs.chunks(dim)
                        .map(|p| (f64::from(p[0]), f64::from(p[1])))
                        .collect(),
                ],
                Some(*c),
            )
            .markers()
            .faint(0.6)
            .label(classes[*c].clone())
        })
        .collect();
    let mut figure = vec![
        Panel::new(
            "validation data",
            "x0",
            "x1",
            (0..k)
                .map(|c| {
                    Series::new(
                        vec![
                            points
                                .iter()
                                .filter(|p| p.2 == c)
                                .map(|p| (p.0, p.1))
                                .collect(),
                        ],
                        Some(c),
                    )
                    .markers()
                    .faint(0.6)
                })
                .collect(),
        ),
        Panel::new("class-conditional samples", "x0", "x1", series),
    ];
    Panel::share_ranges(&mut figure);
    panels(
        &r.figure("class_samples.png"),
        &format!("{}: data and samples per class", data.name()),
        &figure,
        2,
        (560, 540),
    )?;
    history_curves(&r.figure("loss.png"), "loss per epoch", &r.outcome.history)?;
    r.metric("val_accuracy", m.accuracy);
    r.metric(
        "val_expected_calibration_error",
        m.expected_calibration_error,
    );
    if let Some(f) = in_cluster {
        r.metric("samples_in_their_cluster", f);
    }
    tracing::info!(
        "validation accuracy {:.4}, expected calibration error {:.4}{}",
        m.accuracy,
        m.expected_calibration_error,
        in_cluster.map_or(String::new(), |f| format!(
            "; {:.1}% of class samples in their cluster",
            100.0 * f
        ))
    );
    Ok(Report {
        dataset: data.name(),
        mode,
        dim,
        metrics: m,
        samples_in_their_cluster: in_cluster,
        run: r.record(),
    })
}
