//! Application 1's command line: `train` with `--dataset` and `--points`, `sample` and
//! `logprob`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use flowcore::train::Collective;

use super::{APP, Report, TrainSummary, default_columns, logprob, sample, train_ranked};
use crate::run::cli::{App, write_output};
use crate::run::{AppInfo, TrainOptions};
use crate::shared::csv::csv_text;

/// Application 1 as its binary runs it.
pub struct App1;

/// The flags of `train`.
#[derive(Args, Clone, Debug, Default)]
pub struct Flags {
    /// Toy dataset (run.dataset): moons, moons:NOISE, mvn, gmm, helix, gmm3d.
    #[arg(long)]
    dataset: Option<String>,
    /// Learn the points of this CSV instead of a toy dataset (run.points).
    #[arg(long)]
    points: Option<PathBuf>,
}

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Draw samples from a trained run's model, as CSV.
    Sample {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// How many samples.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Standard deviation of the base distribution.
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// Seed of the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// log p(x) in nats of each point of a CSV under a trained run's model, as CSV.
    Logprob {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// The points, one per line.
        #[arg(long)]
        points: PathBuf,
        /// Write here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl App for App1 {
    type Flags = Flags;
    type Command = Command;
    type Report = Report;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn about(&self) -> &'static str {
        "Distribution mapping of 2-D/3-D points with a normalizing flow"
    }

    fn sets(&self, flags: Flags) -> Vec<String> {
        let mut sets = Vec::new();
        if let Some(d) = flags.dataset {
            sets.push(format!("run.dataset={d}"));
            sets.push("run.points=\"\"".to_string());
        }
        if let Some(p) = flags.points {
            sets.push(format!(
                "run.points={}",
                toml::Value::String(p.display().to_string())
            ));
        }
        sets
    }

    fn train(&self, opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
        train_ranked(opts, ranks)
    }

    fn summary(&self, summary: &TrainSummary) -> String {
        let r = &summary.report;
        let mut out = format!("run directory: {}\n", summary.run_dir.display());
        let _ = writeln!(
            out,
            "validation NLL {:.4} nats ({:.4} bits/dim){}",
            r.val_nll,
            r.val_bits_per_dim,
            match (r.entropy, r.gap_to_entropy) {
                (Some(h), Some(g)) => format!("; entropy {h:.4}, gap {g:+.4}"),
                _ => String::new(),
            }
        );
        let _ = writeln!(
            out,
            "change of variables: max |log p forward - log p inverse| = {:.2e}",
            r.change_of_variables_max_abs_diff
        );
        let _ = writeln!(out, "{:.1} steps/s", r.run.steps_per_sec);
        for f in &r.run.figures {
            let _ = writeln!(out, "figure: {}", summary.run_dir.join(f).display());
        }
        let _ = writeln!(out, "tracking: {}", r.run.tracking_run.display());
        out
    }

    fn command(&self, command: Command) -> Result<()> {
        match command {
            Command::Sample {
                run,
                n,
                temperature,
                seed,
                out,
            } => {
                let (values, dim) = sample(&run, n, temperature, seed)?;
                let text = csv_text(&values, dim, &default_columns(dim), None);
                write_output(out.as_deref(), &text)
            }
            Command::Logprob { run, points, out } => {
                let (values, columns, lp) = logprob(&run, &points)?;
                let text = csv_text(&values, columns.len(), &columns, Some(("log_prob", &lp)));
                write_output(out.as_deref(), &text)
            }
        }
    }
}
