//! Application 1: distribution mapping of 2-D and 3-D points with a RealNVP.
//!
//! `train_flowmodels1 [train] [--dataset gmm] [--set training.epochs=20]`, then
//! `train_flowmodels1 sample --run RUN_DIR --n 1000` and
//! `train_flowmodels1 logprob --run RUN_DIR --points FILE.csv`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flowapps::app1;
use flowapps::run::{CommonArgs, Ranks, init_logging, resolved_config};

#[derive(Parser)]
#[command(
    version,
    about = "Distribution mapping of 2-D/3-D points with a normalizing flow"
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
    /// Train a model (the default when no subcommand is given).
    Train(TrainArgs),
    /// Draw samples from a trained run's model, as CSV.
    Sample {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// How many samples.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Standard deviation of the base distribution.
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// Seed of the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// log p(x) in nats of each point of a CSV under a trained run's model, as CSV.
    Logprob {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// The points, one per line.
        #[arg(long)]
        points: PathBuf,
        /// Write here instead of to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args, Clone, Default)]
struct TrainArgs {
    /// Toy dataset (run.dataset): moons, moons:NOISE, mvn, gmm, helix, gmm3d.
    #[arg(long)]
    dataset: Option<String>,
    /// Learn the points of this CSV instead of a toy dataset (run.points).
    #[arg(long)]
    points: Option<PathBuf>,
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
    let print = args.common.print_config;
    let opts = args.common.options(sets)?;
    if print {
        print!("{}", resolved_config(app1::DEFAULT_CONFIG, &opts)?);
        return Ok(());
    }
    let ranks = Ranks::start(opts.distributed)?;
    let result = app1::train_ranked(&opts, ranks.collective());
    let Some(summary) = ranks.finish(result)? else {
        return Ok(()); // a worker rank: rank 0 reports
    };
    let r = &summary.report;
    println!("run directory: {}", summary.run_dir.display());
    println!(
        "validation NLL {:.4} nats ({:.4} bits/dim){}",
        r.val_nll,
        r.val_bits_per_dim,
        match (r.entropy, r.gap_to_entropy) {
            (Some(h), Some(g)) => format!("; entropy {h:.4}, gap {g:+.4}"),
            _ => String::new(),
        }
    );
    println!(
        "change of variables: max |log p forward - log p inverse| = {:.2e}",
        r.change_of_variables_max_abs_diff
    );
    println!("{:.1} steps/s", r.steps_per_sec);
    for f in &r.figures {
        println!("figure: {}", summary.run_dir.join(f).display());
    }
    println!("tracking: {}", r.tracking_run.display());
    Ok(())
}

fn emit(
    out: Option<PathBuf>,
    write: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match out {
        Some(path) => write(&path),
        None => {
            let tmp = std::env::temp_dir().join(format!("flowmodels1-{}.csv", std::process::id()));
            write(&tmp)?;
            let text = std::fs::read(&tmp)?;
            let _ = std::fs::remove_file(&tmp);
            std::io::stdout().write_all(&text)?;
            Ok(())
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => train(cli.train),
        Some(Command::Train(args)) => train(args),
        Some(Command::Sample {
            run,
            n,
            temperature,
            seed,
            out,
        }) => {
            let (values, dim) = app1::sample(&run, n, temperature, seed)?;
            emit(out, |p| {
                app1::write_csv(p, &values, dim, &app1::default_columns(dim), None)
            })
        }
        Some(Command::Logprob { run, points, out }) => {
            let (values, columns, lp) = app1::logprob(&run, &points)?;
            let dim = columns.len();
            emit(out, |p| {
                app1::write_csv(p, &values, dim, &columns, Some(("log_prob", &lp)))
            })
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    flowapps::run::exit(run(Cli::parse()))
}
