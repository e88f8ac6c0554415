//! MLflow's file store layout, written directly: `mlruns/<experiment id>/meta.yaml`, and per run
//! `meta.yaml`, `params/<key>`, `metrics/<key>` (lines `timestamp value step`), `tags/<key>`
//! and `artifacts/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{RunStatus, now_ms};

/// A run in a local MLflow file store.
pub struct LocalStore {
    run_dir: PathBuf,
    experiment_id: String,
    run_id: String,
    run_name: String,
    start_ms: u64,
}

fn yaml_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Keys become file names: MLflow allows `/` in keys as sub-directories, nothing else odd.
fn check_key(key: &str) -> std::io::Result<()> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && !key.split('/').any(|p| p == ".." || p == ".")
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || "_-. /".contains(c));
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{key}` is not a valid MLflow key"),
        ))
    }
}

fn write_file(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    flowcore::io::write_atomic(path, content.as_bytes()).map_err(std::io::Error::other)
}

fn random_hex32() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl LocalStore {
    /// Create (or reuse, by name) the experiment and start a run in it.
    pub fn start(
        store: &Path,
        experiment: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> std::io::Result<Self> {
        fs::create_dir_all(store)?;
        let store = fs::canonicalize(store)?;
        let experiment_id = Self::experiment_id(&store, experiment)?;
        let run_id = random_hex32();
        let run_dir = store.join(&experiment_id).join(&run_id);
        fs::create_dir_all(run_dir.join("artifacts"))?;
        for sub in ["metrics", "params", "tags"] {
            fs::create_dir_all(run_dir.join(sub))?;
        }
        let this = Self {
            run_dir,
            experiment_id,
            run_id,
            run_name: run_name.to_string(),
            start_ms: now_ms(),
        };
        this.write_meta(1, None)?;
        this.set_tag("mlflow.runName", run_name)?;
        for (k, v) in tags {
            this.set_tag(k, v)?;
        }
        Ok(this)
    }

    /// Reopen the run in `run_dir` (`mlruns/<experiment>/<run>`), as it continues: it is
    /// RUNNING again. Returns it and whether it was still RUNNING, that is whether the process
    /// that ran it ended without closing it (killed, or its machine lost).
    pub fn resume(run_dir: &Path) -> std::io::Result<(Self, bool)> {
        let (this, status) = Self::open(run_dir)?;
        this.write_meta(1, None)?;
        Ok((this, status == 1))
    }

    /// The run in `run_dir` as its `meta.yaml` describes it, and its status code.
    fn open(run_dir: &Path) -> std::io::Result<(Self, u8)> {
        let meta = fs::read_to_string(run_dir.join("meta.yaml"))?;
        let field = |key: &str| -> std::io::Result<String> {
            meta.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .map(|v| v.trim().trim_matches('\'').replace("''", "'"))
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}/meta.yaml has no {key}", run_dir.display()),
                    )
                })
        };
        let this = Self {
            run_dir: run_dir.to_path_buf(),
            experiment_id: field("experiment_id")?,
            run_id: field("run_id")?,
            run_name: field("run_name")?,
            start_ms: field("start_time")?.parse().unwrap_or_else(|_| now_ms()),
        };
        let status = field("status")?.parse().unwrap_or(0);
        Ok((this, status))
    }

    /// Mark KILLED, tagged `interrupted`, every RUNNING run of `experiment` in `store` whose
    /// process is gone, as `alive` judges from the run's tags (`mlruns/<exp>/<run>/tags`).
    /// Returns the run directories so marked.
    pub fn mark_dead(
        store: &Path,
        experiment: &str,
        alive: impl Fn(&Path) -> bool,
    ) -> std::io::Result<Vec<PathBuf>> {
        let mut marked = Vec::new();
        if !store.exists() {
            return Ok(marked);
        }
        let store = fs::canonicalize(store)?;
        let experiment_dir = store.join(Self::experiment_id(&store, experiment)?);
        for entry in fs::read_dir(&experiment_dir)? {
            let dir = entry?.path();
            let Ok((run, status)) = Self::open(&dir) else {
                continue;
            };
            if status == 1 && !alive(&dir.join("tags")) {
                run.set_tag(
                    "interrupted",
                    &format!(
                        "its process ended without closing it; found at {} ms",
                        now_ms()
                    ),
                )?;
                run.finish(RunStatus::Killed)?;
                marked.push(dir);
            }
        }
        Ok(marked)
    }

    fn experiment_id(store: &Path, name: &str) -> std::io::Result<String> {
        let mut max_id = 0u64;
        for entry in fs::read_dir(store)? {
            let entry = entry?;
            let Ok(id) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(num) = id.parse::<u64>() else { continue };
            max_id = max_id.max(num);
            let meta = fs::read_to_string(entry.path().join("meta.yaml")).unwrap_or_default();
            if meta
                .lines()
                .any(|l| l.trim() == format!("name: {}", yaml_str(name)))
            {
                return Ok(id);
            }
        }
        // MLflow's UI expects the Default experiment 0.
        if !store.join("0").join("meta.yaml").exists() {
            Self::write_experiment(store, "0", "Default")?;
        }
        let id = (max_id + 1).to_string();
        Self::write_experiment(store, &id, name)?;
        Ok(id)
    }

    fn write_experiment(store: &Path, id: &str, name: &str) -> std::io::Result<()> {
        let now = now_ms();
        let dir = store.join(id);
        fs::create_dir_all(&dir)?;
        write_file(
            &dir.join("meta.yaml"),
            &format!(
                "artifact_location: {}\ncreation_time: {now}\nexperiment_id: {}\n\
                 last_update_time: {now}\nlifecycle_stage: active\nname: {}\n",
                yaml_str(&format!("file://{}", dir.display())),
                yaml_str(id),
                yaml_str(name)
            ),
        )
    }

    fn write_meta(&self, status: u8, end_ms: Option<u64>) -> std::io::Result<()> {
        let end = end_ms.map_or("null".to_string(), |t| t.to_string());
        write_file(
            &self.run_dir.join("meta.yaml"),
            &format!(
                "artifact_uri: {}\nend_time: {end}\nentry_point_name: ''\nexperiment_id: {}\n\
                 lifecycle_stage: active\nrun_id: {id}\nrun_name: {}\nrun_uuid: {id}\n\
                 source_name: ''\nsource_type: 4\nsource_version: ''\nstart_time: {}\n\
                 status: {status}\ntags: []\nuser_id: {}\n",
                yaml_str(&format!(
                    "file://{}",
                    self.run_dir.join("artifacts").display()
                )),
                yaml_str(&self.experiment_id),
                yaml_str(&self.run_name),
                self.start_ms,
                yaml_str(&std::env::var("USER").unwrap_or_else(|_| "flowmodels".into())),
                id = self.run_id,
            ),
        )
    }

    /// `mlruns/<experiment>/<run>`.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Write parameters.
    pub fn log_params(&self, params: &[(String, String)]) -> std::io::Result<()> {
        for (k, v) in params {
            check_key(k)?;
            write_file(&self.run_dir.join("params").join(k), v)?;
        }
        Ok(())
    }

    /// Append metric values `(key, value, step, timestamp)`.
    pub fn log_metrics(&self, metrics: &[(String, f64, u64, u64)]) -> std::io::Result<()> {
        for (k, v, step, ts) in metrics {
            check_key(k)?;
            let path = self.run_dir.join("metrics").join(k);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            writeln!(f, "{ts} {v} {step}")?;
        }
        Ok(())
    }

    /// Write a tag.
    pub fn set_tag(&self, key: &str, value: &str) -> std::io::Result<()> {
        check_key(key)?;
        write_file(&self.run_dir.join("tags").join(key), value)
    }

    /// Copy a file into `artifacts/[dir/]`.
    pub fn log_artifact(&self, file: &Path, dir: Option<&str>) -> std::io::Result<()> {
        let mut dest = self.run_dir.join("artifacts");
        if let Some(d) = dir {
            check_key(d)?;
            dest = dest.join(d);
        }
        fs::create_dir_all(&dest)?;
        let name = file.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "artifact has no file name",
            )
        })?;
        fs::copy(file, dest.join(name)).map(|_| ())
    }

    /// Mark the run ended.
    pub fn finish(&self, status: RunStatus) -> std::io::Result<()> {
        self.write_meta(status.file_store_code(), Some(now_ms()))
    }
}
