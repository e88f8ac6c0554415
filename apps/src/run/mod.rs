//! The application harness: what every application does around its own data, objective and
//! report, defined once.
//!
//! - [`AppInfo`]: an application's name, embedded config and whether it trains data-parallel.
//! - [`ResolvedConfig`] ([`config`]): the config from defaults, file and `--set`s, with the
//!   [`RunHeader`] keys of `[run]` every application has.
//! - [`train_app`] ([`app`]): open the run, train (one process or one rank), save the model,
//!   report through a [`Reporter`], close the run; every report ends with a [`RunRecord`].
//! - [`place`]: run directories, tags and tracking; [`device`]: `--device`;
//!   [`distributed`]: `--distributed mpi`; [`progress`]: progress bars.
//! - [`cli`]: the command line of every binary.

pub mod app;
pub mod cli;
pub mod config;
pub mod device;
pub mod distributed;
pub mod folder;
#[cfg(all(feature = "cuda", feature = "mpi"))]
pub mod nccl;
pub mod place;
pub mod progress;

use std::path::PathBuf;

use anyhow::{Result, bail};
use flowcore::train::EpochStats;
use serde::{Deserialize, Serialize};

pub use app::{AppRun, Reporter, Training, train_app};
pub use config::ResolvedConfig;
pub use device::{device, select_device};
pub use distributed::{Distributed, Ranks};
pub use place::{git_commit, standard_tags, tracking_from_env};

/// At the top of a library entry point: called from a thread outside rayon's pools (a test, a
/// user's program), it calls the function again in a pool ([`flowcore::threads::in_pool`]) and
/// returns what that returns; a binary's main thread is in the pool and goes on.
macro_rules! reenter_in_pool {
    ($call:expr) => {
        if !flowcore::threads::on_pool_thread() {
            return flowcore::threads::in_pool(|| $call);
        }
    };
}
pub(crate) use reenter_in_pool;

/// What identifies an application to the harness.
#[derive(Debug)]
pub struct AppInfo {
    /// The binary's name, the `app` tag of its runs: `train_flowmodelsN`.
    pub name: &'static str,
    /// What it does, in a line (its `--help`).
    pub about: &'static str,
    /// The embedded default config, `apps/configs/appN.toml`.
    pub default_config: &'static str,
    /// Whether it may train as one rank of several (`--distributed`).
    pub data_parallel: bool,
}

/// What `train` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// A config file merged over the defaults.
    pub config: Option<PathBuf>,
    /// `group.key=value` overrides, applied last.
    pub sets: Vec<String>,
    /// Write the run here instead of a new directory under `run.output_dir`.
    pub run_dir: Option<PathBuf>,
    /// Continue the run in this directory from its newest checkpoint, with its config.
    pub resume: Option<PathBuf>,
    /// An MLflow tracking server (`http://host:port`).
    pub tracking_uri: Option<String>,
    /// Override `run.tracking_dir`.
    pub tracking_dir: Option<PathBuf>,
    /// Draw progress bars when on a terminal.
    pub progress: bool,
    /// One process, or one rank of a data-parallel run.
    pub distributed: Distributed,
}

impl TrainOptions {
    /// Refuse `--distributed` for an application that trains in one process only.
    pub fn check_for(&self, app: &AppInfo) -> Result<()> {
        if !app.data_parallel && self.distributed != Distributed::None {
            bail!(
                "--distributed: {} trains in one process; data-parallel training is in \
                 train_flowmodels1 and train_flowmodels2",
                app.name
            );
        }
        Ok(())
    }
}

/// The keys of `[run]` every application has: where its runs go and how they are tracked.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunHeader {
    /// Run directories are `output_dir/<name>-<timestamp>`.
    pub name: String,
    /// Where run directories go.
    pub output_dir: PathBuf,
    /// The local MLflow store.
    pub tracking_dir: PathBuf,
    /// MLflow experiment name.
    pub experiment: String,
    /// Log step metrics every this many steps.
    pub log_every: u64,
}

/// What every application's report ends with: how training went and where its outputs are.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunRecord {
    /// Mean optimizer steps per second over the epochs of this process.
    pub steps_per_sec: f64,
    /// Wall time of training, seconds.
    pub train_seconds: f64,
    /// Epochs trained in all, resumed ones included.
    pub epochs: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// The epoch whose weights the model has: the best by validation loss when restored
    /// (early stopping or `training.restore_best`), else the last.
    #[serde(default)]
    pub model_epoch: usize,
    /// What the user should know about the run (validation diverging from training, say).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Per-epoch statistics.
    pub history: Vec<EpochStats>,
    /// The figures, relative to the run directory.
    pub figures: Vec<String>,
    /// The local tracking run.
    pub tracking_run: PathBuf,
    /// The run on the tracking server, if any.
    pub remote_run_id: Option<String>,
}

impl RunRecord {
    /// The figures (in `run_dir`) and the tracking run, a line each, for a terminal.
    pub fn listing(&self, run_dir: &std::path::Path) -> String {
        let mut out = String::new();
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for f in &self.figures {
            out.push_str(&format!("figure: {}\n", run_dir.join(f).display()));
        }
        out.push_str(&format!("tracking: {}\n", self.tracking_run.display()));
        out
    }
}

/// The result of an application's `train`: where the run went and its report.
#[derive(Debug)]
pub struct TrainSummary<R> {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The report, also in `run_dir/report.json`.
    pub report: R,
}

/// What each binary does first: mimalloc keeps freed memory longer
/// ([`crate::keep_freed_memory`]), the main thread joins rayon's pool, and the pool's other
/// threads poll for work until the guard is dropped (see [`flowcore::threads::keep_awake`]),
/// unless `FLOWMODELS_KEEP_AWAKE=0`, for a machine shared with other work.
pub fn threads() -> Option<flowcore::threads::KeepAwake> {
    crate::keep_freed_memory();
    flowcore::threads::join_pool();
    if std::env::var("FLOWMODELS_KEEP_AWAKE").is_ok_and(|v| v.trim() == "0") {
        return None;
    }
    flowcore::threads::keep_awake()
}

/// The model of a finished run of `app` in `run`: an error naming the folder when it has no
/// model, or when the model is another application's.
pub fn load_model(run: &std::path::Path, app: &AppInfo) -> Result<flowcore::Flow> {
    let path = run.join("model.safetensors");
    if !path.exists() {
        bail!(
            "{} has no model.safetensors: is it a finished {} run directory?",
            run.display(),
            app.name
        );
    }
    let (flow, header) = flowcore::checkpoint::load_flow(&path, &device())?;
    match header.extra.get("app").and_then(|a| a.as_str()) {
        Some(other) if other != app.name => {
            bail!("{} is a run of {other}, not of {}", run.display(), app.name)
        }
        _ => Ok(flow),
    }
}

/// The resolved config of `opts` over `defaults`, as TOML.
pub fn resolved_config(defaults: &str, opts: &TrainOptions) -> Result<String> {
    let (table, _) = config::resolve_options(defaults, opts)?;
    Ok(toml::to_string(&table)?)
}
