//! How good a learnt posterior is: against reference posteriors from rejection sampling
//! (posterior MMD, re-simulation error) and in calibration (coverage of central credible
//! intervals); and the report of a run.

use std::time::Instant;

use anyhow::Result;
use flowcore::inn::mmd_imq_host;
use flowdata::batch_rng;
use flowdata::inverse::{JointSample, Simulator, draw, rejection_posterior};
use serde::{Deserialize, Serialize};

use super::data::Normalization;
use super::figures::{calibration_figure, posterior_figure};
use super::{Posterior, Problem, Report, RunGroup};
use crate::run::Reporter;
use crate::shared::plot::history_curves;

/// Kernel widths of the evaluation MMD, on standardised parameters: wider than the training
/// kernels, so that the MMD sees the whole posterior rather than its fine structure.
pub const EVAL_WIDTHS: [f64; 4] = [0.2, 0.5, 1.0, 2.0];

/// Credible levels of the calibration check.
pub const LEVELS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// One test observation's posterior against the reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PosteriorCheck {
    /// The true parameters.
    pub x_true: Vec<f64>,
    /// The observation.
    pub y: Vec<f64>,
    /// Squared MMD between the learnt and the reference posterior (standardised `x`).
    pub mmd: f64,
    /// The same for the prior: the baseline.
    pub prior_mmd: f64,
    /// RMS of `(F(x) - y) / y_std` over the learnt posterior's samples.
    pub resimulation_error: f64,
    /// Reference samples accepted.
    pub reference_accepted: usize,
    /// The reference's acceptance distance (noise-free problems), in units of `y_std`.
    pub reference_tolerance: Option<f64>,
}

/// How good the learnt posteriors are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean posterior MMD to the reference over the test observations.
    pub mmd: f64,
    /// Mean prior MMD to the reference.
    pub prior_mmd: f64,
    /// `mmd / prior_mmd`: below 1 the posterior is closer than the prior.
    pub mmd_ratio: f64,
    /// Mean re-simulation error, in units of `y_std`.
    pub resimulation_error: f64,
    /// The re-simulation error the measurement noise alone causes (0 without noise).
    pub noise_floor: f64,
    /// Mean |coverage - level| over the credible levels.
    pub calibration_error: f64,
    /// `(level, coverage)` of central credible intervals, over parameters and pairs.
    pub coverage: Vec<(f64, f64)>,
    /// Posterior samples drawn per second.
    pub samples_per_sec: f64,
    /// Per test observation.
    pub checks: Vec<PosteriorCheck>,
}

/// The RMS of `(F(x_s) - y) / y_std` over samples `xs` (row-major).
fn resimulation_error(sim: &dyn Simulator, xs: &[f64], y: &[f64], norm: &Normalization) -> f64 {
    let dx = sim.x_dim();
    let mut total = 0.0;
    let mut count = 0usize;
    for x in xs.chunks(dx) {
        for ((f, o), s) in sim.simulate(x).iter().zip(y).zip(&norm.y_std) {
            total += ((f - o) / s).powi(2);
            count += 1;
        }
    }
    (total / count.max(1) as f64).sqrt()
}

/// A test observation's check with the samples it compared, for figures.
pub struct CheckedPosterior {
    /// The check.
    pub check: PosteriorCheck,
    /// The learnt posterior's samples, row-major.
    pub samples: Vec<f64>,
    /// The reference samples, row-major.
    pub reference: Vec<f64>,
}

/// Judge `posterior` against rejection-sampling references and for calibration.
pub fn evaluate(
    problem: Problem,
    run: &RunGroup,
    posterior: &Posterior,
    seed: u64,
) -> Result<(Evaluation, Vec<CheckedPosterior>)> {
    let sim = problem.simulator();
    let sim = sim.as_ref();
    let norm = &posterior.norm;
    let dx = sim.x_dim();
    let eval_seed = seed ^ 0xE7A1;
    let started = Instant::now();
    let joint = JointSample::draw(sim, run.reference_draws.max(1), eval_seed);
    tracing::info!(
        "{} joint draws for the reference posteriors in {:.1} s",
        joint.len(),
        started.elapsed().as_secs_f64()
    );
    let mut rng = batch_rng(eval_seed, 1);
    let mut checks = Vec::new();
    let n = run.posterior_samples.max(2);
    let mut sampling_time = 0.0;
    let mut sampled = 0usize;
    for k in 0..run.test_observations {
        let truth = draw(sim, &mut rng);
        let reference = rejection_posterior(
            sim,
            &joint,
            &truth.y,
            &norm.y_std,
            run.reference_keep.max(2),
            &mut rng,
        );
        if reference.accepted < 10 {
            tracing::warn!(
                "test observation {k}: only {} reference samples were accepted; draw more with \
                 run.reference_draws",
                reference.accepted
            );
        }
        let t = Instant::now();
        let samples = posterior.sample(&truth.y, n, eval_seed.wrapping_add(k as u64));
        sampling_time += t.elapsed().as_secs_f64();
        sampled += n;
        let unit = |x: &[f64]| norm.x_to_unit(x);
        let reference_unit = unit(&reference.x);
        let prior: Vec<f64> = (0..n).flat_map(|_| sim.sample_prior(&mut rng)).collect();
        let check = PosteriorCheck {
            mmd: mmd_imq_host(&unit(&samples), &reference_unit, dx, &EVAL_WIDTHS),
            prior_mmd: mmd_imq_host(&unit(&prior), &reference_unit, dx, &EVAL_WIDTHS),
            resimulation_error: resimulation_error(sim, &samples, &truth.y, norm),
            reference_accepted: reference.accepted,
            reference_tolerance: reference.tolerance,
            x_true: truth.x,
            y: truth.y,
        };
        tracing::info!(
            "test observation {k}: posterior MMD {:.4} (prior {:.4}), re-simulation error {:.4}, \
             {} reference samples",
            check.mmd,
            check.prior_mmd,
            check.resimulation_error,
            check.reference_accepted
        );
        checks.push(CheckedPosterior {
            check,
            samples,
            reference: reference.x,
        });
    }

    // Calibration: the rank of the true value among posterior samples, per parameter.
    let mut inside = vec![0usize; LEVELS.len()];
    let mut total = 0usize;
    let m = run.calibration_samples.max(2);
    for p in 0..run.calibration_pairs {
        let truth = draw(sim, &mut rng);
        let t = Instant::now();
        let samples = posterior.sample(&truth.y, m, eval_seed ^ (p as u64 + 1) << 20);
        sampling_time += t.elapsed().as_secs_f64();
        sampled += m;
        for (d, x_true) in truth.x.iter().enumerate() {
            let below = samples.chunks(dx).filter(|s| s[d] < *x_true).count();
            let u = below as f64 / m as f64;
            for (i, level) in LEVELS.iter().enumerate() {
                if (u - 0.5).abs() <= level / 2.0 {
                    inside[i] += 1;
                }
            }
            total += 1;
        }
    }
    let coverage: Vec<(f64, f64)> = LEVELS
        .iter()
        .zip(&inside)
        .map(|(l, c)| (*l, *c as f64 / total.max(1) as f64))
        .collect();
    let calibration_error =
        coverage.iter().map(|(l, c)| (c - l).abs()).sum::<f64>() / coverage.len() as f64;
    let mean = |f: &dyn Fn(&PosteriorCheck) -> f64| {
        checks.iter().map(|c| f(&c.check)).sum::<f64>() / checks.len().max(1) as f64
    };
    let (mmd, prior_mmd) = (mean(&|c| c.mmd), mean(&|c| c.prior_mmd));
    let sigma = sim.noise_std();
    let noise_floor = if sigma > 0.0 {
        (norm.y_std.iter().map(|s| (sigma / s).powi(2)).sum::<f64>() / norm.y_std.len() as f64)
            .sqrt()
    } else {
        0.0
    };
    Ok((
        Evaluation {
            mmd,
            prior_mmd,
            mmd_ratio: mmd / prior_mmd.max(1e-12),
            resimulation_error: mean(&|c| c.resimulation_error),
            noise_floor,
            calibration_error,
            coverage,
            samples_per_sec: sampled as f64 / sampling_time.max(1e-9),
            checks: checks.iter().map(|c| c.check.clone()).collect(),
        },
        checks,
    ))
}

/// Judge the trained posterior, draw the figures and make the report.
pub(super) fn report(
    problem: Problem,
    run: &RunGroup,
    posterior: &Posterior,
    r: &mut Reporter,
) -> Result<Report> {
    let (evaluation, checks) = evaluate(problem, run, posterior, r.training.seed)?;
    let history = &r.outcome.history;
    let last = history.last();
    let loss = last.map_or_else(|| "loss".to_string(), |e| e.loss.clone());
    let val_loss = last.map_or(f64::NAN, |e| e.val_loss);
    history_curves(
        &r.figure("loss.png"),
        &format!("{} loss per epoch", run.method.name()),
        history,
    )?;
    calibration_figure(&r.figure("calibration.png"), &evaluation)?;
    let sim = problem.simulator();
    for (k, c) in checks.iter().enumerate().take(2) {
        posterior_figure(
            problem,
            sim.as_ref(),
            &r.figure(&format!("posterior_{k}.png")),
            run.method,
            c,
        )?;
    }
    for (k, v) in [
        ("posterior_mmd", evaluation.mmd),
        ("prior_mmd", evaluation.prior_mmd),
        ("mmd_ratio", evaluation.mmd_ratio),
        ("resimulation_error", evaluation.resimulation_error),
        ("calibration_error", evaluation.calibration_error),
        ("posterior_samples_per_sec", evaluation.samples_per_sec),
    ] {
        r.metric(k, v);
    }
    tracing::info!(
        "{}: posterior MMD {:.4} (prior {:.4}, ratio {:.3}), re-simulation error {:.4} \
         (noise floor {:.4}), calibration error {:.4}",
        run.method.name(),
        evaluation.mmd,
        evaluation.prior_mmd,
        evaluation.mmd_ratio,
        evaluation.resimulation_error,
        evaluation.noise_floor,
        evaluation.calibration_error
    );
    Ok(Report {
        problem,
        method: run.method,
        partition: run.partition.clone(),
        val_loss,
        loss,
        evaluation,
        run: r.record(),
    })
}
