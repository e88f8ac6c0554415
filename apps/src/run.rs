//! What every application does around training: name and create the run directory, start
//! tracking with the standard tags, and set up logging in binaries.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use flowcore::tracking::{Tracker, detect_run_env};

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

/// The git commit of the working directory, when it is in a git checkout.
pub fn git_commit() -> Option<String> {
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
