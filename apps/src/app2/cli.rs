//! Application 2's command line: `train` with `--images`, and `score`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use flowcore::train::Collective;
use flowdata::images::OnBadImage;

use super::{APP, Report, TrainSummary, format_table, score, train_ranked};
use crate::run::cli::App;
use crate::run::{AppInfo, TrainOptions};

/// Application 2 as its binary runs it.
pub struct App2;

/// The flags of `train`.
#[derive(Args, Clone, Debug, Default)]
pub struct Flags {
    /// Image root with train/<class>/ and val/<class>/ (run.images).
    #[arg(long)]
    images: Option<String>,
}

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Score images for outliers with a trained run's model.
    Score {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// A folder of `<class>/` subfolders or of images, or `embedded:fashion-mnist/val`.
        #[arg(long)]
        images: String,
        /// The per-image CSV; the summary JSON and the figures go beside it.
        #[arg(long, default_value = "scores.csv")]
        out: PathBuf,
        /// Stop at the first unreadable image instead of skipping it.
        #[arg(long)]
        stop_on_bad_image: bool,
    },
}

impl App for App2 {
    type Flags = Flags;
    type Command = Command;
    type Report = Report;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn about(&self) -> &'static str {
        "Image generation and anomaly detection with a normalizing flow"
    }

    fn sets(&self, flags: Flags) -> Vec<String> {
        flags
            .images
            .map(|i| vec![format!("run.images={}", toml::Value::String(i))])
            .unwrap_or_default()
    }

    fn train(&self, opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
        train_ranked(opts, ranks)
    }

    fn summary(&self, summary: &TrainSummary) -> String {
        let r = &summary.report;
        let mut out = format!("run directory: {}\n", summary.run_dir.display());
        let _ = writeln!(
            out,
            "{} training images ({} skipped), validation {:.4} bits/dim, {:.2} steps/s",
            r.train_images, r.train_skipped, r.val_bits_per_dim, r.run.steps_per_sec
        );
        let _ = writeln!(
            out,
            "\nscores of {} ({:.0} images/s):\n{}",
            r.scores.source,
            r.scores.images_per_sec,
            format_table(&r.scores)
        );
        for f in &r.run.figures {
            let _ = writeln!(out, "figure: {}", summary.run_dir.join(f).display());
        }
        for f in &r.scores.figures {
            let _ = writeln!(out, "figure: {}", f.display());
        }
        let _ = writeln!(out, "scores: {}", r.scores.csv.display());
        let _ = writeln!(out, "tracking: {}", r.run.tracking_run.display());
        out
    }

    fn command(&self, command: Command) -> Result<()> {
        let Command::Score {
            run,
            images,
            out,
            stop_on_bad_image,
        } = command;
        let on_bad = if stop_on_bad_image {
            OnBadImage::Stop
        } else {
            OnBadImage::Skip
        };
        let summary = score(&run, &images, &out, on_bad)?;
        print!("{}", format_table(&summary));
        println!(
            "{:.0} images/s; scores: {}, summary: {}",
            summary.images_per_sec,
            summary.csv.display(),
            summary.summary.display()
        );
        Ok(())
    }
}
