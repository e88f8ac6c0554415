//! What every application does around training: name and create the run directory, start
//! tracking with the standard tags, and set up logging in binaries.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use burn::prelude::*;
use flowcore::tracking::{RunStatus, Tracker, detect_run_env};
use flowcore::train::{
    self, Collective, DataSource, FitOutcome, Objective, Observer, TrainingConfig,
};
use flowcore::{ArchitectureConfig, BaseConfig, Flow};
use serde::Serialize;

pub use crate::distributed::{Distributed, Ranks, one_process};
use crate::progress::Progress;

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

/// The command-line flags every application's `train` takes.
#[derive(clap::Args, Clone, Debug, Default)]
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
    /// `mpirun -np N` (a build with `--features mpi`); training.batch_size is per rank.
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
        let (tracking_uri, tracking_dir) = tracking_from_env();
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

static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();

/// The device the applications compute on: the one `--device` selected, else the CPU.
pub fn device() -> Device {
    DEVICE.get().cloned().unwrap_or_else(Device::flex)
}

/// Select the process's device from `cpu`, `cuda` or `cuda:N`. CUDA needs a build with
/// `--features cuda` and a working driver and GPU; either missing is an error that says so.
pub fn select_device(spec: &str) -> Result<()> {
    let device = parse_device(spec)?;
    if DEVICE.set(device.clone()).is_err() && DEVICE.get() != Some(&device) {
        anyhow::bail!("--device {spec}: the process already computes on another device");
    }
    Ok(())
}

fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim();
    if spec == "cpu" || spec == "flex" {
        return Ok(Device::flex());
    }
    let index = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(":local") => local_rank(),
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .with_context(|| format!("--device {spec}: expected cuda, cuda:N or cuda:local"))?,
        None => anyhow::bail!("--device {spec}: expected cpu, cuda, cuda:N or cuda:local"),
    };
    cuda_device(spec, index)
}

/// This process's rank among the ranks of a job on its node, as the MPI launcher says
/// (OpenMPI, MPICH, Slurm), else 0: `--device cuda:local` gives each rank of a node its own GPU.
fn local_rank() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(0)
}

#[cfg(feature = "cuda")]
fn cuda_device(spec: &str, index: usize) -> Result<Device> {
    // The driver and NVRTC load at first use; a missing driver or GPU panics there. Probe once
    // with a tiny computation and turn that into an error.
    let device = Device::cuda(index);
    let probe = device.clone();
    let silenced = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(move || {
        Tensor::<1>::from_floats([1.0, 2.0], &probe)
            .sum()
            .into_scalar::<f64>()
    });
    std::panic::set_hook(silenced);
    match result {
        Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(device),
        Ok(v) => anyhow::bail!("--device {spec}: the GPU computed 1 + 2 = {v}"),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no message".into());
            anyhow::bail!(
                "--device {spec}: no usable NVIDIA driver or GPU {index} was found ({why})"
            )
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(spec: &str, _index: usize) -> Result<Device> {
    anyhow::bail!(
        "--device {spec}: this build has no CUDA support; build with `cargo build --release \
         --features cuda` (see README: Building)"
    )
}

/// The resolved config of `opts` over `defaults`, as TOML.
pub fn resolved_config(defaults: &str, opts: &TrainOptions) -> Result<String> {
    let file = opts
        .resume
        .as_ref()
        .map(|d| d.join("config.toml"))
        .or(opts.config.clone());
    let table = crate::config::resolve_table(defaults, file.as_deref(), &opts.sets)?;
    Ok(toml::to_string(&table)?)
}

/// `YYYYmmdd-HHMMSS` in UTC, for run directory names.
pub fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A new run directory `output_dir/<name>-<timestamp>` (with a suffix if that exists).
pub fn new_run_dir(output_dir: &Path, name: &str) -> Result<PathBuf> {
    let stem = format!("{name}-{}", timestamp());
    let mut dir = output_dir.join(&stem);
    let mut k = 1;
    while dir.exists() {
        k += 1;
        dir = output_dir.join(format!("{stem}-{k}"));
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    Ok(dir)
}

/// The git commit: `FLOWMODELS_GIT_COMMIT` (set in the Docker images), else that of the working
/// directory when it is in a git checkout.
pub fn git_commit() -> Option<String> {
    // Containers carry no .git: the image records its commit in the environment.
    if let Ok(commit) = std::env::var("FLOWMODELS_GIT_COMMIT")
        && !commit.is_empty()
        && commit != "unknown"
    {
        return Some(commit);
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The standard tags: `app`, `run_env` (local, ec2, awsbatch), the git commit (also under
/// MLflow's own key, which its UI shows), and the AWS Batch job id when there is one.
pub fn standard_tags(app: &str) -> Vec<(String, String)> {
    let mut tags = vec![
        ("app".to_string(), app.to_string()),
        ("run_env".to_string(), detect_run_env().to_string()),
    ];
    if let Some(commit) = git_commit() {
        tags.push(("git_commit".into(), commit.clone()));
        tags.push(("mlflow.source.git.commit".into(), commit));
    }
    if let Ok(job) = std::env::var("AWS_BATCH_JOB_ID") {
        tags.push(("aws_batch_job_id".into(), job));
    }
    tags
}

/// The tracking server from `MLFLOW_TRACKING_URI`, when it names one over http(s); a `file:`
/// URI or path selects the local store instead, returned as the second value.
pub fn tracking_from_env() -> (Option<String>, Option<PathBuf>) {
    match std::env::var("MLFLOW_TRACKING_URI") {
        Ok(uri) if uri.starts_with("http://") || uri.starts_with("https://") => (Some(uri), None),
        Ok(uri) if !uri.is_empty() => {
            let path = uri.strip_prefix("file://").unwrap_or(&uri);
            (None, Some(PathBuf::from(path)))
        }
        _ => (None, None),
    }
}

/// Start tracking a run.
pub fn start_tracker(
    store: &Path,
    experiment: &str,
    run_name: &str,
    remote: Option<&str>,
    tags: &[(String, String)],
) -> Result<Tracker> {
    Tracker::start(store, experiment, run_name, remote, tags)
        .with_context(|| format!("cannot write the tracking store {}", store.display()))
}

/// Where a run goes, from an application's `[run]` group.
pub struct RunPlace<'a> {
    /// New run directories go here.
    pub output_dir: &'a Path,
    /// Run directories are `<name>-<timestamp>`.
    pub name: &'a str,
    /// The local tracking store, unless the options name another.
    pub tracking_dir: &'a Path,
    /// The MLflow experiment.
    pub experiment: &'a str,
    /// Log step metrics every this many steps.
    pub log_every: u64,
}

/// Open a run: the run directory (new, `--run-dir`, or the one resumed), the resolved config
/// written into it, and tracking started with the standard tags plus `tags`, the flattened
/// config as params and the config as an artifact.
pub fn open_run(
    opts: &TrainOptions,
    place: RunPlace,
    app: &str,
    table: &toml::Table,
    tags: Vec<(String, String)>,
) -> Result<(PathBuf, Tracker)> {
    let run_dir = match (&opts.resume, &opts.run_dir) {
        (Some(dir), _) | (None, Some(dir)) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create run directory {}", dir.display()))?;
            dir.clone()
        }
        (None, None) => new_run_dir(place.output_dir, place.name)?,
    };
    let resolved = toml::to_string(table).context("cannot write the resolved config")?;
    flowcore::checkpoint::write_atomic(&run_dir.join("config.toml"), resolved.as_bytes())?;
    let store = opts
        .tracking_dir
        .clone()
        .unwrap_or_else(|| place.tracking_dir.to_path_buf());
    let run_name = run_dir
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().to_string());
    let mut all_tags = standard_tags(app);
    all_tags.push(("run_dir".into(), run_dir.display().to_string()));
    if let Some(dir) = &opts.resume {
        all_tags.push(("resumed_from".into(), dir.display().to_string()));
    }
    all_tags.extend(tags);
    let mut tracker = start_tracker(
        &store,
        place.experiment,
        &run_name,
        opts.tracking_uri.as_deref(),
        &all_tags,
    )?
    .with_step_every(place.log_every);
    tracker.log_params(&crate::config::flatten(table));
    tracker.log_artifact(&run_dir.join("config.toml"), None);
    Ok((run_dir, tracker))
}

struct NoProgress;
impl Observer for NoProgress {}

fn build_flow(
    model: &ArchitectureConfig,
    base: &BaseConfig,
    training: &TrainingConfig,
) -> Result<Flow> {
    Flow::with_base(
        model.clone(),
        base.clone(),
        Some(training.seed),
        &training.autodiff_device(&device()),
    )
    .with_context(|| "cannot build the model from [model]")
}

/// Build the flow of `model` on `base` and train it to minimise `objective` on `data`, with
/// progress (when asked) and tracking, from the newest checkpoint when resuming; as rank 0 of
/// `ranks` (alone, or with [`fit_worker`]s).
#[allow(clippy::too_many_arguments)]
pub fn fit_tracked(
    model: &ArchitectureConfig,
    base: &BaseConfig,
    objective: &dyn Objective,
    data: &mut dyn DataSource,
    training: &TrainingConfig,
    run_dir: &Path,
    opts: &TrainOptions,
    tracker: &mut Tracker,
    ranks: &dyn Collective,
) -> Result<FitOutcome> {
    let flow = build_flow(model, base, training)?;
    let mut progress = Progress::new(training.epochs);
    let mut quiet = NoProgress;
    let progress_obs: &mut dyn Observer = if opts.progress {
        &mut progress
    } else {
        &mut quiet
    };
    train::fit_data_parallel(
        flow,
        objective,
        data,
        training,
        run_dir,
        opts.resume.is_some(),
        &training.autodiff_device(&device()),
        &mut [progress_obs, tracker],
        ranks,
    )
    .with_context(|| format!("training run {} stopped", run_dir.display()))
}

/// A rank other than 0 of a data-parallel run: the same training as [`fit_tracked`] on its
/// share of each batch, without progress, tracking or a run directory (rank 0 writes the run,
/// and alone reads the checkpoint to resume from).
pub fn fit_worker(
    model: &ArchitectureConfig,
    base: &BaseConfig,
    objective: &dyn Objective,
    data: &mut dyn DataSource,
    training: &TrainingConfig,
    opts: &TrainOptions,
    ranks: &dyn Collective,
) -> Result<()> {
    let flow = build_flow(model, base, training)?;
    train::fit_data_parallel(
        flow,
        objective,
        data,
        training,
        Path::new(""),
        opts.resume.is_some(),
        &training.autodiff_device(&device()),
        &mut [],
        ranks,
    )
    .with_context(|| format!("training stopped on rank {}", ranks.rank()))?;
    Ok(())
}

/// The result of an application's `train`: where the run went and its report.
#[derive(Debug)]
pub struct TrainSummary<R> {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The report, also in `run_dir/report.json`.
    pub report: R,
}

/// Write `text` to `out`, atomically, or to stdout when no path is given.
pub fn write_output(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(path) => flowcore::checkpoint::write_atomic(path, text.as_bytes())?,
        None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?,
    }
    Ok(())
}

/// A binary's exit: success, or the error with its causes on stderr and a failure code.
pub fn exit(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Close a run: on success write `report.json` and end the tracked run FINISHED (after
/// `finish` has filled in the tracking run's place), on failure tag the error and end it FAILED.
pub fn close_run<R: Serialize>(
    mut tracker: Tracker,
    run_dir: &Path,
    result: Result<R>,
    finish: impl FnOnce(&mut R, PathBuf, Option<String>),
) -> Result<R> {
    match result {
        Ok(mut report) => {
            let remote = tracker.remote_run_id().map(str::to_string);
            let local = tracker.finish(RunStatus::Finished);
            finish(&mut report, local, remote);
            let json = serde_json::to_string_pretty(&report)?;
            flowcore::checkpoint::write_atomic(&run_dir.join("report.json"), json.as_bytes())?;
            Ok(report)
        }
        Err(e) => {
            tracker.set_tag("error", &format!("{e:#}"));
            tracker.finish(RunStatus::Failed);
            Err(e)
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

#[cfg(test)]
mod tests {
    #[test]
    fn devices_parse_and_a_missing_cuda_build_says_so() {
        assert!(super::parse_device("cpu").is_ok());
        let e = format!("{:#}", super::parse_device("gpu").unwrap_err());
        assert!(
            e.contains("expected cpu, cuda, cuda:N or cuda:local"),
            "{e}"
        );
        let e = format!("{:#}", super::parse_device("cuda:x").unwrap_err());
        assert!(e.contains("cuda:N"), "{e}");
        // Each rank of a node takes the GPU of its index there; 0 outside MPI.
        assert_eq!(super::local_rank(), 0);
        #[cfg(not(feature = "cuda"))]
        {
            let e = format!("{:#}", super::parse_device("cuda:1").unwrap_err());
            assert!(
                e.contains("no CUDA support") && e.contains("--features cuda"),
                "{e}"
            );
        }
    }

    #[test]
    fn timestamp_has_the_calendar_shape() {
        let t = super::timestamp();
        assert_eq!(t.len(), 15, "{t}");
        let year: i32 = t[..4].parse().unwrap();
        let month: u32 = t[4..6].parse().unwrap();
        let day: u32 = t[6..8].parse().unwrap();
        assert!(
            year >= 2024 && (1..=12).contains(&month) && (1..=31).contains(&day),
            "{t}"
        );
    }
}
