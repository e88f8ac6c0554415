//! Application 9's report: the three samplers' observables side by side, the weights'
//! summary, and figures of the training, the magnetisation and the correlator.

use anyhow::Result;
use flowcore::lattice::ReverseKl;

use super::observables::{ChainSummary, Measure, compare};
use super::{Report, RunTheory, sampler};
use crate::run::Reporter;
use crate::shared::plot::{Panel, Series, histogram_outline, panels};

/// Observables whose pulls decide whether flow + Metropolis agrees with HMC (the effective
/// masses are ratios of small numbers, shown but not judged).
pub fn judged(name: &str) -> bool {
    !name.starts_with("m_eff")
}

pub(super) fn report(
    theory: &RunTheory,
    objective: &ReverseKl,
    r: &mut Reporter,
) -> Result<Report> {
    let measure = Measure::new(objective.action());
    let device = crate::run::device();
    let seed = theory.seed.wrapping_add(1);
    let draws = sampler::draw(
        &r.flow,
        objective,
        &theory.proposal.proposal()?,
        &measure,
        theory.mcmc_samples,
        seed,
        &device,
    );
    let (plain, exact, weights) = draws.summaries(&measure, seed);
    let (hmc, hmc_m) = sampler::hmc_baseline(objective, &measure, &theory.hmc)?;
    let comparison = compare(&exact, &hmc);
    let max_abs_pull = comparison
        .iter()
        .filter(|c| judged(&c.name) && c.pull.is_finite())
        .map(|c| c.pull.abs())
        .fold(0.0, f64::max);
    tracing::info!(
        "ESS {:.4}, acceptance {:.3}, max |pull| against HMC {:.2}",
        weights.ess,
        weights.acceptance,
        max_abs_pull
    );
    let (flow_m, chain_m) = draws.magnetisation(seed);
    let path = r.figure("training.png");
    training_figure(&path, &r.outcome.history)?;
    let path = r.figure("magnetisation.png");
    magnetisation_figure(
        &path,
        &[
            ("flow", &flow_m),
            ("flow + Metropolis", &chain_m),
            ("HMC", &hmc_m),
        ],
    )?;
    if measure.time() > 1 {
        let path = r.figure("correlator.png");
        correlator_figure(&path, &[&plain, &exact, &hmc])?;
    }
    r.metric("ess", weights.ess);
    r.metric("acceptance", weights.acceptance);
    r.metric("log_z", weights.log_z.0);
    r.metric("max_abs_pull", max_abs_pull);
    Ok(Report {
        lattice: theory.lattice.clone(),
        couplings: theory.couplings,
        weights,
        flow: plain,
        flow_metropolis: exact,
        hmc,
        comparison,
        max_abs_pull,
        run: r.record(),
    })
}

fn part(e: &flowcore::train::EpochStats, key: &str) -> Option<f64> {
    e.val_parts.iter().find(|(k, _)| k == key).map(|p| p.1)
}

/// Loss per epoch; ESS and Metropolis acceptance per epoch.
fn training_figure(path: &std::path::Path, history: &[flowcore::train::EpochStats]) -> Result<()> {
    let series = |f: &dyn Fn(&flowcore::train::EpochStats) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|e| f(e).filter(|v| v.is_finite()).map(|v| (e.epoch as f64, v)))
            .collect()
    };
    let mut lines = vec![
        Series::new(vec![series(&|e| Some(e.train_loss))], Some(0)).label("train"),
        Series::new(vec![series(&|e| Some(e.val_loss))], Some(1)).label("validation"),
    ];
    // The bound the loss reaches only when the flow is the target: -log Z, as estimated from
    // the last epoch's weights.
    if let (Some(first), Some(last)) = (history.first(), history.last())
        && let Some(log_z) = part(last, "log_z").filter(|v| v.is_finite())
    {
        let line = vec![(first.epoch as f64, -log_z), (last.epoch as f64, -log_z)];
        lines.push(Series::new(vec![line], None).label("-log Z (estimate)"));
    }
    let mut loss = Panel::new("reverse KL - log Z = E[log q + S]", "epoch", "loss", lines);
    // The first epoch's mean training loss starts far above the rest (from the identity
    // flow): the axis shows the validation curve, the later training epochs and the bound.
    let first = history.first().map_or(0, |e| e.epoch) as f64;
    let shown = loss.series.iter().enumerate().flat_map(|(i, s)| {
        s.lines
            .iter()
            .flatten()
            .filter(move |p| i != 0 || history.len() < 2 || p.0 > first)
            .map(|p| p.1)
    });
    let (lo, hi) = shown.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if lo < hi {
        let pad = 0.1 * (hi - lo);
        loss.y_range = Some(lo - pad..hi + pad);
    }
    let mut quality = Panel::new(
        "effective sample size and Metropolis acceptance",
        "epoch",
        "fraction",
        vec![
            Series::new(vec![series(&|e| part(e, "ess"))], Some(2)).label("ESS"),
            Series::new(vec![series(&|e| part(e, "acceptance"))], Some(3)).label("acceptance"),
        ],
    );
    quality.y_range = Some(0.0..1.05);
    panels(
        path,
        "training against the action",
        &[loss, quality],
        2,
        (560, 420),
    )
}

/// Histograms of the magnetisation per site from each sampler.
fn magnetisation_figure(path: &std::path::Path, samples: &[(&str, &[f64])]) -> Result<()> {
    let all = samples.iter().flat_map(|(_, s)| s.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        if v.is_finite() {
            (a.min(v), b.max(v))
        } else {
            (a, b)
        }
    });
    let (lo, hi) = if lo < hi { (lo, hi) } else { (-1.0, 1.0) };
    let series = samples
        .iter()
        .enumerate()
        .map(|(i, (name, s))| {
            Series::new(vec![histogram_outline(s, lo..hi, 60)], Some(i)).label(*name)
        })
        .collect();
    let panel = Panel::new("magnetisation per site M", "M", "density", series);
    panels(
        path,
        "M from the flow, flow + Metropolis and HMC",
        &[panel],
        1,
        (720, 480),
    )
}

/// G(t) and its effective mass from each sampler, with error bars.
fn correlator_figure(path: &std::path::Path, chains: &[&ChainSummary]) -> Result<()> {
    let with_prefix = |c: &ChainSummary, prefix: &str| -> Vec<(f64, f64, f64)> {
        c.estimates
            .iter()
            .filter_map(|e| {
                let t = e
                    .name
                    .strip_prefix(prefix)?
                    .strip_suffix(')')?
                    .parse::<f64>()
                    .ok()?;
                (e.value.is_finite()).then_some((t, e.value, e.error))
            })
            .collect()
    };
    let panel = |prefix: &str, title: &str| {
        let series = chains
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                let pts = with_prefix(c, prefix);
                // A small offset per sampler, so the error bars do not hide each other.
                let dx = (i as f64 - 1.0) * 0.08;
                let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0 + dx, p.1)).collect();
                let bars: Vec<Vec<(f64, f64)>> = pts
                    .iter()
                    .map(|p| vec![(p.0 + dx, p.1 - p.2), (p.0 + dx, p.1 + p.2)])
                    .collect();
                [
                    Series::new(vec![line], Some(i)).label(c.sampler.clone()),
                    Series::new(bars, Some(i)),
                ]
            })
            .collect();
        Panel::new(title, "t", prefix.trim_end_matches('('), series)
    };
    panels(
        path,
        "zero-momentum correlator",
        &[
            panel("G(", "G(t), connected"),
            panel("m_eff(", "effective mass"),
        ],
        2,
        (560, 420),
    )
}
