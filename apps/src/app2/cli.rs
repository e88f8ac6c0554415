//! Application 2's command line: `train` with `--images`, and `score`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use flowcore::train::Collective;
use flowdata::images::OnBadImage;

use super::{APP, TrainSummary, format_table, score, train_ranked};
use crate::run::cli::{App, RunArg};
use crate::run::{AppInfo, TrainOptions};
use crate::shared::images::ImageFlags;

/// Application 2 as its binary runs it.
pub struct App2;

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Score images for outliers with a trained run's model.
    Score {
        #[command(flatten)]
        run: RunArg,
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
    type Flags = ImageFlags;
    type Command = Command;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn train(&self, opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<String>> {
        Ok(train_ranked(opts, ranks)?.as_ref().map(summary))
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
        let summary = score(&run.run, &images, &out, on_bad)?;
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

/// What a finished training prints.
fn summary(summary: &TrainSummary) -> String {
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
    for f in &r.scores.figures {
        let _ = writeln!(out, "figure: {}", f.display());
    }
    let _ = writeln!(out, "scores: {}", r.scores.csv.display());
    out.push_str(&r.run.listing(&summary.run_dir));
    out
}
