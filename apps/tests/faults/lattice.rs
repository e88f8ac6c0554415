//! Application 9 given bad input: counts, theories, HMC settings, flags, and a run of another
//! application; each an error naming it, with nothing written.

use crate::support::*;

pub const APP9: &str = env!("CARGO_BIN_EXE_train_flowmodels9");

/// A tiny finished run of application 9.
fn app9_run() -> std::path::PathBuf {
    let dir = scratch("app9-finished");
    let run_dir = dir.join("run");
    let args = [
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--lattice",
        "4x4",
        "--epochs",
        "1",
        "--set",
        "training.steps_per_epoch=3",
        "--set",
        "run.validation_size=64",
        "--set",
        "run.mcmc_samples=64",
        "--set",
        "hmc.trajectories=50",
    ];
    let (code, _, err) = run(APP9, &args, &dir);
    assert_eq!(code, 0, "app 9 did not finish: {err}");
    run_dir
}

#[test]
fn lattice_commands_name_their_bad_input() {
    let dir = scratch("app9-bad");
    let run9 = app9_run();
    let run9 = run9.to_str().unwrap();
    let before = hashes(std::path::Path::new(run9));
    for (args, what) in [
        (vec!["mcmc", "--run", run9, "--n", "1"], "--n"),
        (vec!["observables", "--run", run9, "--n", "0"], "--n"),
        (vec!["hmc", "--run", run9, "--n", "1"], "--n"),
        (
            vec!["mcmc", "--run", run9, "--wide-fraction", "1.5"],
            "proposal.wide_fraction",
        ),
        (
            vec!["observables", "--run", run9, "--wide-scale=-1"],
            "positive",
        ),
    ] {
        fails_naming(run(APP9, &args, &dir), &[what]);
    }
    assert_eq!(
        hashes(std::path::Path::new(run9)),
        before,
        "the run changed"
    );
    // A run of another application has no theory.
    let run1 = app1_run();
    fails_naming(
        run(APP9, &["mcmc", "--run", run1.to_str().unwrap()], &dir),
        &["theory.json"],
    );
}

#[test]
fn bad_theories_and_settings_leave_no_folder() {
    let dir = scratch("app9-config");
    for (args, key) in [
        (vec!["--set", "theory.lambda=-0.5"], "unbounded"),
        (vec!["--set", "theory.m_sq=nan"], "m_sq"),
        (vec!["--set", "hmc.step_size=0"], "hmc.step_size"),
        (
            vec!["--set", "theory.parametrisation=\"hopping\""],
            "theory.hopping",
        ),
        (vec!["--lattice", "8y8"], "theory.lattice"),
        (vec!["--set", "run.mcmc_samples=1"], "run.mcmc_samples"),
        (
            vec!["--set", "objective.forward_kl_weight=-1"],
            "objective.forward_kl_weight",
        ),
        (
            vec![
                "--set",
                "objective.forward_kl_weight=1",
                "--set",
                "objective.forward_kl_fields=1",
            ],
            "objective.forward_kl_fields",
        ),
        (
            vec!["--set", "proposal.wide_fraction=-0.1"],
            "proposal.wide_fraction",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--run-dir", "never"]);
        fails_naming(run(APP9, &all, &dir), &[key]);
        assert!(
            !dir.join("never").exists(),
            "{args:?}: a run folder was made"
        );
        assert!(
            !dir.join("mlruns").exists(),
            "{args:?}: a tracking run was made"
        );
    }
}
