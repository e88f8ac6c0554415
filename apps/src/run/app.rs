//! The one sequence every application's training runs: open the run, train (one process or
//! one rank of several), save the model, let the application report, close the run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use flowcore::checkpoint::save_flow;
use flowcore::train::{
    self, Collective, DataSource, Divergence, FitOutcome, Objective, Observer, TrainingConfig,
};
use flowcore::{ArchitectureConfig, BaseConfig, Flow};
use flowtrack::Tracker;
use serde::Serialize;

use super::place::{close_run, open_run};
use super::progress::Progress;
use super::{ResolvedConfig, RunRecord, TrainOptions, TrainSummary, device};

/// What identifies an application's run: its resolved config (and with it the application),
/// the tags of its run (also in its model's checkpoint header) and the files it writes into the
/// run directory before training.
pub struct AppRun<'a> {
    /// The resolved config; `config.toml` of the run.
    pub config: &'a ResolvedConfig,
    /// Tags beside the standard ones.
    pub tags: Vec<(String, String)>,
    /// `(file name, contents)` written into the run directory before training, tracked under
    /// `report`: what the application's other commands need besides the model.
    pub files: Vec<(&'static str, String)>,
}

/// What is trained: the flow of `model` on `base`, to minimise `objective` on `data`.
pub struct Training<'a, D: DataSource> {
    /// The architecture, with the data's shape.
    pub model: &'a ArchitectureConfig,
    /// The base distribution.
    pub base: BaseConfig,
    /// What training minimises.
    pub objective: &'a dyn Objective,
    /// The data; the report gets it back.
    pub data: &'a mut D,
    /// The `[training]` group.
    pub config: &'a TrainingConfig,
}

/// Open the run, train, save `model.safetensors`, report with `report` (which gets the data
/// back) and close the run: `report.json` and a FINISHED tracking run, or the error tagged and
/// a FAILED one. As a rank other than 0 of a data-parallel run, train only and return `None`.
pub fn train_app<D: DataSource, R: Serialize>(
    opts: &TrainOptions,
    ranks: &dyn Collective,
    run: AppRun,
    training: Training<D>,
    report: impl FnOnce(&mut Reporter, &mut D) -> Result<R>,
) -> Result<Option<TrainSummary<R>>> {
    let app = run.config.app.name;
    let Training {
        model,
        base,
        objective,
        data,
        config,
    } = training;
    let flow = Flow::with_base(
        model.clone(),
        base,
        Some(config.seed),
        &config.autodiff_device(&device()),
    )
    .with_context(|| "cannot build the model from [model]")?;
    if !ranks.is_root() {
        fit(
            flow,
            objective,
            data,
            config,
            Path::new(""),
            opts,
            &mut [],
            ranks,
        )
        .with_context(|| format!("training stopped on rank {}", ranks.rank()))?;
        return Ok(None);
    }
    let (folder, mut tracker) = open_run(opts, run.config, &run.tags)?;
    let run_dir = folder.dir.clone();
    let result = (|| {
        for (file, contents) in &run.files {
            let path = run_dir.join(file);
            flowcore::io::write_atomic(&path, contents.as_bytes())?;
            tracker.log_artifact(&path, Some("report"));
        }
        tracing::info!(
            "run {}: {} x {} steps of batch {}",
            run_dir.display(),
            config.epochs,
            config.steps_per_epoch,
            config.batch_size
        );
        let started = Instant::now();
        let mut progress = Progress::new(config.epochs);
        let mut quiet = NoProgress;
        let progress: &mut dyn Observer = if opts.progress {
            &mut progress
        } else {
            &mut quiet
        };
        let mut config_file = ConfigOnStart {
            run_dir: &run_dir,
            table: folder.resumed.is_some().then_some(&run.config.table),
            error: None,
        };
        let observers: &mut [&mut dyn Observer] = &mut [progress, &mut config_file, &mut tracker];
        let outcome = fit(
            flow, objective, data, config, &run_dir, opts, observers, ranks,
        )
        .with_context(|| format!("training run {} stopped", run_dir.display()))?;
        if let Some(e) = config_file.error.take() {
            return Err(e);
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let mut extra = serde_json::Map::new();
        extra.insert("app".into(), app.into());
        for (k, v) in &run.tags {
            extra.insert(k.clone(), v.clone().into());
        }
        save_flow(
            &outcome.flow,
            &run_dir.join("model.safetensors"),
            extra.into(),
        )?;
        let mut reporter = Reporter {
            run_dir: &run_dir,
            flow: outcome.flow.valid(),
            outcome: &outcome,
            training: config,
            train_seconds,
            tracker: &mut tracker,
            figures: Vec::new(),
        };
        report(&mut reporter, data)
    })();
    let report = close_run(tracker, &run_dir, result)?;
    drop(folder);
    Ok(Some(TrainSummary { run_dir, report }))
}

/// What an application's report step gets: the run, the trained flow and the tracking run,
/// with the figures and metrics it adds.
pub struct Reporter<'a> {
    /// The run directory.
    pub run_dir: &'a Path,
    /// The trained flow, without autodiff.
    pub flow: Flow,
    /// What training returned.
    pub outcome: &'a FitOutcome,
    /// The `[training]` group it trained with.
    pub training: &'a TrainingConfig,
    train_seconds: f64,
    tracker: &'a mut Tracker,
    figures: Vec<String>,
}

impl Reporter<'_> {
    /// `file` in the run directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.run_dir.join(file)
    }

    /// Where to draw the figure `file`: it is listed in the report and tracked under `plots`.
    pub fn figure(&mut self, file: &str) -> PathBuf {
        self.figures.push(file.to_string());
        self.path(file)
    }

    /// Track `path` as an artifact, under `dir` when given.
    pub fn artifact(&mut self, path: &Path, dir: Option<&str>) {
        self.tracker.log_artifact(path, dir);
    }

    /// Write `value` as JSON to `file` in the run directory and track it under `report`.
    pub fn write_json(&mut self, file: &str, value: &impl Serialize) -> Result<()> {
        let path = self.path(file);
        flowcore::io::write_atomic(&path, serde_json::to_string_pretty(value)?.as_bytes())?;
        self.artifact(&path, Some("report"));
        Ok(())
    }

    /// Log a final metric, at the last step.
    pub fn metric(&mut self, key: &str, value: f64) {
        let step = (self.outcome.history.len() * self.training.steps_per_epoch) as u64;
        self.tracker.log_metric(key, value, step);
    }

    /// The end of the report, what every application's report has: the figures are tracked and
    /// the metrics sent.
    pub fn record(&mut self) -> RunRecord {
        for f in &self.figures {
            self.tracker
                .log_artifact(&self.run_dir.join(f), Some("plots"));
        }
        self.tracker.flush();
        let outcome = self.outcome;
        let warnings: Vec<String> = Divergence::find(&outcome.history)
            .map(|d| d.message(outcome.restored_best))
            .into_iter()
            .collect();
        for w in &warnings {
            tracing::warn!("{w}");
        }
        RunRecord {
            steps_per_sec: outcome.steps_per_sec(self.training.batch_size),
            train_seconds: self.train_seconds,
            epochs: outcome.history.len(),
            stopped_early: outcome.stopped_early,
            model_epoch: if outcome.restored_best {
                outcome.best.1
            } else {
                outcome.history.last().map_or(0, |e| e.epoch)
            },
            warnings,
            history: self.outcome.history.clone(),
            figures: self.figures.clone(),
            tracking_run: self.tracker.local_run_dir().to_path_buf(),
            remote_run_id: self.tracker.remote_run_id().map(str::to_string),
        }
    }
}

struct NoProgress;
impl Observer for NoProgress {}

/// Writes a resumed run's `config.toml` when training starts, not before: a resume that cannot
/// start (a damaged checkpoint, say) leaves the folder as it was.
struct ConfigOnStart<'a> {
    run_dir: &'a Path,
    table: Option<&'a toml::Table>,
    error: Option<anyhow::Error>,
}

impl Observer for ConfigOnStart<'_> {
    fn on_epoch_start(&mut self, _epoch: usize, _steps: usize) {
        if let Some(table) = self.table.take()
            && let Err(e) = super::place::write_config(self.run_dir, table)
        {
            self.error = Some(e);
        }
    }
}

/// Train on this rank, from the newest checkpoint in `run_dir` when resuming.
#[allow(clippy::too_many_arguments)]
fn fit(
    flow: Flow,
    objective: &dyn Objective,
    data: &mut dyn DataSource,
    config: &TrainingConfig,
    run_dir: &Path,
    opts: &TrainOptions,
    observers: &mut [&mut dyn Observer],
    ranks: &dyn Collective,
) -> Result<FitOutcome> {
    Ok(train::fit_data_parallel(
        flow,
        objective,
        data,
        config,
        run_dir,
        opts.resume.is_some(),
        &config.autodiff_device(&device()),
        observers,
        ranks,
    )?)
}
