//! Application 2: image generation and anomaly detection with a Glow.
//!
//! `train_flowmodels2` trains on the embedded default (Fashion-MNIST sneakers, bags as
//! outliers), reports, scores the validation folders and prints the scores table;
//! `train_flowmodels2 score --run RUN_DIR --images DIR_OR_S3 --out scores.csv` scores other images.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flowapps::app2;
use flowapps::run::{CommonArgs, Ranks, init_logging, resolved_config};
use flowdata::images::OnBadImage;

#[derive(Parser)]
#[command(
    version,
    about = "Image generation and anomaly detection with a normalizing flow"
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
    /// Train, report and score the validation folders (the default).
    Train(TrainArgs),
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

#[derive(Args, Clone, Default)]
struct TrainArgs {
    /// Image root with train/<class>/ and val/<class>/ (run.images).
    #[arg(long)]
    images: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let sets = args
        .images
        .map(|i| vec![format!("run.images={}", toml::Value::String(i))])
        .unwrap_or_default();
    let print = args.common.print_config;
    let opts = args.common.options(sets)?;
    if print {
        print!("{}", resolved_config(app2::DEFAULT_CONFIG, &opts)?);
        return Ok(());
    }
    let ranks = Ranks::start(opts.distributed)?;
    let result = app2::train_ranked(&opts, ranks.collective());
    let Some(summary) = ranks.finish(result)? else {
        return Ok(()); // a worker rank: rank 0 reports
    };
    let r = &summary.report;
    println!("run directory: {}", summary.run_dir.display());
    println!(
        "{} training images ({} skipped), validation {:.4} bits/dim, {:.2} steps/s",
        r.train_images, r.train_skipped, r.val_bits_per_dim, r.steps_per_sec
    );
    println!(
        "\nscores of {} ({:.0} images/s):\n{}",
        r.scores.source,
        r.scores.images_per_sec,
        app2::format_table(&r.scores)
    );
    for f in &r.figures {
        println!("figure: {}", summary.run_dir.join(f).display());
    }
    for f in &r.scores.figures {
        println!("figure: {}", f.display());
    }
    println!("scores: {}", r.scores.csv.display());
    println!("tracking: {}", r.tracking_run.display());
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => train(cli.train),
        Some(Command::Train(args)) => train(args),
        Some(Command::Score {
            run,
            images,
            out,
            stop_on_bad_image,
        }) => {
            let on_bad = if stop_on_bad_image {
                OnBadImage::Stop
            } else {
                OnBadImage::Skip
            };
            let summary = app2::score(&run, &images, &out, on_bad)?;
            print!("{}", app2::format_table(&summary));
            println!(
                "{:.0} images/s; scores: {}, summary: {}",
                summary.images_per_sec,
                summary.csv.display(),
                summary.summary.display()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    flowapps::run::exit(run(Cli::parse()))
}
