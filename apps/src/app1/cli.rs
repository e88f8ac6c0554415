//! Application 1's command line: `train` with `--dataset` and `--points`, `sample` and
//! `logprob`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use flowcore::train::Collective;

use super::{APP, TrainSummary, default_columns, logprob, sample, train_ranked};
use crate::run::cli::{App, OutArg, RunArg};
use crate::run::{AppInfo, TrainOptions};
use crate::shared::csv::csv_text;
use crate::shared::points::PointFlags;

/// Application 1 as its binary runs it.
pub struct App1;

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Draw samples from a trained run's model, as CSV.
    Sample {
        #[command(flatten)]
        run: RunArg,
        /// How many samples.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Standard deviation of the base distribution.
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// Seed of the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        out: OutArg,
    },
    /// log p(x) in nats of each point of a CSV under a trained run's model, as CSV.
    Logprob {
        #[command(flatten)]
        run: RunArg,
        /// The points, one per line.
        #[arg(long)]
        points: PathBuf,
        #[command(flatten)]
        out: OutArg,
    },
}

impl App for App1 {
    type Flags = PointFlags;
    type Command = Command;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn train(&self, opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<String>> {
        Ok(train_ranked(opts, ranks)?.as_ref().map(summary))
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
                let (values, dim) = sample(&run.run, n, temperature, seed)?;
                out.write(&csv_text(&values, dim, &default_columns(dim), None))
            }
            Command::Logprob { run, points, out } => {
                let (values, columns, lp) = logprob(&run.run, &points)?;
                out.write(&csv_text(
                    &values,
                    columns.len(),
                    &columns,
                    Some(("log_prob", &lp)),
                ))
            }
        }
    }
}

/// What a finished training prints.
fn summary(summary: &TrainSummary) -> String {
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
    out.push_str(&r.run.listing(&summary.run_dir));
    out
}
