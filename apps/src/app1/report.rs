//! Application 1's report: validation NLL against the entropy of the data, the change of
//! variables computed both ways, scatter plots in data and latent space, samples and curves.

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::ode::OdeCounts;
use flowcore::train::{self, DataSource};
use flowcore::{Bijector, Flow, standard_normal};
use flowdata::Toy;

use super::{MoonsAnswers, OdeCost, Report, RunGroup};
use crate::run::Reporter;
use crate::shared::csv::{axis_names, write_csv};
use crate::shared::infer::{log_prob_rows, to_vec};
use crate::shared::normality::normality;
use crate::shared::plot::{ScatterSet, nll_curves, scatter};
use crate::shared::points::{PointRun, PointSet};

pub(super) fn report(
    point_run: &PointRun,
    run: &RunGroup,
    points: &mut PointSet,
    r: &mut Reporter,
    ode_start: &OdeCounts,
) -> Result<Report> {
    let dim = points.dim();
    let device = crate::run::device();
    let flow = r.flow.clone();
    let validation = points.validation().map_err(anyhow::Error::msg)?.x;
    let val_nll = train::mean_nll(&flow, &validation, dim, &device);
    let n = point_run.plot_points.min(validation.len() / dim).max(1);
    let shown = &validation[..n * dim];
    let x = Tensor::<2>::from_data(TensorData::new(shown.to_vec(), [n, dim]), &device);

    // Change of variables, two ways: the forward pass's log-det at x, and the inverse pass's
    // log-det at z = f(x), which must be its negative.
    let (z, logdet_fwd) = flow.forward(x.clone(), None);
    let lp_forward = flow.base_log_prob(z.clone()) + logdet_fwd;
    let (x_back, logdet_inv) = flow.bijector().inverse(z.clone(), None);
    let lp_inverse = flow.base_log_prob(z.clone()) - logdet_inv;
    let cov_diff = (lp_forward.clone() - lp_inverse)
        .abs()
        .max()
        .into_scalar::<f64>();
    let round_trip = (x_back - x).abs().max().into_scalar::<f64>();
    let lp = to_vec(lp_forward.into_data());
    let ode = ode_cost(&OdeCounts::now().since(ode_start));
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| lp[a].total_cmp(&lp[b]));
    let lowest: Vec<usize> = order.into_iter().take(run.lowest_density.min(n)).collect();

    let z_samples = standard_normal(n, dim, r.training.seed, &device);
    let x_samples = flow.decode(z_samples.clone(), None);
    let z_points = to_vec(z.into_data());
    let latent_normality = normality(&z_points, dim);
    let moons = moons_answers(points.toy(), &flow);
    let z_samples = to_vec(z_samples.into_data());
    let x_samples = to_vec(x_samples.into_data());
    let samples_csv = r.path("samples.csv");
    write_csv(&samples_csv, &x_samples, dim, &axis_names(dim, "x"), None)?;
    r.artifact(&samples_csv, None);

    let xs = axis_names(dim, "x");
    let zs = axis_names(dim, "z");
    let label = format!("{} lowest log p(x)", lowest.len());
    let name = points.name();
    let set = |values, highlight, axes| ScatterSet {
        values,
        dim,
        highlight,
        highlight_label: &label,
        axes,
    };
    let figures = [
        (
            "data.png",
            format!("{name}: validation points, data space"),
            set(shown, &lowest, &xs),
        ),
        (
            "latent.png",
            format!("{name}: the same points mapped to latent space, z = f(x)"),
            set(&z_points, &lowest, &zs),
        ),
        (
            "samples_latent.png",
            "samples in latent space, z ~ N(0, I)".to_string(),
            set(&z_samples, &[], &zs),
        ),
        (
            "samples_data.png",
            format!("{name}: samples in data space, x = f^-1(z)"),
            set(&x_samples, &[], &xs),
        ),
    ];
    for (file, caption, scatter_set) in &figures {
        scatter(&r.figure(file), caption, scatter_set)?;
    }
    let entropy = points.entropy();
    let history = &r.outcome.history;
    let train_curve: Vec<f64> = history.iter().map(|e| e.train_loss).collect();
    let val_curve: Vec<f64> = history.iter().map(|e| e.val_loss).collect();
    nll_curves(
        &r.figure("nll.png"),
        &train_curve,
        &val_curve,
        entropy.map(|h| (h, "entropy of the data")),
    )?;

    r.metric("final_val_nll", val_nll);
    r.metric("change_of_variables_max_abs_diff", cov_diff);
    if let Some(h) = entropy {
        r.metric("gap_to_entropy", val_nll - h);
    }
    r.metric("latent_ks_max", latent_normality.ks_max);
    if let Some(m) = &moons {
        r.metric("moons_log_p_at_0_05", m.log_p_at_0_05);
        tracing::info!(
            "moons: log p(0, 0.5) = {:.4} (the generator's {:.4}); z = (-0.1, 0.6) lands at \
             ({:.4}, {:.4})",
            m.log_p_at_0_05,
            m.true_log_p_at_0_05,
            m.latent_m01_06_in_data[0],
            m.latent_m01_06_in_data[1]
        );
    }
    if let Some(c) = &ode {
        r.metric("ode_nfe_per_solve", c.nfe_per_solve);
        tracing::info!(
            "continuous layers: {} solves, {:.1} evaluations and {:.1} steps per solve",
            c.solves,
            c.nfe_per_solve,
            c.steps_per_solve
        );
    }
    tracing::info!(
        "latent normality: KS {:.4} (5% critical {:.4}), max |mean| {:.3}, max |cov - I| {:.3}",
        latent_normality.ks_max,
        latent_normality.ks_critical,
        latent_normality.max_abs_mean,
        latent_normality.max_abs_cov_error
    );
    let run = r.record();
    tracing::info!(
        "validation NLL {val_nll:.4} nats{}; change of variables max |diff| {cov_diff:.2e}; \
         {:.1} steps/s",
        entropy.map_or(String::new(), |h| format!(
            " (entropy {h:.4}, gap {:+.4})",
            val_nll - h
        )),
        run.steps_per_sec
    );
    Ok(Report {
        dataset: name,
        dim,
        entropy,
        val_nll,
        val_bits_per_dim: train::bits_per_dim(val_nll, dim),
        gap_to_entropy: entropy.map(|h| val_nll - h),
        change_of_variables_max_abs_diff: cov_diff,
        round_trip_max_abs_err: round_trip,
        latent_normality,
        moons,
        ode,
        run,
    })
}

fn moons_answers(toy: Option<&Toy>, flow: &Flow) -> Option<MoonsAnswers> {
    let toy = toy.filter(|t| matches!(t, Toy::Moons { .. }))?;
    let device = crate::run::device();
    let log_p = f64::from(log_prob_rows(flow, &[0.0, 0.5], 2, &device)[0]);
    let z = Tensor::<2>::from_data(TensorData::new(vec![-0.1f32, 0.6], [1, 2]), &device);
    let x = to_vec(flow.decode(z, None).into_data());
    Some(MoonsAnswers {
        log_p_at_0_05: log_p,
        true_log_p_at_0_05: toy.log_density(&[0.0, 0.5])?,
        latent_m01_06_in_data: x.iter().map(|&v| f64::from(v)).collect(),
    })
}

fn ode_cost(c: &OdeCounts) -> Option<OdeCost> {
    (c.solves > 0).then(|| OdeCost {
        solves: c.solves,
        nfe_per_solve: c.nfe as f64 / c.solves as f64,
        steps_per_solve: c.steps as f64 / c.solves as f64,
    })
}
