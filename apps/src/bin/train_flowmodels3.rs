//! Application 3: generative classification of images.
//!
//! `train_flowmodels3 [train] [--images DIR_OR_S3] [--mode ib|inn]` trains on `train/<class>/`
//! and reports accuracy, calibration, class-conditional samples and out-of-distribution
//! detection on `val/`; `train_flowmodels3 predict --run RUN_DIR --images DIR` writes class
//! probabilities as CSV.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flowapps::app2::csv_field;
use flowapps::app3;
use flowapps::classify::format_metrics;
use flowapps::run::{CommonArgs, init_logging, resolved_config};

#[derive(Parser)]
#[command(
    version,
    about = "Generative classification of images with a normalizing flow"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier (the default when no subcommand is given).
    Train(TrainArgs),
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

#[derive(Args, Clone, Default)]
struct TrainArgs {
    /// The image root with train/<class>/ and val/<class>/ (run.images).
    #[arg(long)]
    images: Option<String>,
    /// `ib` or `inn` (classifier.mode).
    #[arg(long)]
    mode: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let mut sets = Vec::new();
    if let Some(i) = args.images {
        sets.push(format!("run.images={}", toml::Value::String(i)));
    }
    if let Some(m) = args.mode {
        sets.push(format!("classifier.mode={m}"));
    }
    let print = args.common.print_config;
    let opts = args.common.options(sets)?;
    if print {
        print!("{}", resolved_config(app3::DEFAULT_CONFIG, &opts)?);
        return Ok(());
    }
    let s = app3::train(&opts)?;
    println!("run directory: {}", s.run_dir.display());
    print!("{}", format_metrics(&s.report.metrics));
    if let Some(o) = &s.report.ood {
        println!(
            "unseen classes {:?}: {:.3} bits/dim against {:.3} for the training classes; AUROC {}",
            o.folders,
            o.unseen_bits_per_dim,
            o.seen_bits_per_dim,
            o.auroc_bits_per_dim
                .map_or("-".to_string(), |a| format!("{a:.4}"))
        );
    }
    println!(
        "{:.1} steps/s, {:.0} s of training",
        s.report.steps_per_sec, s.report.train_seconds
    );
    for f in &s.report.figures {
        println!("figure: {}", s.run_dir.join(f).display());
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => train(cli.train),
        Some(Command::Train(args)) => train(args),
        Some(Command::Predict { run, images, out }) => {
            let (predictions, classes) = app3::predict(&run, &images)?;
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
            flowapps::run::write_output(out.as_deref(), &text)
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    flowapps::run::exit(run(Cli::parse()))
}
