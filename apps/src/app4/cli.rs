//! Application 4's command line: `train` with `--dataset`, `--points` and `--mode`, and
//! `predict`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use flowcore::train::Collective;

use super::{APP, PointPredictions, Report, TrainSummary, predict, train};
use crate::run::cli::{App, write_output};
use crate::run::{AppInfo, TrainOptions};
use crate::shared::classify::format_metrics;

/// Application 4 as its binary runs it.
pub struct App4;

/// The flags of `train`.
#[derive(Args, Clone, Debug, Default)]
pub struct Flags {
    /// Labelled toy set (run.dataset): gmm, moons, gmm3d.
    #[arg(long)]
    dataset: Option<String>,
    /// Learn the points of this CSV, with a label column, instead (run.points).
    #[arg(long)]
    points: Option<PathBuf>,
    /// `ib` or `inn` (classifier.mode).
    #[arg(long)]
    mode: Option<String>,
}

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Class probabilities of the points of a CSV under a trained run's model, as CSV.
    Predict {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// The points, one per line (a label column is ignored).
        #[arg(long)]
        points: PathBuf,
        /// Write here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl App for App4 {
    type Flags = Flags;
    type Command = Command;
    type Report = Report;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn about(&self) -> &'static str {
        "Generative classification of points with a normalizing flow"
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
        if let Some(m) = flags.mode {
            sets.push(format!("classifier.mode={m}"));
        }
        sets
    }

    fn train(&self, opts: &TrainOptions, _ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
        train(opts).map(Some)
    }

    fn summary(&self, s: &TrainSummary) -> String {
        let mut out = format!("run directory: {}\n", s.run_dir.display());
        out.push_str(&format_metrics(&s.report.metrics));
        if let Some(f) = s.report.samples_in_their_cluster {
            let _ = writeln!(
                out,
                "{:.1}% of class-conditional samples land in their cluster",
                100.0 * f
            );
        }
        let _ = writeln!(
            out,
            "{:.1} steps/s, {:.0} s of training",
            s.report.run.steps_per_sec, s.report.run.train_seconds
        );
        for f in &s.report.run.figures {
            let _ = writeln!(out, "figure: {}", s.run_dir.join(f).display());
        }
        out
    }

    fn command(&self, command: Command) -> Result<()> {
        let Command::Predict { run, points, out } = command;
        let PointPredictions {
            values,
            columns,
            classes,
            probabilities: probs,
        } = predict(&run, &points)?;
        let dim = columns.len();
        let k = classes.len();
        let mut text = columns.join(",") + ",predicted";
        for c in &classes {
            text.push_str(&format!(",p_{c}"));
        }
        text.push('\n');
        for (x, p) in values.chunks(dim).zip(probs.chunks(k)) {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            let cells: Vec<String> = x.iter().map(|v| v.to_string()).collect();
            text.push_str(&cells.join(","));
            text.push(',');
            text.push_str(&classes[best]);
            for v in p {
                text.push_str(&format!(",{v}"));
            }
            text.push('\n');
        }
        write_output(out.as_deref(), &text)
    }
}
