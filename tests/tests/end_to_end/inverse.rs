//! Applications 5-7 end to end, driven as libraries: the robot arm's learnt posteriors against
//! rejection sampling (INN and cINN), exact resume of the INN objective, posterior sampling
//! from a finished run, and configuration errors.

use std::path::{Path, PathBuf};

use flowapps::inverse::{self, Method, Problem, TrainSummary};
use flowapps::run::TrainOptions;
use flowdata::inverse::{RobotArm, Simulator};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowtests-inverse-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A quick evaluation: fewer reference draws, test observations and calibration pairs.
fn sets(method: &str, epochs: usize, steps: usize, extra: &[&str]) -> Vec<String> {
    let mut s: Vec<String> = vec![
        format!("run.method={method}"),
        format!("training.epochs={epochs}"),
        format!("training.steps_per_epoch={steps}"),
        "run.reference_draws=1000000".into(),
        "run.test_observations=8".into(),
        "run.posterior_samples=500".into(),
        "run.reference_keep=500".into(),
        "run.calibration_pairs=100".into(),
        "run.calibration_samples=100".into(),
        "run.validation_size=1000".into(),
    ];
    s.extend(extra.iter().map(|e| e.to_string()));
    s
}

fn train_in(dir: &Path, name: &str, sets: Vec<String>) -> TrainSummary {
    train_problem(Problem::RobotArm, dir, name, sets)
}

fn train_problem(problem: Problem, dir: &Path, name: &str, sets: Vec<String>) -> TrainSummary {
    inverse::train(
        problem,
        &TrainOptions {
            sets,
            run_dir: Some(dir.join(name)),
            tracking_dir: Some(dir.join("mlruns")),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn the_cinn_posterior_of_the_robot_arm_is_far_closer_to_rejection_sampling_than_the_prior() {
    let dir = scratch("cinn");
    // The cINN wants depth: 12 couplings reach 0.05 where 8 stall near 0.3.
    let s = train_in(&dir, "run", sets("cinn", 5, 300, &["model.num_layers=12"]));
    let e = &s.report.evaluation;
    eprintln!("cINN: {e:?}");
    assert_eq!(s.report.method, Method::Cinn);
    // The prior scores 1 by definition; measured 0.07 (2-core CPU, seed 0).
    assert!(
        e.mmd_ratio < 0.25,
        "posterior MMD {} vs prior {}",
        e.mmd,
        e.prior_mmd
    );
    assert!(
        e.calibration_error < 0.06,
        "calibration error {}",
        e.calibration_error
    );
    assert!(
        e.resimulation_error < 0.15,
        "re-simulation error {}",
        e.resimulation_error
    );
    for f in &s.report.run.figures {
        let png = std::fs::read(s.run_dir.join(f)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{f}");
    }

    // Samples for an observation, from the finished run alone, re-simulate near it.
    let y = RobotArm.simulate(&[0.1, 0.3, -0.2, 0.5]);
    let (xs, names) = inverse::posterior(Problem::RobotArm, &s.run_dir, &y, 400, 9).unwrap();
    assert_eq!(names, RobotArm.x_names());
    let miss: f64 = xs
        .chunks(4)
        .map(|x| {
            let f = RobotArm.simulate(x);
            ((f[0] - y[0]).powi(2) + (f[1] - y[1]).powi(2)).sqrt()
        })
        .sum::<f64>()
        / 400.0;
    assert!(miss < 0.1, "mean end-point miss {miss}");
    let e = format!(
        "{:#}",
        inverse::posterior(Problem::RobotArm, &s.run_dir, &[1.0], 10, 0).unwrap_err()
    );
    assert!(e.contains("--y has 1 values but the model takes 2"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn val_part_names(s: &TrainSummary) -> Vec<String> {
    s.report.run.history[0]
        .val_parts
        .iter()
        .map(|p| p.0.clone())
        .collect()
}

#[test]
fn the_inn_posterior_of_the_robot_arm_beats_the_prior() {
    let dir = scratch("inn");
    let s = train_in(&dir, "run", sets("inn", 5, 400, &[]));
    let e = &s.report.evaluation;
    eprintln!("INN: {e:?}");
    assert_eq!(s.report.loss, "inn_loss");
    // Measured 0.45 after these 2000 steps (0.29 after 3000 in release runs): the INN's MMD
    // training is slower than the cINN's likelihood.
    assert!(
        e.mmd_ratio < 0.65,
        "posterior MMD {} vs prior {}",
        e.mmd,
        e.prior_mmd
    );
    assert_eq!(
        val_part_names(&s),
        ["fit_y", "mmd_latent", "mmd_x", "reconstruction"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Application 7's INN in its two-block layout, trained on the observed y beside its own
/// terms: after 600 steps its posterior is nearer the reference than the prior (0.53 of the
/// prior's MMD in a release run; the layout and objective before it: 1.21, further than the
/// prior).
#[test]
fn the_noisy_inns_posterior_beats_the_prior_in_the_two_block_layout() {
    let dir = scratch("seismic");
    let sets = sets("inn", 3, 200, &["training.schedule.period=600"]);
    let s = train_problem(Problem::Seismic, &dir, "run", sets);
    let e = &s.report.evaluation;
    eprintln!("seismic INN: {e:?}");
    assert!(
        e.mmd_ratio < 0.8,
        "posterior MMD {} vs prior {}",
        e.mmd,
        e.prior_mmd
    );
    let parts = val_part_names(&s);
    assert!(parts.iter().any(|p| p == "nll_given_y"), "{parts:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resuming_the_inn_objective_continues_the_same_curve() {
    let dir = scratch("resume");
    let quick = |epochs: usize| {
        sets(
            "inn",
            epochs,
            20,
            &[
                "model.hidden_units=[16]",
                "model.num_layers=3",
                "run.test_observations=1",
                "run.calibration_pairs=5",
                "run.reference_draws=20000",
            ],
        )
    };
    let straight = train_in(&dir, "straight", quick(4));
    let _ = train_in(&dir, "resumed", quick(2));
    let resumed = inverse::train(
        Problem::RobotArm,
        &TrainOptions {
            resume: Some(dir.join("resumed")),
            sets: vec!["training.epochs=4".into()],
            tracking_dir: Some(dir.join("mlruns")),
            ..Default::default()
        },
    )
    .unwrap();
    let curve = |s: &TrainSummary| -> Vec<f64> {
        s.report.run.history.iter().map(|e| e.val_loss).collect()
    };
    assert_eq!(curve(&resumed), curve(&straight));
    let y = [1.5, 0.2];
    assert_eq!(
        inverse::posterior(Problem::RobotArm, &resumed.run_dir, &y, 50, 1)
            .unwrap()
            .0,
        inverse::posterior(Problem::RobotArm, &straight.run_dir, &y, 50, 1)
            .unwrap()
            .0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_partition_that_does_not_fit_the_problem_names_the_key() {
    let dir = scratch("config");
    let err = |extra: &str| {
        format!(
            "{:#}",
            inverse::train(
                Problem::RobotArm,
                &TrainOptions {
                    sets: vec![extra.to_string()],
                    run_dir: Some(dir.join("bad")),
                    tracking_dir: Some(dir.join("mlruns")),
                    ..Default::default()
                },
            )
            .unwrap_err()
        )
    };
    let e = err(r#"run.partition="[x:3 | pad:3] -> [y:2 | z:4]""#);
    assert!(
        e.contains("run.partition") && e.contains("4 parameters"),
        "{e}"
    );
    let e = err(r#"run.partition="[x:4] -> [y:2 | z:3]""#);
    assert!(
        e.contains("run.partition") && e.contains("same size"),
        "{e}"
    );
    let e = err("inn.kernel_widths=[]");
    assert!(e.contains("inn.kernel_widths"), "{e}");
    let e = err("run.method=vae");
    assert!(e.contains("run.method"), "{e}");
    // The likelihood given y needs the observation coupling first; nothing is written first.
    let e = err("inn.weight_likelihood_given_y=1");
    assert!(
        e.contains("inn.weight_likelihood_given_y needs") && e.contains("permutation = \"blocks\""),
        "{e}"
    );
    assert!(
        !dir.join("bad").exists(),
        "a run folder was written for a bad config"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
