//! Application 3's command line: `train` with `--images` and `--mode`, and `predict`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use flowcore::train::Collective;

use super::{APP, Report, TrainSummary, predict, train};
use crate::run::cli::{App, write_output};
use crate::run::{AppInfo, TrainOptions};
use crate::shared::classify::format_metrics;
use crate::shared::csv::csv_field;

/// Application 3 as its binary runs it.
pub struct App3;

/// The flags of `train`.
#[derive(Args, Clone, Debug, Default)]
pub struct Flags {
    /// The image root with train/<class>/ and val/<class>/ (run.images).
    #[arg(long)]
    images: Option<String>,
    /// `ib` or `inn` (classifier.mode).
    #[arg(long)]
    mode: Option<String>,
}

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Class probabilities of images under a trained run's model, as CSV.
    Predict {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// A folder of `<class>/` subfolders or of images, `embedded:<set>/val`, or s3://...
        #[arg(long)]
        images: String,
        /// Write here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl App for App3 {
    type Flags = Flags;
    type Command = Command;
    type Report = Report;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn about(&self) -> &'static str {
        "Generative classification of images with a normalizing flow"
    }

    fn sets(&self, flags: Flags) -> Vec<String> {
        let mut sets = Vec::new();
        if let Some(i) = flags.images {
            sets.push(format!("run.images={}", toml::Value::String(i)));
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
        if let Some(o) = &s.report.ood {
            let _ = writeln!(
                out,
                "unseen classes {:?}: {:.3} bits/dim against {:.3} for the training classes; \
                 AUROC {}",
                o.folders,
                o.unseen_bits_per_dim,
                o.seen_bits_per_dim,
                o.auroc_bits_per_dim
                    .map_or("-".to_string(), |a| format!("{a:.4}"))
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
        let Command::Predict { run, images, out } = command;
        let (predictions, classes) = predict(&run, &images)?;
        let mut text = String::from("path,folder,predicted,bits_per_dim");
        for c in &classes {
            text.push_str(&format!(",p_{c}"));
        }
        text.push('\n');
        for p in &predictions {
            text.push_str(&format!(
                "{},{},{},{}",
                csv_field(&p.path),
                csv_field(&p.folder),
                p.predicted,
                p.bits_per_dim
            ));
            for v in &p.probabilities {
                text.push_str(&format!(",{v}"));
            }
            text.push('\n');
        }
        write_output(out.as_deref(), &text)
    }
}
