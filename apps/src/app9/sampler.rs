//! Flow samples of the field: plain, and made exact by an independence Metropolis chain over
//! them; and the Hybrid Monte Carlo baseline, all summarised the same way.

use anyhow::Result;
use burn::prelude::*;
use flowcore::Flow;
use flowcore::lattice::{
    Proposal, ReverseKl, effective_sample_size, independence_metropolis, log_partition,
};
use serde::{Deserialize, Serialize};

use super::hmc::{self, HmcConfig};
use super::observables::{ChainSummary, Measure};

/// Draws of the flow: the measurements of each proposal and its log-weight.
pub struct FlowDraws {
    /// The primary quantities of each proposal ([`Measure::measure`]).
    pub rows: Vec<Vec<f64>>,
    /// `log w = -S - log q` of each.
    pub log_w: Vec<f64>,
}

/// What the importance weights of a set of flow samples say.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WeightSummary {
    /// Proposals.
    pub samples: usize,
    /// Normalised effective sample size.
    pub ess: f64,
    /// Estimate of log Z and its standard error.
    pub log_z: (f64, f64),
    /// Acceptance of the independence Metropolis chain over them.
    pub acceptance: f64,
}

/// `n` proposals of `flow` drawn as `proposal` says, from `seed` in batches.
pub fn draw(
    flow: &Flow,
    objective: &ReverseKl,
    proposal: &Proposal,
    measure: &Measure,
    n: usize,
    seed: u64,
    device: &Device,
) -> FlowDraws {
    let sites = objective.action().sites();
    let (mut rows, mut log_w) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, start) in (0..n).step_by(4096).enumerate() {
        let m = 4096.min(n - start);
        let (phi, lw) = proposal.draw(flow, objective, m, seed.wrapping_add(i as u64), device);
        let phi = crate::shared::infer::to_vec(phi.into_data());
        for j in 0..m {
            let field: Vec<f64> = phi[j * sites..(j + 1) * sites]
                .iter()
                .map(|&x| f64::from(x))
                .collect();
            rows.push(measure.measure(&field));
        }
        log_w.extend(lw);
    }
    FlowDraws { rows, log_w }
}

impl FlowDraws {
    /// The plain flow samples (biased by the flow's error) and the exact chain over them.
    pub fn summaries(
        &self,
        measure: &Measure,
        seed: u64,
    ) -> (ChainSummary, ChainSummary, WeightSummary) {
        let (chain, acceptance) = independence_metropolis(&self.log_w, seed);
        let chain_rows: Vec<Vec<f64>> = chain.iter().map(|&i| self.rows[i].clone()).collect();
        let plain = ChainSummary {
            sampler: "flow".into(),
            samples: self.rows.len(),
            acceptance: 1.0,
            tau_int: measure.autocorrelation(&self.rows),
            estimates: measure.estimates(&self.rows),
        };
        let exact = ChainSummary {
            sampler: "flow+metropolis".into(),
            samples: chain_rows.len(),
            acceptance,
            tau_int: measure.autocorrelation(&chain_rows),
            estimates: measure.estimates(&chain_rows),
        };
        let weights = WeightSummary {
            samples: self.log_w.len(),
            ess: effective_sample_size(&self.log_w),
            log_z: log_partition(&self.log_w),
            acceptance,
        };
        (plain, exact, weights)
    }

    /// The magnetisation of the proposals, and of the chain's states in order.
    pub fn magnetisation(&self, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let (chain, _) = independence_metropolis(&self.log_w, seed);
        (
            self.rows.iter().map(|r| r[0]).collect(),
            chain.iter().map(|&i| self.rows[i][0]).collect(),
        )
    }
}

/// The Hybrid Monte Carlo baseline: its summary and the magnetisation of its states.
pub fn hmc_baseline(
    objective: &ReverseKl,
    measure: &Measure,
    config: &HmcConfig,
) -> Result<(ChainSummary, Vec<f64>)> {
    let mut rows = Vec::with_capacity(config.trajectories);
    let acceptance = hmc::run(objective.action(), config, |phi| {
        rows.push(measure.measure(phi))
    })?;
    let summary = ChainSummary {
        sampler: "hmc".into(),
        samples: rows.len(),
        acceptance,
        tau_int: measure.autocorrelation(&rows),
        estimates: measure.estimates(&rows),
    };
    Ok((summary, rows.iter().map(|r| r[0]).collect()))
}
