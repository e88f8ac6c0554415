//! Where a run goes and how it is tracked: its directory (new, named, or resumed), the resolved
//! config written into it, the tracking run with the standard tags, and the end of it all:
//! `report.json` and the tracking run's status.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use flowcore::io::write_atomic;
use flowtrack::{RunStatus, Tracker, detect_run_env};
use serde::Serialize;

use super::{RunHeader, TrainOptions};

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

/// Open a run: the run directory (new, `--run-dir`, or the one resumed), the resolved config
/// written into it, and tracking started with the standard tags plus `tags`, the flattened
/// config as params and the config as an artifact.
pub fn open_run(
    opts: &TrainOptions,
    header: &RunHeader,
    app: &str,
    table: &toml::Table,
    tags: &[(String, String)],
) -> Result<(PathBuf, Tracker)> {
    let run_dir = match (&opts.resume, &opts.run_dir) {
        (Some(dir), _) | (None, Some(dir)) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create run directory {}", dir.display()))?;
            dir.clone()
        }
        (None, None) => new_run_dir(&header.output_dir, &header.name)?,
    };
    let resolved = toml::to_string(table).context("cannot write the resolved config")?;
    write_atomic(&run_dir.join("config.toml"), resolved.as_bytes())?;
    let store = opts
        .tracking_dir
        .clone()
        .unwrap_or_else(|| header.tracking_dir.clone());
    let run_name = run_dir
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().to_string());
    let mut all_tags = standard_tags(app);
    all_tags.push(("run_dir".into(), run_dir.display().to_string()));
    if let Some(dir) = &opts.resume {
        all_tags.push(("resumed_from".into(), dir.display().to_string()));
    }
    all_tags.extend(tags.iter().cloned());
    let mut tracker = start_tracker(
        &store,
        &header.experiment,
        &run_name,
        opts.tracking_uri.as_deref(),
        &all_tags,
    )?
    .with_step_every(header.log_every);
    tracker.log_params(&super::config::flatten(table));
    tracker.log_artifact(&run_dir.join("config.toml"), None);
    Ok((run_dir, tracker))
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
