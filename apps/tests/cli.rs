//! The `train_flowmodels1` binary: errors reach the user with the key at fault and a failing
//! exit status; `--print-config` shows the resolved config with the overrides applied. The
//! bench reports a reference it cannot run as a row.

use std::process::Command;

fn app1(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train_flowmodels1"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

#[test]
fn print_config_applies_flags_and_sets() {
    let out = app1(&[
        "--print-config",
        "--dataset",
        "gmm",
        "--epochs",
        "7",
        "--set",
        "model.num_layers=4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    assert_eq!(table["run"]["dataset"].as_str(), Some("gmm"));
    assert_eq!(table["training"]["epochs"].as_integer(), Some(7));
    assert_eq!(table["model"]["num_layers"].as_integer(), Some(4));
    // The original's app-1 defaults.
    assert_eq!(table["training"]["batch_size"].as_integer(), Some(128));
    assert_eq!(table["model"]["hidden_units"].as_array().unwrap().len(), 2);
}

#[test]
fn a_bad_key_fails_with_its_name() {
    let out = app1(&[
        "--set",
        "training.bach_size=3",
        "--run-dir",
        "/nonexistent-never-created",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bach_size"), "{err}");
    let out = app1(&["sample", "--run", "/nonexistent/run"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/run"));
}

#[cfg(not(feature = "mpi"))]
#[test]
fn distributed_mpi_in_a_build_without_mpi_says_how_to_get_it() {
    let out = app1(&["--distributed", "mpi", "--epochs", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--features mpi") && err.contains("mpirun -np"),
        "{err}"
    );
}

#[cfg(not(all(feature = "mpi", feature = "cuda")))]
#[test]
fn distributed_nccl_in_a_build_without_it_says_how_to_get_it() {
    let dir = std::env::temp_dir().join(format!("flowapps-nccl-{}", std::process::id()));
    let out = app1(&[
        "--distributed",
        "nccl",
        "--epochs",
        "1",
        "--run-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--distributed nccl")
            && err.contains("--features cuda,mpi")
            && err.contains("cuda:local"),
        "{err}"
    );
    assert!(!dir.exists(), "the refused run left {}", dir.display());
}

#[test]
fn distributed_training_is_refused_where_an_app_trains_in_one_process() {
    use flowapps::run::{Distributed, TrainOptions};
    let opts = TrainOptions {
        distributed: Distributed::Mpi,
        ..Default::default()
    };
    let err = flowapps::app4::train(&opts).unwrap_err();
    assert!(
        format!("{err:#}").contains("train_flowmodels4 trains in one process"),
        "{err:#}"
    );
}

/// A reference the bench cannot run (no such Python here) is a row of the table that says
/// which and why, beside flowmodels' own row, not a failed or silent bench.
#[test]
fn the_bench_reports_a_reference_it_cannot_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--cases", "realnvp2d", "--scale", "0.01", "--peak", "1"])
        .args(["--compare-tfp", "--python", "/nonexistent/python3"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("| realnvp2d | flowmodels |"),
        "flowmodels' own row: {table}"
    );
    let missing = table
        .lines()
        .find(|l| l.contains("missing: tfp_bench.py"))
        .unwrap_or_else(|| panic!("no row for the missing reference: {table}"));
    assert!(
        missing.contains("cannot run /nonexistent/python3"),
        "the row says why: {missing}"
    );
}
