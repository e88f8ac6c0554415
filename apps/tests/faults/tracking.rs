//! Tracking runs: a resumed run continues its own, and one left RUNNING by a killed process
//! is marked as such.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

#[test]
fn a_resumed_run_continues_its_tracking_run_and_marks_an_interruption() {
    let dir = scratch("tracking");
    let run1 = dir.join("own");
    let mut args = vec!["--run-dir", run1.to_str().unwrap()];
    args.extend(TINY);
    assert_eq!(run(APP1, &args, &dir).0, 0);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run1.join("run.json")).unwrap()).unwrap();
    let tracking = PathBuf::from(file["tracking_run"].as_str().unwrap());
    // As a kill leaves it: RUNNING.
    let meta = tracking.join("meta.yaml");
    set_status(&meta, 1);
    let out = Command::new(APP1)
        .args([
            "--resume",
            run1.to_str().unwrap(),
            "--set",
            "training.epochs=3",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run1.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        again["tracking_run"], file["tracking_run"],
        "another tracking run"
    );
    assert!(
        tracking.join("tags/interrupted").exists(),
        "the interruption is not marked"
    );
    let status = std::fs::read_to_string(&meta).unwrap();
    assert!(status.contains("status: 3"), "not FINISHED again: {status}");
    let epochs = std::fs::read_to_string(tracking.join("metrics/val_nll")).unwrap();
    assert_eq!(epochs.lines().count(), 3, "{epochs}");
}

#[test]
fn a_run_left_running_by_a_dead_process_is_marked_killed_when_found() {
    let dir = scratch("found");
    let mut args = vec!["--run-dir", "first"];
    args.extend(TINY);
    assert_eq!(run(APP1, &args, &dir).0, 0);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("first/run.json")).unwrap())
            .unwrap();
    let tracking = PathBuf::from(file["tracking_run"].as_str().unwrap());
    set_status(&tracking.join("meta.yaml"), 1);
    // A lock of a live process keeps the run RUNNING: this test's own process holds it.
    std::fs::write(dir.join("first/.lock"), std::process::id().to_string()).unwrap();
    args[1] = "second";
    assert_eq!(run(APP1, &args, &dir).0, 0);
    let meta = std::fs::read_to_string(tracking.join("meta.yaml")).unwrap();
    assert!(meta.contains("status: 1"), "a live run was closed: {meta}");
    // Killed: the lock names a process that is gone.
    std::fs::write(dir.join("first/.lock"), "4194305").unwrap();
    args[1] = "third";
    assert_eq!(run(APP1, &args, &dir).0, 0);
    let meta = std::fs::read_to_string(tracking.join("meta.yaml")).unwrap();
    assert!(meta.contains("status: 5"), "not marked KILLED: {meta}");
    assert!(tracking.join("tags/interrupted").exists());
}

/// Rewrite the status of a tracking run's `meta.yaml` (1 RUNNING, as a kill leaves it).
fn set_status(meta: &Path, status: u8) {
    let text = std::fs::read_to_string(meta).unwrap();
    let rewritten: String = text
        .lines()
        .map(|l| {
            if l.starts_with("status:") {
                format!("status: {status}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(meta, rewritten + "\n").unwrap();
}
