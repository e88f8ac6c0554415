//! Application 4: generative classification of 2-D and 3-D points.
//!
//! `train_flowmodels4 [train] [--dataset gmm] [--mode ib|inn]` trains and reports accuracy,
//! calibration, decision regions and class-conditional samples; `train_flowmodels4 predict
//! --run RUN_DIR --points FILE.csv` writes class probabilities as CSV.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flowapps::app4;
use flowapps::classify::format_metrics;
use flowapps::run::{CommonArgs, init_logging, resolved_config};

#[derive(Parser)]
#[command(
    version,
    about = "Generative classification of points with a normalizing flow"
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

#[derive(Args, Clone, Default)]
struct TrainArgs {
    /// Labelled toy set (run.dataset): gmm, moons, gmm3d.
    #[arg(long)]
    dataset: Option<String>,
    /// Learn the points of this CSV, with a label column, instead (run.points).
    #[arg(long)]
    points: Option<PathBuf>,
    /// `ib` or `inn` (classifier.mode).
    #[arg(long)]
    mode: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let mut sets = Vec::new();
    if let Some(d) = args.dataset {
        sets.push(format!("run.dataset={d}"));
        sets.push("run.points=\"\"".to_string());
    }
    if let Some(p) = args.points {
        sets.push(format!(
            "run.points={}",
            toml::Value::String(p.display().to_string())
        ));
    }
    if let Some(m) = args.mode {
        sets.push(format!("classifier.mode={m}"));
    }
    let print = args.common.print_config;
    let opts = args.common.options(sets)?;
    if print {
        print!("{}", resolved_config(app4::DEFAULT_CONFIG, &opts)?);
        return Ok(());
    }
    let s = app4::train(&opts)?;
    println!("run directory: {}", s.run_dir.display());
    print!("{}", format_metrics(&s.report.metrics));
    if let Some(f) = s.report.samples_in_their_cluster {
        println!(
            "{:.1}% of class-conditional samples land in their cluster",
            100.0 * f
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
        Some(Command::Predict { run, points, out }) => {
            let app4::PointPredictions {
                values,
                columns,
                classes,
                probabilities: probs,
            } = app4::predict(&run, &points)?;
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
            flowapps::run::write_output(out.as_deref(), &text)
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    flowapps::run::exit(run(Cli::parse()))
}
