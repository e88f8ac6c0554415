//! The figures of the inverse problems: calibration, and a posterior against its reference in
//! the problem's own terms (arms, bed profiles, marginals and re-simulated traces).

use std::path::Path;

use anyhow::Result;
use flowdata::inverse::{Glacier, RobotArm, Seismic, Simulator};

use super::evaluation::{CheckedPosterior, Evaluation};
use super::{Method, Problem};
use crate::shared::plot::{Panel, Series, histogram_outline, panels};

pub(super) fn calibration_figure(path: &Path, e: &Evaluation) -> Result<()> {
    let diagonal = vec![vec![(0.0, 0.0), (1.0, 1.0)]];
    let measured: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(e.coverage.iter().copied())
        .chain(std::iter::once((1.0, 1.0)))
        .collect();
    let mut panel = Panel::new(
        format!("calibration error {:.3}", e.calibration_error),
        "credible level",
        "coverage",
        vec![
            Series::new(diagonal, None).faint(0.5).label("ideal"),
            Series::new(vec![measured.clone()], Some(0)).label("measured"),
            Series::new(vec![measured], Some(0)).markers(),
        ],
    );
    panel.x_range = Some(0.0..1.0);
    panel.y_range = Some(0.0..1.0);
    panels(
        path,
        "coverage of central credible intervals",
        &[panel],
        1,
        (560, 520),
    )
}

pub(super) fn posterior_figure(
    problem: Problem,
    sim: &dyn Simulator,
    path: &Path,
    method: Method,
    checked: &CheckedPosterior,
) -> Result<()> {
    let (check, samples, reference) = (&checked.check, &checked.samples, &checked.reference);
    let dx = sim.x_dim();
    let shown =
        |xs: &[f64]| -> Vec<Vec<f64>> { xs.chunks(dx).take(300).map(<[f64]>::to_vec).collect() };
    let caption = format!(
        "{}: {} posterior (MMD {:.4}) and the rejection-sampling reference",
        problem.title(),
        method.name(),
        check.mmd
    );
    match problem {
        Problem::RobotArm => {
            let arms = |xs: &[f64], color| {
                let lines = shown(xs)
                    .iter()
                    .map(|x| RobotArm::joints(x).to_vec())
                    .collect();
                Series::new(lines, Some(color)).faint(0.15)
            };
            let target = Series::new(vec![vec![(check.y[0], check.y[1])]], None)
                .markers()
                .label("observed end point");
            let truth =
                Series::new(vec![RobotArm::joints(&check.x_true).to_vec()], None).label("true arm");
            let mut figure = vec![
                Panel::new(
                    format!("{} samples", method.name()),
                    "horizontal",
                    "vertical",
                    vec![arms(samples, 0).label("sampled arms"), truth, target],
                ),
                Panel::new(
                    "rejection sampling",
                    "horizontal",
                    "vertical",
                    vec![
                        arms(reference, 2).label("accepted arms"),
                        Series::new(vec![vec![(check.y[0], check.y[1])]], None).markers(),
                    ],
                ),
            ];
            Panel::share_ranges(&mut figure);
            panels(path, &caption, &figure, 2, (560, 560))
        }
        Problem::Glacier => {
            let glacier = Glacier::default();
            let half = 0.5 * glacier.width;
            let profile = |x: &[f64]| -> Vec<(f64, f64)> {
                (0..=80)
                    .map(|i| {
                        let u = -half + glacier.width * i as f64 / 80.0;
                        (u, -glacier.depth_at(x, u))
                    })
                    .collect()
            };
            let bundle = |xs: &[f64], color| {
                Series::new(shown(xs).iter().map(|x| profile(x)).collect(), Some(color)).faint(0.12)
            };
            let truth = || Series::new(vec![profile(&check.x_true)], None).label("true bed");
            let stations = || {
                Series::new(
                    vec![glacier.stations.iter().map(|s| (*s, 0.0)).collect()],
                    Some(1),
                )
                .markers()
                .label("stations")
            };
            let mut figure = vec![
                Panel::new(
                    format!("{} samples", method.name()),
                    "across the valley (m)",
                    "bed below the ice surface (m)",
                    vec![
                        bundle(samples, 0).label("sampled beds"),
                        truth(),
                        stations(),
                    ],
                ),
                Panel::new(
                    "rejection sampling",
                    "across the valley (m)",
                    "bed below the ice surface (m)",
                    vec![
                        bundle(reference, 2).label("accepted beds"),
                        truth(),
                        stations(),
                    ],
                ),
            ];
            Panel::share_ranges(&mut figure);
            panels(path, &caption, &figure, 2, (640, 480))
        }
        Problem::Seismic => {
            let names = sim.x_names();
            let mut figure: Vec<Panel> = (0..dx)
                .map(|d| {
                    let column = |xs: &[f64]| -> Vec<f64> { xs.chunks(dx).map(|r| r[d]).collect() };
                    let (a, b) = (column(samples), column(reference));
                    let lo = a.iter().chain(&b).copied().fold(f64::INFINITY, f64::min);
                    let hi = a
                        .iter()
                        .chain(&b)
                        .copied()
                        .fold(f64::NEG_INFINITY, f64::max);
                    let range = lo..hi.max(lo + 1e-9);
                    let top = |h: &[(f64, f64)]| h.iter().map(|p| p.1).fold(0.0, f64::max);
                    let (ha, hb) = (
                        histogram_outline(&a, range.clone(), 30),
                        histogram_outline(&b, range.clone(), 30),
                    );
                    let peak = top(&ha).max(top(&hb));
                    Panel::new(
                        names[d].clone(),
                        &names[d],
                        "density",
                        vec![
                            Series::new(vec![ha], Some(0)).label(method.name()),
                            Series::new(vec![hb], Some(2)).label("rejection"),
                            Series::new(
                                vec![vec![(check.x_true[d], 0.0), (check.x_true[d], peak)]],
                                None,
                            )
                            .label("true"),
                        ],
                    )
                })
                .collect();
            let seismic = Seismic::default();
            let times = seismic.times();
            let traces: Vec<Vec<(f64, f64)>> = shown(samples)
                .iter()
                .take(100)
                .map(|x| times.iter().copied().zip(sim.simulate(x)).collect())
                .collect();
            figure.push(Panel::new(
                "re-simulated traces",
                "time (s)",
                "amplitude",
                vec![
                    Series::new(traces, Some(0))
                        .faint(0.1)
                        .label("from samples"),
                    Series::new(
                        vec![times.iter().copied().zip(check.y.iter().copied()).collect()],
                        None,
                    )
                    .markers()
                    .label("observed"),
                ],
            ));
            panels(path, &caption, &figure, 3, (480, 360))
        }
    }
}
