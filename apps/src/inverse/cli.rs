//! The command line of applications 5 to 7: `train` with `--method`, `compare` (both methods,
//! one table) and `posterior`.

use anyhow::Result;
use clap::{Args, Subcommand};
use flowcore::train::Collective;

use super::{ComparisonRow, Problem, compare, format_comparison, posterior, train};
use crate::run::cli::{App, ConfigFlags, OutArg, RunArg, TrainArgs};
use crate::run::{AppInfo, TrainOptions};

/// One of applications 5 to 7 as its binary runs it.
pub struct InverseApp(pub Problem);

/// The flags of `train` and `compare`.
#[derive(Args, Clone, Debug, Default)]
pub struct Flags {
    /// `inn` (Ardizzone et al.) or `cinn` (conditional flow) (run.method).
    #[arg(long)]
    method: Option<String>,
}

impl ConfigFlags for Flags {
    fn sets(self) -> Vec<String> {
        self.method
            .map(|m| vec![format!("run.method={m}")])
            .unwrap_or_default()
    }
}

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Train the INN and the cINN with the same settings and print the comparison.
    Compare(TrainArgs<Flags>),
    /// Sample the posterior p(x | y) of a trained run, as CSV.
    Posterior {
        #[command(flatten)]
        run: RunArg,
        /// The observation, comma-separated.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        y: Vec<f64>,
        /// How many samples.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Seed of the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        out: OutArg,
    },
}

impl App for InverseApp {
    type Flags = Flags;
    type Command = Command;

    fn info(&self) -> &'static AppInfo {
        self.0.info()
    }

    fn train(&self, opts: &TrainOptions, _ranks: &dyn Collective) -> Result<Option<String>> {
        let s = train(self.0, opts)?;
        let listing = s.report.run.listing(&s.run_dir);
        let run_dir = s.run_dir.display().to_string();
        let table = format_comparison(self.0, &[ComparisonRow::of(s)]);
        Ok(Some(format!("run directory: {run_dir}\n{table}{listing}")))
    }

    fn command(&self, command: Command) -> Result<()> {
        match command {
            Command::Compare(args) => {
                let (opts, _) = args.options()?;
                let rows = compare(self.0, &opts)?;
                print!("{}", format_comparison(self.0, &rows));
                Ok(())
            }
            Command::Posterior {
                run,
                y,
                n,
                seed,
                out,
            } => {
                let (samples, names) = posterior(self.0, &run.run, &y, n, seed)?;
                let mut text = names.join(",") + "\n";
                for row in samples.chunks(names.len()) {
                    let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                    text.push_str(&cells.join(","));
                    text.push('\n');
                }
                out.write(&text)
            }
        }
    }
}
