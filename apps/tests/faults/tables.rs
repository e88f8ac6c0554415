//! Application 8 given bad tables and bad conditions: a missing HDF5 dataset, a column range
//! outside the table, a truncated file, a missing file, an unknown CSV column, a missing ROOT
//! TTree, a ROOT branch that is not a flat number, a folder without ROOT files, a condition of
//! the wrong width for `sample` and `estimate`; each an error naming it, with no run folder
//! made and a finished run unchanged. `simulate` never overwrites a file.

use std::path::{Path, PathBuf};

use crate::support::*;

pub const APP8: &str = env!("CARGO_BIN_EXE_train_flowmodels8");

/// Small HDF5 files of the smearing simulator (3 conditions, 3 targets) in `dir/h5`.
fn hdf5_files(dir: &Path) -> PathBuf {
    let h5 = dir.join("h5");
    let args = [
        "simulate",
        "--dataset",
        "smearing:3",
        "--rows",
        "600",
        "--files",
        "2",
        "--chunk-rows",
        "100",
        "--out",
        h5.to_str().unwrap(),
    ];
    let (code, out, err) = run(APP8, &args, dir);
    assert_eq!(code, 0, "simulate failed: {err}");
    assert!(out.contains("data.truth=smearing:3"), "{out}");
    h5
}

fn train_args<'a>(h5: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--hdf5",
        h5,
        "--set",
        "data.c=0:3",
        "--set",
        "data.x=3:6",
        "--set",
        "training.epochs=1",
        "--set",
        "training.steps_per_epoch=3",
        "--set",
        "run.validation_size=64",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_tables_are_named_before_any_run_folder_exists() {
    let dir = scratch("app8-tables");
    let h5 = hdf5_files(&dir);
    let file0 = h5.join("smearing-000.h5");
    let bytes = std::fs::read(&file0).unwrap();
    let cut = dir.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::write(cut.join("cut.h5"), &bytes[..bytes.len() / 2]).unwrap();
    let csv = dir.join("rows.csv");
    std::fs::write(&csv, "a,b,x\n1,2,3\n").unwrap();
    let h5s = h5.to_str().unwrap();
    let cuts = cut.to_str().unwrap();
    let missing = dir.join("nothing.h5");
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/tests/fixtures/root/grid.root"
    );
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            train_args(h5s, &["--set", "data.dataset=events"]),
            vec!["smearing-000.h5", "no dataset `events`"],
        ),
        (
            train_args(h5s, &["--set", "data.x=3:9"]),
            vec!["x = 3:9", "6 columns"],
        ),
        (train_args(cuts, &[]), vec!["cut.h5"]),
        (
            train_args(missing.to_str().unwrap(), &[]),
            vec!["nothing.h5", "no such file"],
        ),
        (
            train_args(h5s, &["--set", "data.c=3:1"]),
            vec!["data.c", "3:1"],
        ),
        (
            vec!["--csv", csv.to_str().unwrap(), "--c-columns", "a,q"],
            vec!["rows.csv", "`q`"],
        ),
        (vec!["--dataset", "grid:1"], vec!["run.dataset", "grid:1"]),
        (
            vec![
                "--root",
                root,
                "--c-columns",
                "c0,c1",
                "--set",
                "data.tree=\"tree\"",
            ],
            vec!["grid.root", "no TTree `tree`", "events"],
        ),
        (
            // `hits` is jagged: left out of the table, so not a column to name.
            vec!["--root", root, "--c-columns", "c0,hits"],
            vec!["grid.root", "`hits`", "c0, c1"],
        ),
        (
            vec!["--root", cuts, "--c-columns", "c0,c1"],
            vec!["data.root", "holds no .root file"],
        ),
        (
            vec!["--root", root, "--csv", csv.to_str().unwrap()],
            vec!["data.csv and data.root", "choose one"],
        ),
    ];
    for (args, what) in cases {
        fails_naming(run(APP8, &args, &dir), &what);
        assert!(!dir.join("runs").exists(), "{args:?} made a run folder");
    }
    // `simulate` refuses to write over the files it wrote.
    let args = ["simulate", "--rows", "10", "--files", "1", "--out", h5s];
    let before = hashes(&h5);
    let mut args = args.to_vec();
    args.extend(["--dataset", "smearing:3"]);
    fails_naming(run(APP8, &args, &dir), &["smearing-000.h5", "exists"]);
    assert_eq!(hashes(&h5), before);
}

#[test]
fn conditions_of_the_wrong_width_are_named_and_the_run_is_unchanged() {
    let dir = scratch("app8-widths");
    let h5 = hdf5_files(&dir);
    let run_dir = dir.join("run");
    let mut args = train_args(h5.to_str().unwrap(), &[]);
    args.extend(["--run-dir", run_dir.to_str().unwrap()]);
    let (code, _, err) = run(APP8, &args, &dir);
    assert_eq!(code, 0, "training failed: {err}");
    let runs = run_dir.to_str().unwrap();
    let before = hashes(&run_dir);
    let two = dir.join("two.csv");
    std::fs::write(&two, "u,v\n1,2\n").unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["sample", "--run", runs, "--c", "1,2"],
            vec!["--c", "2 value(s)", "col0, col1, col2"],
        ),
        (vec!["sample", "--run", runs, "--c", "1,2,x"], vec!["`x`"]),
        (
            vec!["estimate", "--run", runs, "--points", two.to_str().unwrap()],
            vec!["two.csv", "col3, col4, col5"],
        ),
        (
            vec!["logprob", "--run", runs, "--points", two.to_str().unwrap()],
            vec!["two.csv", "col0"],
        ),
        (
            vec!["sample", "--run", runs, "--c", "1,2,3", "--n", "0"],
            vec!["--n"],
        ),
    ];
    for (args, what) in cases {
        fails_naming(run(APP8, &args, &dir), &what);
    }
    // Candidates of the wrong width, for observations of the right one.
    let three = dir.join("three.csv");
    std::fs::write(&three, "a,b,c\n1,2,3\n").unwrap();
    fails_naming(
        run(
            APP8,
            &[
                "estimate",
                "--run",
                runs,
                "--points",
                three.to_str().unwrap(),
                "--candidates",
                "1,2;3,4",
            ],
            &dir,
        ),
        &["candidate 0", "3"],
    );
    assert_eq!(hashes(&run_dir), before, "the run changed");
}
