//! Where a run goes and how it is tracked: its directory (new, named, or resumed), the resolved
//! config written into it, the tracking run with the standard tags, and the end of it all:
//! `report.json` and the tracking run's status.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use flowcore::io::write_atomic;
use flowtrack::{RunStatus, Tracker, detect_run_env};
use serde::Serialize;

use super::folder::{RunFile, RunFolder};
use super::{ResolvedConfig, TrainOptions};

/// Close as KILLED the runs of `experiment` left RUNNING by a process that is gone: a run
/// whose folder (its `run_dir` tag) no process holds. Runs of other tools, without the tag,
/// are left alone.
fn mark_dead_runs(store: &Path, experiment: &str) {
    let alive = |tags: &Path| {
        std::fs::read_to_string(tags.join("run_dir"))
            .map_or(true, |dir| super::folder::is_held(Path::new(dir.trim())))
    };
    match flowtrack::LocalStore::mark_dead(store, experiment, alive) {
        Ok(marked) => {
            for run in marked {
                tracing::warn!(
                    "tracking run {} was left RUNNING by a process that is gone: marked KILLED",
                    run.display()
                );
            }
        }
        Err(e) => tracing::warn!("cannot look for dead runs in {}: {e}", store.display()),
    }
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
/// URI or a path selects the local store instead, returned as the second value. `databricks`
/// and other schemes are errors: MLflow would read them as a tracking service this build cannot
/// reach, not as a folder.
pub fn tracking_from_env() -> Result<(Option<String>, Option<PathBuf>)> {
    let Ok(uri) = std::env::var("MLFLOW_TRACKING_URI") else {
        return Ok((None, None));
    };
    tracking_uri(&uri)
}

fn tracking_uri(uri: &str) -> Result<(Option<String>, Option<PathBuf>)> {
    if uri.is_empty() {
        return Ok((None, None));
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok((Some(uri.to_string()), None));
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok((None, Some(PathBuf::from(path))));
    }
    if uri != "databricks" && !uri.starts_with("databricks:") && !uri.contains("://") {
        return Ok((None, Some(PathBuf::from(uri))));
    }
    anyhow::bail!(
        "MLFLOW_TRACKING_URI={uri}: not an http(s) server, a file: URI or a path; flowmodels \
         tracks to an MLflow server over http(s) or to a local folder (file:///path, ./mlruns)"
    )
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

/// Open a run: its folder (new, `--run-dir`, or the one resumed; checked and locked, see
/// [`RunFolder`]), the resolved config written into it (for a resumed run, when training
/// starts: a resume that fails leaves the folder as it was), and its tracking run: a new one
/// with the standard tags plus `tags` and the flattened config as params, or, resuming, the
/// run's own, continued. `run.json` records whose run it is and its tracking run.
pub fn open_run(
    opts: &TrainOptions,
    resolved: &ResolvedConfig,
    tags: &[(String, String)],
) -> Result<(RunFolder, Tracker)> {
    let (header, app) = (&resolved.header, resolved.app);
    let folder = RunFolder::open(opts, app, &header.output_dir, &header.name)?;
    let run_dir = &folder.dir;
    if folder.resumed.is_none() {
        write_config(run_dir, &resolved.table)?;
    }
    let store = opts
        .tracking_dir
        .clone()
        .unwrap_or_else(|| header.tracking_dir.clone());
    let run_name = run_dir
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().to_string());
    let mut all_tags = standard_tags(app.name);
    // Absolute: other processes read it to tell whether the run's process is alive.
    let absolute = std::fs::canonicalize(run_dir).unwrap_or_else(|_| run_dir.clone());
    all_tags.push(("run_dir".into(), absolute.display().to_string()));
    if let Some(dir) = &opts.resume {
        all_tags.push(("resumed_from".into(), dir.display().to_string()));
    }
    all_tags.extend(tags.iter().cloned());
    mark_dead_runs(&store, &header.experiment);
    let continued = folder
        .resumed
        .as_ref()
        .and_then(|f| {
            f.tracking_run
                .clone()
                .map(|local| (local, f.remote.clone()))
        })
        .filter(|(local, _)| local.join("meta.yaml").exists());
    let tracker = match continued {
        Some((local, remote)) => {
            let remote = remote
                .filter(|_| opts.tracking_uri.is_some())
                .map(|(_, id)| (opts.tracking_uri.clone().unwrap_or_default(), id));
            let remote = remote.as_ref().map(|(uri, id)| (uri.as_str(), id.as_str()));
            Tracker::resume(&local, remote, &all_tags)
                .with_context(|| format!("cannot continue the tracking run {}", local.display()))?
        }
        None => {
            let mut tracker = start_tracker(
                &store,
                &header.experiment,
                &run_name,
                opts.tracking_uri.as_deref(),
                &all_tags,
            )?;
            // MLflow params are written once: a resumed run keeps those of its start.
            tracker.log_params(&super::config::flatten(&resolved.table));
            tracker.log_artifact(&run_dir.join("config.toml"), None);
            tracker
        }
    }
    .with_step_every(header.log_every);
    RunFile {
        app: app.name.to_string(),
        tracking_run: Some(tracker.local_run_dir().to_path_buf()),
        remote: tracker
            .remote_run_id()
            .zip(opts.tracking_uri.as_deref())
            .map(|(id, uri)| (uri.to_string(), id.to_string())),
    }
    .write(run_dir)?;
    Ok((folder, tracker))
}

/// The resolved config as the run's `config.toml`.
pub fn write_config(run_dir: &Path, table: &toml::Table) -> Result<()> {
    let resolved = toml::to_string(table).context("cannot write the resolved config")?;
    write_atomic(&run_dir.join("config.toml"), resolved.as_bytes())?;
    Ok(())
}

/// Close a run: on success end the tracked run FINISHED and write `report.json`, on failure tag
/// the error and end it FAILED.
pub fn close_run<R: Serialize>(
    mut tracker: Tracker,
    run_dir: &Path,
    result: Result<R>,
) -> Result<R> {
    match result {
        Ok(report) => {
            tracker.finish(RunStatus::Finished);
            let json = serde_json::to_string_pretty(&report)?;
            write_atomic(&run_dir.join("report.json"), json.as_bytes())?;
            Ok(report)
        }
        Err(e) => {
            tracker.set_tag("error", &format!("{e:#}"));
            tracker.finish(RunStatus::Failed);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracking_uris_are_servers_folders_or_errors() {
        let ok = |u: &str| super::tracking_uri(u).unwrap();
        assert_eq!(ok("http://h:5000").0.as_deref(), Some("http://h:5000"));
        assert_eq!(ok("file:///tmp/m").1, Some("/tmp/m".into()));
        assert_eq!(ok("./mlruns").1, Some("./mlruns".into()));
        assert_eq!(ok("mlruns").1, Some("mlruns".into()));
        for bad in ["databricks", "databricks://profile", "s3://bucket/x"] {
            let e = format!("{:#}", super::tracking_uri(bad).unwrap_err());
            assert!(e.contains(bad), "{e}");
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
