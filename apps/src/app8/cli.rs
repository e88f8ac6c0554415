//! Application 8's command line: `train` with `--dataset`, `--csv`, `--root` and `--hdf5`; `sample`,
//! `logprob`, `estimate`, `interpolate`, and `simulate` (a generator's rows into HDF5 files).

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use flowcore::train::Collective;

use super::estimate::Ascent;
use super::{
    APP, EstimateRequest, TrainSummary, estimate, interpolate, logprob, parse_conditions, sample,
    simulate, train,
};
use crate::run::cli::{App, ConfigFlags, OutArg, RunArg};
use crate::run::{AppInfo, TrainOptions};
use crate::shared::csv::{csv_field, csv_text};

/// Application 8 as its binary runs it.
pub struct App8;

/// The flags of `train` that choose the rows.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Flags {
    /// A generator (run.dataset): two_gaussians, gaussian_mean, grid, grid:N:WIDTH, smearing,
    /// smearing:D.
    #[arg(long)]
    dataset: Option<String>,
    /// A CSV with a header (data.csv); name its condition columns with --c-columns.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// The condition columns of a CSV or ROOT table, comma-separated (data.c_columns).
    #[arg(long)]
    c_columns: Option<String>,
    /// ROOT files or folders (data.root), repeatable; name the condition branches with
    /// --c-columns.
    #[arg(long)]
    root: Vec<PathBuf>,
    /// HDF5 files or folders (data.hdf5), repeatable; give --c and --x ranges.
    #[arg(long)]
    hdf5: Vec<PathBuf>,
}

impl ConfigFlags for Flags {
    fn sets(self) -> Vec<String> {
        let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut sets = Vec::new();
        if let Some(d) = self.dataset {
            sets.push(format!("run.dataset={}", quoted(&d)));
        }
        if let Some(p) = self.csv {
            sets.push(format!("data.csv={}", quoted(&p.display().to_string())));
        }
        if let Some(c) = self.c_columns {
            let names: Vec<String> = c.split(',').map(|n| quoted(n.trim())).collect();
            sets.push(format!("data.c_columns=[{}]", names.join(",")));
        }
        let paths = |ps: &[PathBuf]| -> String {
            let quoted: Vec<String> = ps
                .iter()
                .map(|p| quoted(&p.display().to_string()))
                .collect();
            format!("[{}]", quoted.join(","))
        };
        if !self.root.is_empty() {
            sets.push(format!("data.root={}", paths(&self.root)));
        }
        if !self.hdf5.is_empty() {
            sets.push(format!("data.hdf5={}", paths(&self.hdf5)));
        }
        sets
    }
}

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Draw x at a condition from a trained run's model, as CSV.
    Sample {
        #[command(flatten)]
        run: RunArg,
        /// The condition, comma-separated, in the data's units.
        #[arg(long, allow_hyphen_values = true)]
        c: String,
        /// How many samples.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Seed of the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        out: OutArg,
    },
    /// log p(x | c) in nats of each row of a CSV (the run's c and x columns), as CSV.
    Logprob {
        #[command(flatten)]
        run: RunArg,
        /// The rows.
        #[arg(long)]
        points: PathBuf,
        #[command(flatten)]
        out: OutArg,
    },
    /// The most likely c for the x of each row of a CSV (or one c for all rows: --shared).
    Estimate {
        #[command(flatten)]
        run: RunArg,
        /// The observations (the run's x columns).
        #[arg(long)]
        points: PathBuf,
        /// Candidate conditions `a,b;c,d` to choose among (default: the run's discrete
        /// conditions, if it has them; else a continuous search).
        #[arg(long, allow_hyphen_values = true)]
        candidates: Option<String>,
        /// Search continuously even when the run's conditions are discrete.
        #[arg(long)]
        continuous: bool,
        /// All rows are observations of one condition.
        #[arg(long)]
        shared: bool,
        /// Starts of the continuous search.
        #[arg(long, default_value_t = 8)]
        starts: usize,
        /// Steps of the continuous search.
        #[arg(long, default_value_t = 300)]
        steps: usize,
        #[command(flatten)]
        out: OutArg,
    },
    /// Generate at the run's held-out conditions (or --c) and compare with true samples, as
    /// JSON.
    Interpolate {
        #[command(flatten)]
        run: RunArg,
        /// Conditions `a,b;c,d` instead of the run's held-out ones.
        #[arg(long, allow_hyphen_values = true)]
        c: Option<String>,
        /// Samples of each kind per condition.
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// Seed of the draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        out: OutArg,
    },
    /// Write a generator's rows into HDF5 files (dataset `data`, c then x columns).
    Simulate {
        /// The generator: smearing, smearing:D, grid, two_gaussians, gaussian_mean.
        #[arg(long, default_value = "smearing")]
        dataset: String,
        /// Rows in all.
        #[arg(long, default_value_t = 200_000)]
        rows: usize,
        /// Files the rows are spread over.
        #[arg(long, default_value_t = 4)]
        files: usize,
        /// The folder to write into (files in it are never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Rows per HDF5 chunk.
        #[arg(long, default_value_t = 4096)]
        chunk_rows: usize,
        /// Deflate level 1-9 (none: uncompressed).
        #[arg(long)]
        deflate: Option<u32>,
        /// Seed of the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

impl App for App8 {
    type Flags = Flags;
    type Command = Command;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn train(&self, opts: &TrainOptions, _ranks: &dyn Collective) -> Result<Option<String>> {
        Ok(Some(summary(&train(opts)?)))
    }

    fn command(&self, command: Command) -> Result<()> {
        match command {
            Command::Sample {
                run,
                c,
                n,
                seed,
                out,
            } => {
                let c = parse_conditions(&c)?;
                if c.len() != 1 {
                    bail!("--c: give one condition, comma-separated");
                }
                let (x, columns) = sample(&run.run, &c[0], n, seed)?;
                out.write(&csv_text(&x, columns.len(), &columns, None))
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
            Command::Estimate {
                run,
                points,
                candidates,
                continuous,
                shared,
                starts,
                steps,
                out,
            } => {
                let request = EstimateRequest {
                    candidates: candidates
                        .as_deref()
                        .map(parse_conditions)
                        .transpose()?
                        .unwrap_or_default(),
                    continuous,
                    shared,
                    ascent: Ascent {
                        starts,
                        steps,
                        ..Ascent::default()
                    },
                };
                let (est, columns) = estimate(&run.run, &points, &request)?;
                let mut text: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
                text.extend(["log_likelihood".into(), "candidate".into()]);
                let mut csv = text.join(",") + "\n";
                for e in &est {
                    let mut row: Vec<String> = e.c.iter().map(|v| v.to_string()).collect();
                    row.push(e.log_likelihood.to_string());
                    row.push(e.candidate.map_or(String::new(), |k| k.to_string()));
                    csv.push_str(&row.join(","));
                    csv.push('\n');
                }
                out.write(&csv)
            }
            Command::Interpolate {
                run,
                c,
                n,
                seed,
                out,
            } => {
                let labels = c
                    .as_deref()
                    .map(parse_conditions)
                    .transpose()?
                    .unwrap_or_default();
                let cmp = interpolate(&run.run, &labels, n, seed)?;
                out.write(&(serde_json::to_string_pretty(&cmp)? + "\n"))
            }
            Command::Simulate {
                dataset,
                rows,
                files,
                out,
                chunk_rows,
                deflate,
                seed,
            } => {
                let (paths, settings) =
                    simulate(&dataset, rows, files, &out, chunk_rows, deflate, seed)?;
                for p in &paths {
                    println!("wrote {}", p.display());
                }
                println!("train on them: {} {settings}", APP.name);
                Ok(())
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
        "held-out NLL {:.4} nats ({:.4} per dimension){}",
        r.val_nll,
        r.val_nll_per_dim,
        match (r.conditional_entropy, r.gap_per_dim) {
            (Some(h), Some(g)) =>
                format!("; true conditional entropy {h:.4}, gap {g:+.4} per dimension"),
            _ => String::new(),
        }
    );
    if let (Some(t), Some(kl)) = (r.true_nll, r.kl_per_dim) {
        let _ = writeln!(
            out,
            "true NLL of the same rows {t:.4}: KL from the truth {kl:.4} per dimension"
        );
    }
    let e = &r.estimate;
    if let Some(a) = e.accuracy {
        let _ = writeln!(
            out,
            "estimate of c on {} held-out rows: accuracy {a:.3}{}",
            e.rows,
            e.bayes_accuracy
                .map_or(String::new(), |b| format!(" (Bayes-optimal {b:.3})"))
        );
    }
    if let Some(m) = e.mean_abs_error_to_true_ml {
        let _ = writeln!(
            out,
            "estimate of c on {} held-out rows: mean |c - true maximum-likelihood c| = {m:.3}",
            e.rows
        );
    }
    for h in &r.interpolation {
        let _ = writeln!(
            out,
            "held-out c = {:?}: mean off by {:?} sigma, std off by {:?}, MMD^2 {:.2e}",
            h.label,
            h.mean_error_in_sigma
                .iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>(),
            h.std_relative_error
                .iter()
                .map(|v| format!("{v:+.3}"))
                .collect::<Vec<_>>(),
            h.mmd2
        );
    }
    let _ = writeln!(out, "{:.1} steps/s", r.run.steps_per_sec);
    out.push_str(&r.run.listing(&summary.run_dir));
    out
}
