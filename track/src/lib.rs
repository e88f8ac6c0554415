//! flowtrack: run tracking for flowmodels, MLflow-compatible. Every run is always written to a local store (an `mlruns/`
//! tree that `mlflow ui --backend-store-uri ./mlruns` opens); when `MLFLOW_TRACKING_URI` names
//! an http(s) server it is also sent there through the REST API. A server that fails is
//! reported once and dropped; the local store still has everything.

mod local;
mod rest;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use local::LocalStore;
pub use rest::RestClient;

use flowcore::train::{EpochStats, Observer, StepStats};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Completed.
    Finished,
    /// Stopped by an error.
    Failed,
    /// Its process ended without closing it (killed, or its machine lost).
    Killed,
}

impl RunStatus {
    fn mlflow_name(self) -> &'static str {
        match self {
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }

    fn file_store_code(self) -> u8 {
        match self {
            Self::Finished => 3,
            Self::Failed => 4,
            Self::Killed => 5,
        }
    }
}

/// Milliseconds since the Unix epoch, MLflow's timestamps.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where the run executes, for the `run_env` tag: `awsbatch` when `AWS_BATCH_JOB_ID` is set,
/// `ec2` when the machine's DMI data name Amazon EC2, else `local`.
pub fn detect_run_env() -> &'static str {
    if std::env::var_os("AWS_BATCH_JOB_ID").is_some() {
        return "awsbatch";
    }
    let ec2 = [
        "/sys/class/dmi/id/board_asset_tag",
        "/sys/class/dmi/id/sys_vendor",
        "/sys/hypervisor/uuid",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .any(|s| {
        let s = s.trim().to_ascii_lowercase();
        s.starts_with("i-") || s.starts_with("ec2") || s.contains("amazon ec2")
    });
    if ec2 { "ec2" } else { "local" }
}

/// One tracked run.
pub struct Tracker {
    local: LocalStore,
    remote: Option<RestClient>,
    pending: Vec<(String, f64, u64, u64)>,
    step_every: u64,
}

impl Tracker {
    /// Start a run in experiment `experiment` under the local store `store_dir`, and on the
    /// server `remote_uri` too when given. Errors only when the local store cannot be written.
    pub fn start(
        store_dir: &Path,
        experiment: &str,
        run_name: &str,
        remote_uri: Option<&str>,
        tags: &[(String, String)],
    ) -> std::io::Result<Self> {
        let local = LocalStore::start(store_dir, experiment, run_name, tags)?;
        let remote = remote_uri.and_then(|uri| match RestClient::start(uri, experiment, run_name, tags) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::warn!(
                    "tracking server {uri} is not reachable ({e}); the run is tracked locally in {}",
                    local.run_dir().display()
                );
                None
            }
        });
        Ok(Self {
            local,
            remote,
            pending: Vec::new(),
            step_every: 10,
        })
    }

    /// Continue the run whose local store is `local_run_dir`, and on the server `remote` (`uri`,
    /// run id) when given. Tags `tags` and, when the run was still RUNNING (its process ended
    /// without closing it), `interrupted`. Errors only when the local run cannot be reopened.
    pub fn resume(
        local_run_dir: &Path,
        remote: Option<(&str, &str)>,
        tags: &[(String, String)],
    ) -> std::io::Result<Self> {
        let (local, was_running) = LocalStore::resume(local_run_dir)?;
        let remote = remote.and_then(|(uri, id)| match RestClient::resume(uri, id) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::warn!(
                    "tracking server {uri} cannot continue run {id} ({e}); the run is tracked \
                     locally in {}",
                    local.run_dir().display()
                );
                None
            }
        });
        let mut this = Self {
            local,
            remote,
            pending: Vec::new(),
            step_every: 10,
        };
        if was_running {
            tracing::warn!(
                "tracking run {} was still RUNNING: its process ended without closing it",
                this.local_run_dir().display()
            );
            this.set_tag(
                "interrupted",
                &format!("ended without closing; resumed at {} ms", now_ms()),
            );
        }
        for (k, v) in tags {
            this.set_tag(k, v);
        }
        Ok(this)
    }

    /// Log per-step metrics only every `n` steps (default 10).
    pub fn with_step_every(mut self, n: u64) -> Self {
        self.step_every = n.max(1);
        self
    }

    /// The local run directory (`mlruns/<experiment>/<run>`).
    pub fn local_run_dir(&self) -> &Path {
        self.local.run_dir()
    }

    /// The id of the run on the server, when there is one.
    pub fn remote_run_id(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.run_id())
    }

    fn remote_call(&mut self, what: &str, call: impl FnOnce(&RestClient) -> Result<(), String>) {
        if let Some(client) = &self.remote
            && let Err(e) = call(client)
        {
            tracing::warn!(
                "tracking server failed on {what} ({e}); going on with the local store only, in {}",
                self.local.run_dir().display()
            );
            self.remote = None;
        }
    }

    /// Log parameters (MLflow params are strings, written once).
    pub fn log_params(&mut self, params: &[(String, String)]) {
        if let Err(e) = self.local.log_params(params) {
            tracing::warn!("local tracking store: {e}");
        }
        self.remote_call("log params", |r| r.log_batch(&[], params, &[]));
    }

    /// Log one metric value at a step.
    pub fn log_metric(&mut self, key: &str, value: f64, step: u64) {
        self.pending.push((key.to_string(), value, step, now_ms()));
    }

    /// Send buffered metrics.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let metrics = std::mem::take(&mut self.pending);
        if let Err(e) = self.local.log_metrics(&metrics) {
            tracing::warn!("local tracking store: {e}");
        }
        self.remote_call("log metrics", |r| {
            metrics
                .chunks(1000)
                .try_for_each(|chunk| r.log_batch(chunk, &[], &[]))
        });
    }

    /// Set a tag.
    pub fn set_tag(&mut self, key: &str, value: &str) {
        if let Err(e) = self.local.set_tag(key, value) {
            tracing::warn!("local tracking store: {e}");
        }
        self.remote_call("set tag", |r| r.set_tag(key, value));
    }

    /// Copy a file into the run's artifacts, under `dir` when given.
    pub fn log_artifact(&mut self, file: &Path, dir: Option<&str>) {
        if let Err(e) = self.local.log_artifact(file, dir) {
            tracing::warn!("local tracking store: {}: {e}", file.display());
        }
        self.remote_call("upload artifact", |r| r.log_artifact(file, dir));
    }

    /// End the run.
    pub fn finish(mut self, status: RunStatus) -> PathBuf {
        self.flush();
        if let Err(e) = self.local.finish(status) {
            tracing::warn!("local tracking store: {e}");
        }
        self.remote_call("end run", |r| r.finish(status));
        self.local.run_dir().to_path_buf()
    }
}

impl Observer for Tracker {
    fn on_step(&mut self, s: &StepStats) {
        if s.step.is_multiple_of(self.step_every) {
            for (k, v) in [
                ("train_loss", Some(s.loss)),
                ("train_bits_per_dim", s.bits_per_dim),
                ("learning_rate", Some(s.learning_rate)),
                ("grad_norm", Some(s.grad_norm)),
                ("grad_norm_clipped", Some(s.grad_norm_clipped)),
            ] {
                if let Some(v) = v {
                    self.log_metric(k, v, s.step);
                }
            }
            for (k, v) in &s.parts {
                self.log_metric(&format!("train_{k}"), *v, s.step);
            }
        }
    }

    fn on_epoch_end(&mut self, e: &EpochStats) {
        let step = e.epoch as u64;
        let mut metrics = vec![
            (format!("epoch_train_{}", e.loss), e.train_loss),
            (format!("val_{}", e.loss), e.val_loss),
            ("samples_per_sec".to_string(), e.samples_per_sec),
        ];
        if let Some(b) = e.val_bits_per_dim {
            metrics.push(("val_bits_per_dim".to_string(), b));
        }
        if let Some(n) = e.ode_nfe_per_step {
            metrics.push(("ode_nfe_per_step".to_string(), n));
        }
        metrics.extend(e.val_parts.iter().map(|(k, v)| (format!("val_{k}"), *v)));
        for (k, v) in metrics {
            self.log_metric(&k, v, step);
        }
        self.flush();
    }
}
