//! Application 3's command line: `train` with `--images` and `--mode`, and `predict`.

use std::fmt::Write;

use anyhow::Result;
use clap::Subcommand;
use flowcore::train::Collective;

use super::{APP, predict, train};
use crate::run::cli::{App, OutArg, RunArg};
use crate::run::{AppInfo, TrainOptions};
use crate::shared::classify::{ClassifierAppFlags, format_metrics};
use crate::shared::csv::csv_field;
use crate::shared::images::ImageFlags;

/// Application 3 as its binary runs it.
pub struct App3;

/// The subcommands beside `train`.
#[derive(Subcommand)]
pub enum Command {
    /// Class probabilities of images under a trained run's model, as CSV.
    Predict {
        #[command(flatten)]
        run: RunArg,
        /// A folder of `<class>/` subfolders or of images, `embedded:<set>/val`, or s3://...
        #[arg(long)]
        images: String,
        #[command(flatten)]
        out: OutArg,
    },
}

impl App for App3 {
    type Flags = ClassifierAppFlags<ImageFlags>;
    type Command = Command;

    fn info(&self) -> &'static AppInfo {
        &APP
    }

    fn train(&self, opts: &TrainOptions, _ranks: &dyn Collective) -> Result<Option<String>> {
        let s = train(opts)?;
        let mut out = format!("run directory: {}\n", s.run_dir.display());
        out.push_str(&format_metrics(&s.report.metrics));
        let or_dash = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{a:.4}"));
        if let Some(o) = &s.report.ood {
            let _ = writeln!(
                out,
                "unseen classes {:?}: {:.3} bits/dim against {:.3} for the training classes; \
                 AUROC by bits/dim {}, by posterior entropy {}, by max-class bits/dim {}",
                o.folders,
                o.unseen_bits_per_dim,
                o.seen_bits_per_dim,
                or_dash(o.auroc_bits_per_dim),
                or_dash(o.auroc_posterior_entropy),
                or_dash(o.auroc_max_class_bits_per_dim),
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
        let Command::Predict { run, images, out } = command;
        let (predictions, classes) = predict(&run.run, &images)?;
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
        out.write(&text)
    }
}
