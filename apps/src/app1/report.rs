//! Application 1's report: validation NLL against the entropy of the data, the change of
//! variables computed both ways, scatter plots in data and latent space, samples and curves.

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::train::{self, DataSource};
use flowcore::{Bijector, standard_normal};

use super::{Report, RunGroup};
use crate::run::Reporter;
use crate::shared::csv::{axis_names, write_csv};
use crate::shared::infer::to_vec;
use crate::shared::plot::{ScatterSet, nll_curves, scatter};
use crate::shared::points::{PointRun, PointSet};

pub(super) fn report(
    point_run: &PointRun,
    run: &RunGroup,
    points: &mut PointSet,
    r: &mut Reporter,
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
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| lp[a].total_cmp(&lp[b]));
    let lowest: Vec<usize> = order.into_iter().take(run.lowest_density.min(n)).collect();

    let z_samples = standard_normal(n, dim, r.training.seed, &device);
    let x_samples = flow.decode(z_samples.clone(), None);
    let z_points = to_vec(z.into_data());
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
        run,
    })
}
