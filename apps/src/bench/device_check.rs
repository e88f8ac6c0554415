//! `bench --check-device`: the flows of the bench, built and perturbed on the CPU, then
//! copied to the selected device and checked there against the CPU: the same log-densities
//! (relative 1e-4), inverse(forward(x)) == x, and a gradient for every parameter. It is the
//! part of flowcore's harness that can differ between backends, run from a prebuilt binary on
//! a machine with a GPU (scripts/gpu-check.sh).

use std::path::Path;

use anyhow::Result;
use burn::prelude::*;
use flowcore::checkpoint::{flow_from_bytes, flow_to_bytes};
use flowcore::testing::{gradient_report, perturb_params};
use flowcore::{ArchitectureConfig, Flow, standard_normal};
use serde::Serialize;

use super::models::{ffjord_moons, glow, lattice_8x8, maf_fedhex, nsf_flashsim, real_nvp};

/// One flow's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceCheck {
    /// The flow.
    pub case: String,
    /// max |log p_device - log p_cpu| / max(1, |log p_cpu|) over the batch.
    pub log_prob_rel: f64,
    /// max |inverse(forward(x)) - x| on the device.
    pub round_trip: f64,
    /// The round trip's bound for this flow.
    pub round_trip_bound: f64,
    /// Parameters without a gradient on the device, by path.
    pub no_gradient: Vec<String>,
    /// Whether every check holds.
    pub pass: bool,
}

const LOG_PROB_REL: f64 = 1e-4;

/// Every flow's check on `device` (the CPU is the reference).
pub fn check_device(device: &Device) -> Result<Vec<DeviceCheck>> {
    let cases: [(&str, ArchitectureConfig, usize, bool, f64); 6] = [
        ("realnvp2d", real_nvp(2, 8, vec![64, 64]), 0, false, 1e-4),
        ("glow16", glow(3, 16, 2, 2, 16), 0, true, 1e-4),
        ("nsf-flashsim", nsf_flashsim(), 14, false, 1e-4),
        ("maf-fedhex", maf_fedhex(), 2, false, 1e-4),
        ("lattice-8x8", lattice_8x8(), 0, false, 1e-4),
        // The solver's own tolerance (1e-5) bounds the round trip, not f32 rounding.
        ("ffjord-moons", ffjord_moons(), 0, false, 1e-3),
    ];
    let cpu = Device::flex();
    let mut out = Vec::new();
    for (case, config, cond_dim, unit, bound) in cases {
        let flow = Flow::seeded(config, 0, &cpu)?;
        let dim = flow.dim();
        let batch = 16;
        let x = |seed: u64, d: &Device| {
            let x = standard_normal(batch, dim, seed, d);
            if unit {
                x.mul_scalar(0.15).add_scalar(0.5).clamp(0.01, 0.99)
            } else {
                x
            }
        };
        let cond = |d: &Device| (cond_dim > 0).then(|| standard_normal(batch, cond_dim, 9, d));
        let flow = flow.initialize(x(1, &cpu), cond(&cpu).as_ref());
        let flow = perturb_params(flow, 0.05, 3);

        // Through a checkpoint, as a model trained elsewhere reaches the device.
        let origin = Path::new(case);
        let checkpoint = flow_to_bytes(&flow, origin, serde_json::Value::Null)?;
        let reference = flow.log_prob(x(2, &cpu), cond(&cpu).as_ref());
        let on_device = flow_from_bytes(&checkpoint, origin, device)?.0;
        let log_p = on_device.log_prob(x(2, device), cond(device).as_ref());
        let reference: Vec<f32> = reference
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let log_p: Vec<f32> = log_p.into_data().try_to_vec::<f32>().unwrap_or_default();
        let log_prob_rel = reference
            .iter()
            .zip(&log_p)
            .map(|(&a, &b)| f64::from((a - b).abs()) / f64::from(a.abs()).max(1.0))
            .fold(if log_p.len() == batch { 0.0 } else { f64::NAN }, f64::max);

        let x_d = x(3, device);
        let c_d = cond(device);
        let z = on_device.encode(x_d.clone(), c_d.as_ref());
        let back = on_device.decode(z, c_d.as_ref());
        let round_trip = (back - x_d).abs().max().into_scalar::<f64>();

        let ad = device.clone().autodiff();
        let trained = flow_from_bytes(&checkpoint, origin, &ad)?.0;
        let loss = trained.log_prob(x(4, &ad), cond(&ad).as_ref()).mean().neg();
        let grads = loss.backward();
        let report = gradient_report(&trained, &grads);
        // None seen would make the check vacuous: say so as a failure.
        let nothing_seen = report
            .is_empty()
            .then(|| "(no trainable parameter on the device)".to_string());
        let no_gradient: Vec<String> = report
            .into_iter()
            .filter(|(_, g)| !g.is_some_and(|g| g.is_finite() && g > 0.0))
            .map(|(path, _)| path)
            .chain(nothing_seen)
            .collect();
        let pass = log_prob_rel <= LOG_PROB_REL && round_trip <= bound && no_gradient.is_empty();
        tracing::info!(case, log_prob_rel, round_trip, pass, "device check");
        out.push(DeviceCheck {
            case: case.into(),
            log_prob_rel,
            round_trip,
            round_trip_bound: bound,
            no_gradient,
            pass,
        });
    }
    Ok(out)
}

/// The checks as a Markdown table.
pub fn format_checks(checks: &[DeviceCheck], device: &str) -> String {
    let mut s = format!(
        "device check on {device} against the CPU (log p relative bound {LOG_PROB_REL:e})\n\n\
         | flow | log p rel. diff | round trip | bound | parameters without gradient | |\n\
         |---|---|---|---|---|---|\n"
    );
    for c in checks {
        s.push_str(&format!(
            "| {} | {:.2e} | {:.2e} | {:.0e} | {} | {} |\n",
            c.case,
            c.log_prob_rel,
            c.round_trip,
            c.round_trip_bound,
            if c.no_gradient.is_empty() {
                "none".to_string()
            } else {
                c.no_gradient.join(", ")
            },
            if c.pass { "pass" } else { "FAIL" }
        ));
    }
    s
}
