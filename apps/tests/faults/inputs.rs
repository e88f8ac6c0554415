//! Bad input: counts, observations, CSV cells, outliers, image roots, config values and
//! tracking URIs, each an error naming it before any folder or tracking run is made.

use std::process::Command;

use crate::support::*;

#[test]
fn a_count_of_zero_is_an_error_naming_it_not_a_panic() {
    let dir = scratch("n0");
    let run1 = app1_run();
    fails_naming(
        run(
            APP1,
            &["sample", "--run", run1.to_str().unwrap(), "--n", "0"],
            &dir,
        ),
        &["--n"],
    );
    let run5 = app5_run();
    fails_naming(
        run(
            APP5,
            &[
                "posterior",
                "--run",
                run5.to_str().unwrap(),
                "--y",
                "0.5,1",
                "--n",
                "0",
            ],
            &dir,
        ),
        &["--n"],
    );
}

#[test]
fn a_non_finite_observation_is_an_error_naming_it() {
    let dir = scratch("ynan");
    let run5 = app5_run();
    for (y, shown) in [("nan,0.2", "NaN"), ("0.3,inf", "inf"), ("-inf,1", "-inf")] {
        let err = fails_naming(
            run(
                APP5,
                &["posterior", "--run", run5.to_str().unwrap(), "--y", y],
                &dir,
            ),
            &["--y"],
        );
        assert!(err.contains(shown), "{y}: {err}");
    }
}

#[test]
fn a_bad_cell_in_points_to_predict_is_named_where_it_is() {
    let dir = scratch("predict");
    let run4 = app4_run();
    let cases = [
        (
            "nan.csv",
            "x0,x1\n0.1,0.2\nNaN,0.3\n",
            vec!["nan.csv:3", "finite"],
        ),
        ("inf.csv", "x0,x1\n0.1,inf\n", vec!["inf.csv:2", "finite"]),
        (
            "text.csv",
            "x0,x1\n0.1,0.2\n0.1,abc\n",
            vec!["text.csv:3", "`abc`"],
        ),
        (
            "ragged.csv",
            "x0,x1\n0.1,0.2\n0.1\n",
            vec!["ragged.csv:3", "columns"],
        ),
        ("header.csv", "x0,x1\n", vec!["header.csv", "no points"]),
        (
            "labelled_bad.csv",
            "x0,x1,label\n0.1,0.2,a\n0.1,x,b\n",
            vec!["labelled_bad.csv:3", "`x`"],
        ),
        (
            "far.csv",
            "x0,x1\n0.1,0.2\n1e30,0.3\n",
            vec!["far.csv:3", "no finite class probabilities"],
        ),
    ];
    for (file, text, names) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let err = fails_naming(
            run(
                APP4,
                &[
                    "predict",
                    "--run",
                    run4.to_str().unwrap(),
                    "--points",
                    path.to_str().unwrap(),
                ],
                &dir,
            ),
            &names,
        );
        assert!(
            !err.contains("labels missing"),
            "{file}: the first error was swallowed: {err}"
        );
    }
}

#[test]
fn a_far_outlier_in_training_points_is_named_before_anything_is_written() {
    let dir = scratch("outlier");
    let csv = dir.join("points.csv");
    let mut text = String::from("a,b\n");
    for i in 0..200 {
        text.push_str(&format!(
            "{},{}\n",
            (i as f32 * 0.37).sin(),
            (i as f32 * 0.11).cos()
        ));
    }
    text.push_str("1e30,0.5\n");
    std::fs::write(&csv, text).unwrap();
    let mut args = vec!["--points", csv.to_str().unwrap(), "--run-dir", "never"];
    args.extend(TINY);
    fails_naming(run(APP1, &args, &dir), &["points.csv:202", "`a`", "1e30"]);
    assert!(!dir.join("never").exists(), "a run folder was made");
    assert!(!dir.join("mlruns").exists(), "a tracking run was made");
}

#[test]
fn an_image_root_without_val_is_refused_at_start() {
    let dir = scratch("noval");
    let root = dir.join("images");
    std::fs::create_dir_all(root.join("train/cats")).unwrap();
    let sneakers = flowdata::images::EMBEDDED
        .iter()
        .filter(|(rel, _)| rel.starts_with("train/"))
        .take(4);
    for (i, (_, bytes)) in sneakers.enumerate() {
        std::fs::write(root.join(format!("train/cats/{i}.png")), bytes).unwrap();
    }
    let args = [
        "--images",
        root.to_str().unwrap(),
        "--run-dir",
        "never",
        "--set",
        "run.height=8",
        "--set",
        "run.width=8",
    ];
    fails_naming(run(APP2, &args, &dir), &["no val/ folder"]);
    assert!(!dir.join("never").exists(), "a run folder was made");
}

#[test]
fn config_errors_leave_no_folder_and_no_tracking_run() {
    let dir = scratch("configerr");
    for (set, key) in [
        ("training.epochs=0", "training.epochs"),
        ("training.learning_rate=-1", "training.learning_rate"),
        ("model.num_layers=0", "num_layers"),
        ("run.nmae=1", "nmae"),
        ("trainng.epochs=3", "trainng"),
    ] {
        fails_naming(
            run(APP1, &["--set", set, "--run-dir", "never"], &dir),
            &[key],
        );
        assert!(!dir.join("never").exists(), "{set}: a run folder was made");
        assert!(
            !dir.join("mlruns").exists(),
            "{set}: a tracking run was made"
        );
    }
}

#[test]
fn bad_background_settings_of_app2_leave_no_folder() {
    let dir = scratch("background");
    for (set, key) in [
        ("background.noise_rate=1.0", "background.noise_rate"),
        ("background.epochs_fraction=0", "background.epochs_fraction"),
        ("background.hidden_channels=0", "background.hidden_channels"),
        ("background.enabld=true", "enabld"),
        // Not background, but read with it before any work: a flip that is no choice.
        ("run.augment.flip=\"sometimes\"", "run.augment.flip"),
        ("run.augment.zoom=1.0", "run.augment.zoom"),
        ("background.augment.zoom=-0.1", "background.augment.zoom"),
        (
            "background.augment.rotate_degrees=400",
            "background.augment.rotate_degrees",
        ),
    ] {
        fails_naming(
            run(APP2, &["--set", set, "--run-dir", "never"], &dir),
            &[key],
        );
        assert!(!dir.join("never").exists(), "{set}: a run folder was made");
        assert!(
            !dir.join("mlruns").exists(),
            "{set}: a tracking run was made"
        );
    }
}

#[test]
fn a_tracking_uri_that_is_no_server_or_folder_is_an_error() {
    let dir = scratch("trackinguri");
    let out = Command::new(APP1)
        .args(["--run-dir", "never"])
        .current_dir(&dir)
        .env("MLFLOW_TRACKING_URI", "databricks")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("MLFLOW_TRACKING_URI=databricks"), "{err}");
    assert!(!dir.join("never").exists());
}

#[test]
fn bad_continuous_flow_settings_are_named_before_any_run_folder() {
    let dir = scratch("ffjordconfig");
    for (set, key) in [
        (r#"model.solver={method = "dopri5", atol = 0.0}"#, "atol"),
        (r#"model.solver={method = "euler"}"#, "euler"),
        (r#"model.solver={method = "rk4", steps = 0}"#, "steps"),
        (r#"model.trace="hutch""#, "hutch"),
        (r#"model.activation="relu""#, "relu"),
        ("model.hidden_units=[]", "hidden"),
        ("model.num_blocks=0", "num_blocks"),
        ("model.kinetic_weight=-0.01", "kinetic_weight"),
        ("model.jacobian_weight=nan", "jacobian_weight"),
    ] {
        fails_naming(
            run(
                APP1,
                &[
                    "--set",
                    "model.kind=ffjord",
                    "--set",
                    set,
                    "--run-dir",
                    "never",
                ],
                &dir,
            ),
            &[key],
        );
        assert!(!dir.join("never").exists(), "{set}: a run folder was made");
    }
}

/// A solve that cannot reach its end within `max_steps` stops training with the reason: the
/// layer and the time it reached, not a bare NaN.
#[test]
fn a_solver_out_of_steps_stops_training_naming_the_layer_and_time() {
    let dir = scratch("ffjordsteps");
    let out = run(
        APP1,
        &[
            "--set",
            "model.kind=ffjord",
            "--set",
            r#"model.solver={method = "dopri5", rtol = 1e-12, atol = 1e-12, max_steps = 1}"#,
            "--set",
            "training.epochs=1",
            "--set",
            "training.steps_per_epoch=2",
            "--run-dir",
            "r",
        ],
        &dir,
    );
    fails_naming(
        out,
        &["ffjord layer (2 features)", "stopped at t =", "max_steps"],
    );
}
