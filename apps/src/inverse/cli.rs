//! The command line of applications 5 to 7: `train` with `--method`, `compare` (both methods,
//! one table) and `posterior`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use flowcore::train::Collective;

use super::{Problem, Report, TrainSummary, compare, format_comparison, posterior, train};
use crate::run::cli::{App, TrainArgs, write_output};
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

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Train the INN and the cINN with the same settings and print the comparison.
    Compare(TrainArgs<Flags>),
    /// Sample the posterior p(x | y) of a trained run, as CSV.
    Posterior {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// The observation, comma-separated.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        y: Vec<f64>,
        /// How many samples.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Seed of the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl App for InverseApp {
    type Flags = Flags;
    type Command = Command;
    type Report = Report;

    fn info(&self) -> &'static AppInfo {
        self.0.info()
    }

    fn about(&self) -> &'static str {
        "Learn the posterior of an inverse problem with an invertible network"
    }

    fn sets(&self, flags: Flags) -> Vec<String> {
        flags
            .method
            .map(|m| vec![format!("run.method={m}")])
            .unwrap_or_default()
    }

    fn train(&self, opts: &TrainOptions, _ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
        train(self.0, opts).map(Some)
    }

    fn summary(&self, s: &TrainSummary) -> String {
        let e = &s.report.evaluation;
        let mut out = format!("run directory: {}\n", s.run_dir.display());
        let _ = writeln!(
            out,
            "{:?}: posterior MMD {:.4} (prior {:.4}, ratio {:.3}); re-simulation error {:.4} \
             (noise floor {:.4}); calibration error {:.4}; {:.1} steps/s",
            s.report.method,
            e.mmd,
            e.prior_mmd,
            e.mmd_ratio,
            e.resimulation_error,
            e.noise_floor,
            e.calibration_error,
            s.report.run.steps_per_sec
        );
        for f in &s.report.run.figures {
            let _ = writeln!(out, "figure: {}", s.run_dir.join(f).display());
        }
        out
    }

    fn command(&self, command: Command) -> Result<()> {
        match command {
            Command::Compare(args) => {
                let (opts, _) = args.options(self)?;
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
                let (samples, names) = posterior(&run, &y, n, seed)?;
                let mut text = names.join(",") + "\n";
                for row in samples.chunks(names.len()) {
                    let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                    text.push_str(&cells.join(","));
                    text.push('\n');
                }
                write_output(out.as_deref(), &text)
            }
        }
    }
}
