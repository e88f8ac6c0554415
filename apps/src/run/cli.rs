//! The command line of every `train_flowmodelsN` binary, defined once: `train` (the default
//! when no subcommand is given) with the flags every application takes ([`CommonArgs`]) and the
//! application's own ([`App::Flags`], each a config key), and the application's other
//! subcommands ([`App::Command`]). A binary is `flowapps::run::cli::main(&AppN)`.
//!
//! This module and the applications' `cli` modules are the binaries' half of the library: the
//! only code that writes to stdout, and only what a command was asked for.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{
    AppInfo, Distributed, Ranks, TrainOptions, resolved_config, select_device, tracking_from_env,
};
use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use flowcore::train::Collective;

/// An application as its binary runs it.
pub trait App {
    /// The flags of `train` beyond [`CommonArgs`], each a config key.
    type Flags: ConfigFlags;
    /// The subcommands beside `train`.
    type Command: Subcommand;

    /// Its name, description, config and whether it trains data-parallel.
    fn info(&self) -> &'static AppInfo;

    /// Train as configured: rank 0 (or the one process) returns what it prints.
    fn train(&self, opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<String>>;

    /// Run one of the other subcommands.
    fn command(&self, command: Self::Command) -> Result<()>;
}

/// Flags that stand for config keys.
pub trait ConfigFlags: Args {
    /// The `--set`s the flags stand for.
    fn sets(self) -> Vec<String>;
}

/// The run directory a command reads: `--run RUN_DIR`.
#[derive(Args, Clone, Debug)]
pub struct RunArg {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
}

/// Where a command writes: `--out FILE`, else stdout.
#[derive(Args, Clone, Debug)]
pub struct OutArg {
    /// Write here instead of to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl OutArg {
    /// Write `text` there, atomically, or to stdout.
    pub fn write(&self, text: &str) -> Result<()> {
        write_output(self.out.as_deref(), text)
    }
}

/// The flags every application's `train` takes.
#[derive(Args, Clone, Debug, Default)]
pub struct CommonArgs {
    /// A config file merged over the defaults (a run's config.toml reproduces the run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any config key, e.g. --set training.batch_size=256 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Epochs (training.epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Write the run into this directory.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its newest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Print the resolved config and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Where to compute: `cpu` (burn's flex backend) or `cuda`, `cuda:N`, `cuda:local` (the
    /// GPU of this rank's index on its node; a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// `mpi`: this process is one rank of a data-parallel run launched by
    /// `mpirun -np N` (a build with `--features mpi`); `nccl`: the same with one GPU per rank
    /// and the gradients summed by NCCL (`--features cuda,mpi`, `--device cuda:local`).
    /// training.batch_size is per rank.
    #[arg(long, value_enum, default_value = "none")]
    pub distributed: Distributed,
}

impl CommonArgs {
    /// Training options: the app's flag overrides `app_sets` first, then `--epochs`, then the
    /// user's `--set`s; tracking from `MLFLOW_TRACKING_URI`. Selects the `--device` for the
    /// process.
    pub fn options(self, app_sets: Vec<String>) -> Result<TrainOptions> {
        select_device(&self.device)?;
        let mut sets = app_sets;
        if let Some(e) = self.epochs {
            sets.push(format!("training.epochs={e}"));
        }
        sets.extend(self.sets);
        let (tracking_uri, tracking_dir) = tracking_from_env()?;
        Ok(TrainOptions {
            config: self.config,
            sets,
            run_dir: self.run_dir,
            resume: self.resume,
            tracking_uri,
            tracking_dir,
            progress: true,
            distributed: self.distributed,
        })
    }
}

/// The arguments of `train`: the application's flags and the common ones.
#[derive(Args, Clone, Debug, Default)]
pub struct TrainArgs<F: Args> {
    #[command(flatten)]
    flags: F,
    #[command(flatten)]
    common: CommonArgs,
}

impl<F: ConfigFlags> TrainArgs<F> {
    /// The training options these arguments give, and whether to print the resolved config
    /// instead of training.
    pub fn options(self) -> Result<(TrainOptions, bool)> {
        let print = self.common.print_config;
        Ok((self.common.options(self.flags.sets())?, print))
    }
}

#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli<F: Args, C: Subcommand> {
    #[command(subcommand)]
    command: Option<Command<F, C>>,
    #[command(flatten)]
    train: TrainArgs<F>,
}

#[derive(Subcommand)]
enum Command<F: Args, C: Subcommand> {
    /// Train a model (the default when no subcommand is given).
    Train(TrainArgs<F>),
    #[command(flatten)]
    Other(C),
}

/// `train`: print the resolved config, or train (as one rank when asked) and print the
/// summary on rank 0.
pub fn train<A: App>(app: &A, args: TrainArgs<A::Flags>) -> Result<()> {
    let (opts, print) = args.options()?;
    if print {
        print!("{}", resolved_config(app.info().default_config, &opts)?);
        return Ok(());
    }
    let ranks = Ranks::start(opts.distributed)?;
    let result = app.train(&opts, ranks.collective());
    if let Some(summary) = ranks.finish(result)? {
        print!("{summary}");
    }
    Ok(())
}

/// The whole binary of `app`: parse the command line, run, print an error with its causes; the
/// exit code.
pub fn main<A: App>(app: &A) -> ExitCode {
    init_logging();
    let _awake = super::threads();
    let command = Cli::<A::Flags, A::Command>::command()
        .name(app.info().name)
        .about(app.info().about);
    let cli = match Cli::<A::Flags, A::Command>::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    exit(match cli.command {
        None => train(app, cli.train),
        Some(Command::Train(args)) => train(app, args),
        Some(Command::Other(command)) => other_device().and_then(|()| app.command(command)),
    })
}

/// The device of a command other than `train` (scoring, sampling, reports): the CPU, or the
/// one `FLOWMODELS_DEVICE` names (`cuda`, `cuda:N`; as `--device` takes).
fn other_device() -> Result<()> {
    match std::env::var("FLOWMODELS_DEVICE") {
        Ok(spec) => select_device(&spec).context("FLOWMODELS_DEVICE"),
        Err(_) => Ok(()),
    }
}

/// Write `text` to `out`, atomically, or to stdout when no path is given.
pub fn write_output(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(path) => flowcore::io::write_atomic(path, text.as_bytes())?,
        None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?,
    }
    Ok(())
}

/// A binary's exit: success, or the error with its causes on stderr and a failure code.
pub fn exit(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log to stderr with `tracing`, at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
