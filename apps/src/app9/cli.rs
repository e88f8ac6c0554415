//! Application 9's command line: `train`, `mcmc`, `hmc` and `observables`.

use std::fmt::Write;

use anyhow::Result;
use clap::Subcommand;
use flowcore::train::Collective;

use super::observables::{ChainSummary, compare, comparison_table};
use super::report::judged;
use super::{APP, ProposalGroup, TrainSummary, hmc, mcmc, train_ranked};
use crate::run::cli::{App, ConfigFlags, OutArg, RunArg};
use crate::run::{AppInfo, TrainOptions};

/// Application 9 as its binary runs it.
pub struct App9;

/// `train` takes the common flags only; the theory is `--set theory.KEY=VALUE`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TheoryFlags {
    /// The lattice, e.g. `8x8` (theory.lattice).
    #[arg(long)]
    pub lattice: Option<String>,
}

impl ConfigFlags for TheoryFlags {
    fn sets(self) -> Vec<String> {
        self.lattice
            .map(|l| {
                let dims: Vec<&str> = l.split('x').collect();
                vec![format!("theory.lattice=[{}]", dims.join(","))]
            })
            .unwrap_or_default()
    }
}

/// The proposals, over the run's `[proposal]`.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct ProposalFlags {
    /// Propose phi or -phi with equal probability (proposal.symmetric).
    #[arg(long)]
    pub symmetric: Option<bool>,
    /// The weight of the wide component of the proposals' base (proposal.wide_fraction).
    #[arg(long)]
    pub wide_fraction: Option<f64>,
    /// Its standard deviation per site (proposal.wide_scale).
    #[arg(long)]
    pub wide_scale: Option<f64>,
}

impl ProposalFlags {
    /// The run's `[proposal]` with these flags over it; `None` when no flag is given.
    fn resolve(self, run: &std::path::Path) -> Result<Option<ProposalGroup>> {
        if self.symmetric.is_none() && self.wide_fraction.is_none() && self.wide_scale.is_none() {
            return Ok(None);
        }
        let mut group = super::RunTheory::load(run)?.proposal;
        group.symmetric = self.symmetric.unwrap_or(group.symmetric);
        group.wide_fraction = self.wide_fraction.unwrap_or(group.wide_fraction);
        group.wide_scale = self.wide_scale.unwrap_or(group.wide_scale);
        Ok(Some(group))
    }
}

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Flow + Metropolis: N flow proposals, the independence Metropolis chain over them, its
    /// acceptance, autocorrelation times and observables (JSON).
    Mcmc {
        #[command(flatten)]
        run: RunArg,
        /// Proposals (default: the run's run.mcmc_samples).
        #[arg(long)]
        n: Option<usize>,
        /// Seed of the proposals and the chain.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        proposal: ProposalFlags,
        #[command(flatten)]
        out: OutArg,
    },
    /// The Hybrid Monte Carlo baseline of the run's theory (JSON).
    Hmc {
        #[command(flatten)]
        run: RunArg,
        /// Trajectories measured (default: the run's hmc.trajectories).
        #[arg(long)]
        n: Option<usize>,
        /// Seed (default: the run's hmc.seed).
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        out: OutArg,
    },
    /// Flow + Metropolis against HMC, observable by observable, with pulls (Markdown).
    Observables {
        #[command(flatten)]
        run: RunArg,
        /// Flow proposals (default: the run's run.mcmc_samples).
        #[arg(long)]
        n: Option<usize>,
        /// Seed of the flow chain.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        proposal: ProposalFlags,
        #[command(flatten)]
        out: OutArg,
    },
}

impl App for App9 {
    type Flags = TheoryFlags;
    type Command = Command;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn train(&self, opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<String>> {
        Ok(train_ranked(opts, ranks)?.as_ref().map(summary))
    }

    fn command(&self, command: Command) -> Result<()> {
        match command {
            Command::Mcmc {
                run,
                n,
                seed,
                proposal,
                out,
            } => {
                let n = proposals(&run.run, n)?;
                let proposal = proposal.resolve(&run.run)?;
                let (weights, plain, exact) = mcmc(&run.run, n, seed, proposal)?;
                let value = serde_json::json!({
                    "weights": weights,
                    "flow": plain,
                    "flow_metropolis": exact,
                });
                out.write(&(serde_json::to_string_pretty(&value)? + "\n"))
            }
            Command::Hmc { run, n, seed, out } => {
                let chain = hmc(&run.run, n, seed)?;
                out.write(&(serde_json::to_string_pretty(&chain)? + "\n"))
            }
            Command::Observables {
                run,
                n,
                seed,
                proposal,
                out,
            } => {
                let n = proposals(&run.run, n)?;
                let proposal = proposal.resolve(&run.run)?;
                let (weights, _, exact) = mcmc(&run.run, n, seed, proposal)?;
                let baseline = hmc(&run.run, None, None)?;
                let mut text = format!(
                    "ESS {:.4}; log Z {:.4} +- {:.4}\n",
                    weights.ess, weights.log_z.0, weights.log_z.1
                );
                text.push_str(&chains(&[&exact, &baseline]));
                text.push('\n');
                let rows = compare(&exact, &baseline);
                text.push_str(&comparison_table(&rows, "flow + Metropolis", "HMC"));
                let _ = writeln!(text, "\nmax |pull| {:.2}", max_pull(&rows));
                out.write(&text)
            }
        }
    }
}

/// `--n`, or the run's `run.mcmc_samples`.
fn proposals(run: &std::path::Path, n: Option<usize>) -> Result<usize> {
    match n {
        Some(n) => Ok(n),
        None => Ok(super::RunTheory::load(run)?.mcmc_samples),
    }
}

fn max_pull(rows: &[super::Comparison]) -> f64 {
    rows.iter()
        .filter(|c| judged(&c.name) && c.pull.is_finite())
        .map(|c| c.pull.abs())
        .fold(0.0, f64::max)
}

/// Acceptance and autocorrelation times, a line per chain.
fn chains(chains: &[&ChainSummary]) -> String {
    let mut out = String::new();
    for c in chains {
        let taus: Vec<String> = c
            .tau_int
            .iter()
            .map(|(k, v)| format!("tau_int({k}) {v:.2}"))
            .collect();
        let _ = writeln!(
            out,
            "{}: {} samples, acceptance {:.3}, {}",
            c.sampler,
            c.samples,
            c.acceptance,
            taus.join(", ")
        );
    }
    out
}

/// What a finished training prints.
fn summary(summary: &TrainSummary) -> String {
    let r = &summary.report;
    let mut out = format!("run directory: {}\n", summary.run_dir.display());
    let _ = writeln!(
        out,
        "phi^4 on {:?} (kappa {}, m_sq {}, lambda {})",
        r.lattice, r.couplings.kappa, r.couplings.m_sq, r.couplings.lambda
    );
    let _ = writeln!(
        out,
        "ESS {:.4}; log Z {:.4} +- {:.4}; Metropolis acceptance {:.3} ({} proposals)",
        r.weights.ess,
        r.weights.log_z.0,
        r.weights.log_z.1,
        r.weights.acceptance,
        r.weights.samples
    );
    out.push_str(&chains(&[&r.flow_metropolis, &r.hmc]));
    out.push('\n');
    out.push_str(&comparison_table(&r.comparison, "flow + Metropolis", "HMC"));
    let _ = writeln!(out, "\nmax |pull| against HMC {:.2}", r.max_abs_pull);
    let _ = writeln!(out, "{:.1} steps/s", r.run.steps_per_sec);
    out.push_str(&r.run.listing(&summary.run_dir));
    out
}
