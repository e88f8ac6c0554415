//! Application 4's command line: `train` with `--dataset`, `--points` and `--mode`, and
//! `predict`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use flowcore::train::Collective;

use super::{APP, PointPredictions, predict, train};
use crate::run::cli::{App, OutArg, RunArg};
use crate::run::{AppInfo, TrainOptions};
use crate::shared::classify::{ClassifierAppFlags, format_metrics};
use crate::shared::points::PointFlags;

/// Application 4 as its binary runs it.
pub struct App4;

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Class probabilities of the points of a CSV under a trained run's model, as CSV.
    Predict {
        #[command(flatten)]
        run: RunArg,
        /// The points, one per line (a label column is ignored).
        #[arg(long)]
        points: PathBuf,
        #[command(flatten)]
        out: OutArg,
    },
}

impl App for App4 {
    type Flags = ClassifierAppFlags<PointFlags>;
    type Command = Command;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn train(&self, opts: &TrainOptions, _ranks: &dyn Collective) -> Result<Option<String>> {
        let s = train(opts)?;
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
        out.push_str(&s.report.run.listing(&s.run_dir));
        Ok(Some(out))
    }

    fn command(&self, command: Command) -> Result<()> {
        let Command::Predict { run, points, out } = command;
        let PointPredictions {
            values,
            columns,
            classes,
            probabilities: probs,
        } = predict(&run.run, &points)?;
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
        out.write(&text)
    }
}
