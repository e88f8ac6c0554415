//! Run folders: existing, busy, diverged, damaged, of another application, and resumes that
//! fail, each refused with what was there unchanged.

use crate::support::*;

#[test]
fn an_existing_run_folder_is_refused_and_a_busy_one_is_locked() {
    let dir = scratch("runfolder");
    let run1 = app1_run();
    let before = hashes(&run1);
    let mut args = vec!["--run-dir", run1.to_str().unwrap()];
    args.extend(TINY);
    fails_naming(run(APP1, &args, &dir), &["not empty", "--resume"]);
    assert_eq!(hashes(&run1), before, "the existing run was changed");

    // A lock held by a running process (this test's) keeps a second writer out...
    let run1 = dir.join("copy");
    copy_run(&app1_run(), &run1);
    let resumed = run1.to_str().unwrap();
    let lock = run1.join(".lock");
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let mut resume = vec!["--resume", resumed];
    resume.extend(["--set", "training.epochs=3"]);
    fails_naming(run(APP1, &resume, &dir), &["is writing this run", ".lock"]);
    // ... and one left by a process that ended is taken over: one that is gone, and a zombie
    // (ended, not yet reaped: an MPI rank killed with its job, in a container without init).
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    for (holder, epochs) in [("4194303".to_string(), "3"), (zombie.id().to_string(), "4")] {
        std::fs::write(&lock, &holder).unwrap();
        let epochs = format!("training.epochs={epochs}");
        let (code, _, err) = run(APP1, &["--resume", resumed, "--set", &epochs], &dir);
        assert_eq!(code, 0, "a stale lock ({holder}) was not taken over: {err}");
        assert!(!lock.exists(), "the lock was not released");
    }
    zombie.wait().unwrap();
}

#[test]
fn a_diverged_run_saves_nothing_non_finite_and_resumes_with_a_new_learning_rate() {
    let dir = scratch("diverge");
    let mut args = vec!["--run-dir", "run", "--set", "training.learning_rate=1e12"];
    args.extend(TINY);
    fails_naming(
        run(APP1, &args, &dir),
        &["at epoch 1, step", "training stopped", "no checkpoint"],
    );
    assert!(!dir.join("run/model.safetensors").exists());
    assert!(
        !dir.join("run/checkpoints").exists(),
        "a diverged state was saved"
    );
    let mut resume = vec!["--resume", "run", "--set", "training.learning_rate=1e-3"];
    resume.extend(TINY);
    let (code, _, err) = run(APP1, &resume, &dir);
    assert_eq!(code, 0, "{err}");
    let config = std::fs::read_to_string(dir.join("run/config.toml")).unwrap();
    assert!(
        config.contains("learning_rate = 0.001"),
        "config.toml does not record the learning rate the run went on with: {config}"
    );
}

#[test]
fn a_non_finite_checkpoint_is_refused_naming_file_and_tensor() {
    let dir = scratch("nanckpt");
    let source = app1_run();
    let run1 = dir.join("copy");
    copy_run(&source, &run1);
    let model = run1.join("model.safetensors");
    poison(&model);
    let err = fails_naming(
        run(APP1, &["sample", "--run", run1.to_str().unwrap()], &dir),
        &["model.safetensors", "non-finite"],
    );
    assert!(err.contains("tensor `"), "{err}");
    // Truncated and random files.
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    fails_naming(
        run(APP1, &["sample", "--run", run1.to_str().unwrap()], &dir),
        &["model.safetensors", "truncated"],
    );
    std::fs::write(
        &model,
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    fails_naming(
        run(APP1, &["sample", "--run", run1.to_str().unwrap()], &dir),
        &["model.safetensors"],
    );
}

#[test]
fn a_run_of_another_application_is_refused() {
    let dir = scratch("otherapp");
    let run4 = app4_run();
    fails_naming(
        run(APP1, &["sample", "--run", run4.to_str().unwrap()], &dir),
        &["is a run of train_flowmodels4, not of train_flowmodels1"],
    );
    let run5 = dir.join("app6-like");
    copy_run(&app5_run(), &run5);
    let problem = run5.join("problem.json");
    let text = std::fs::read_to_string(&problem).unwrap();
    std::fs::write(&problem, text.replace("robot_arm", "glacier")).unwrap();
    fails_naming(
        run(
            APP5,
            &["posterior", "--run", run5.to_str().unwrap(), "--y", "0.5,1"],
            &dir,
        ),
        &["is a run of train_flowmodels6, not of train_flowmodels5"],
    );
    let mut resume = vec!["--resume", run4.to_str().unwrap()];
    resume.extend(TINY);
    fails_naming(
        run(APP1, &resume, &dir),
        &["is a run of train_flowmodels4, not of train_flowmodels1"],
    );
}

#[test]
fn a_failed_resume_changes_nothing_and_nothing_to_resume_is_an_error() {
    let dir = scratch("resume");
    let run1 = dir.join("copy");
    copy_run(&app1_run(), &run1);
    // Every epoch checkpoint's model damaged: the resume cannot start.
    for entry in std::fs::read_dir(run1.join("checkpoints")).unwrap() {
        let ckpt = entry.unwrap().path().join("model.safetensors");
        if ckpt.exists() {
            poison(&ckpt);
        }
    }
    let before = hashes(&run1);
    fails_naming(
        run(
            APP1,
            &[
                "--resume",
                run1.to_str().unwrap(),
                "--set",
                "training.epochs=4",
            ],
            &dir,
        ),
        &["non-finite"],
    );
    let after = hashes(&run1);
    for (path, h) in &before {
        if path.starts_with(run1.join("checkpoints")) || path.ends_with("config.toml") {
            assert_eq!(after.get(path), Some(h), "{} changed", path.display());
        }
    }
    std::fs::remove_dir_all(run1.join("checkpoints")).unwrap();
    fails_naming(
        run(APP1, &["--resume", run1.to_str().unwrap()], &dir),
        &["no checkpoint"],
    );
}

#[test]
fn a_run_killed_while_writing_its_checkpoints_resumes_to_the_same_weights_leaving_nothing() {
    let dir = scratch("killedwrite");
    let source = app1_run();
    let run1 = dir.join("copy");
    copy_run(&source, &run1);
    // What a kill in the last epoch's checkpoint write leaves (`best` is written before the
    // epoch's checkpoint): no epoch-2 checkpoint, no final model or report, `best` moved aside
    // and its replacement half-written, and the half-written files of other writes.
    let ckpts = run1.join("checkpoints");
    std::fs::remove_dir_all(ckpts.join("epoch-000002")).unwrap();
    std::fs::remove_file(run1.join("model.safetensors")).unwrap();
    std::fs::remove_file(run1.join("report.json")).unwrap();
    std::fs::rename(ckpts.join("best"), ckpts.join(".best.old")).unwrap();
    std::fs::create_dir(ckpts.join(".best.tmp")).unwrap();
    for partial in [
        ".best.tmp/model.safetensors.tmp.4194303",
        "../report.json.tmp.4194303",
        "../run.json.tmp.4194303",
    ] {
        std::fs::write(ckpts.join(partial), b"partial").unwrap();
    }
    let (code, _, err) = run(APP1, &["--resume", run1.to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{err}");
    let left: Vec<_> = hashes(&run1)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains(".tmp") || p.to_string_lossy().contains(".old"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        !ckpts.join(".best.tmp").exists(),
        "the temporary `best` was left"
    );
    for file in ["model.safetensors", "checkpoints/best/model.safetensors"] {
        assert!(
            weights(&run1.join(file)) == weights(&source.join(file)),
            "{file}: the weights differ from those of the run that was not killed"
        );
    }
}
