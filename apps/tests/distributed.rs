//! Data-parallel training over MPI, end to end: `mpirun -np 2 train_flowmodelsN --distributed
//! mpi`. Needs a build with `--features mpi` and OpenMPI's `mpirun` (`.ci/run` installs both and
//! runs `cargo test --workspace --features flowapps/mpi --test distributed`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flowcore::checkpoint::load_flow;
use flowcore::testing::{param_paths, param_values};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowmodels-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn app(n: u8) -> &'static str {
    match n {
        1 => env!("CARGO_BIN_EXE_train_flowmodels1"),
        2 => env!("CARGO_BIN_EXE_train_flowmodels2"),
        9 => env!("CARGO_BIN_EXE_train_flowmodels9"),
        _ => unreachable!(),
    }
}

/// `mpirun -np ranks APP --distributed mpi ARGS`, or the app alone for `ranks == 0`.
fn command(ranks: usize, n: u8, args: &[String], cwd: &Path) -> Command {
    let mut cmd = if ranks == 0 {
        Command::new(app(n))
    } else {
        let mut c = Command::new("mpirun");
        c.args(["--oversubscribe", "-np", &ranks.to_string(), app(n)])
            .args(["--distributed", "mpi"]);
        c
    };
    cmd.args(args)
        .current_dir(cwd)
        // CI runs as root, which mpirun refuses without these.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RUST_LOG", "warn");
    cmd
}

fn run(ranks: usize, n: u8, args: &[String], cwd: &Path) -> Output {
    let out = command(ranks, n, args, cwd).output().unwrap();
    assert!(
        out.status.success(),
        "{} ranks of app {n} failed:\n{}",
        ranks,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The parameters of a checkpoint file, by path.
fn params(path: &Path) -> Vec<(String, Vec<f32>)> {
    let (flow, _) = load_flow(path, &burn::prelude::Device::flex()).unwrap();
    param_paths(&flow)
        .into_iter()
        .zip(param_values(&flow))
        .collect()
}

/// The largest absolute difference between two checkpoints' parameters (same model).
fn max_diff(a: &Path, b: &Path) -> f32 {
    let (a, b) = (params(a), params(b));
    assert_eq!(a.len(), b.len());
    let mut worst = 0f32;
    for ((pa, va), (pb, vb)) in a.iter().zip(&b) {
        assert_eq!(pa, pb);
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

fn checkpoint(run: &Path, epoch: usize) -> PathBuf {
    run.join(format!("checkpoints/epoch-{epoch:06}/model.safetensors"))
}

/// A small Glow on the embedded images, with ActNorm: the start state rank 0 broadcasts
/// includes its data initialisation.
fn app2_args(run_dir: &Path, batch: usize) -> Vec<String> {
    let mut a = args(&[
        "--epochs",
        "1",
        "--set",
        "training.steps_per_epoch=4",
        "--set",
        "model.levels=1",
        "--set",
        "model.steps_per_level=2",
        "--set",
        "model.hidden_channels=8",
        "--set",
        "run.reference_images=20",
        "--set",
        "run.tracking_dir=mlruns",
    ]);
    a.extend(args(&["--set", &format!("training.batch_size={batch}")]));
    a.extend(args(&["--run-dir", run_dir.to_str().unwrap()]));
    a
}

#[test]
fn two_ranks_take_the_steps_of_one_process_with_twice_the_batch() {
    let dir = temp_dir("equal");
    let (one, two, half) = (dir.join("one"), dir.join("two"), dir.join("half"));
    run(0, 2, &app2_args(&one, 16), &dir);
    let out = run(2, 2, &app2_args(&two, 8), &dir);
    // Rank 0 alone reports and writes the run.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("run directory:").count(), 1, "{stdout}");
    let diff = max_diff(&checkpoint(&one, 1), &checkpoint(&two, 1));
    eprintln!("2 ranks x 8 vs 1 process x 16: max |diff| {diff:.2e}");
    assert!(
        diff <= 1e-5,
        "2 ranks x 8 vs 1 x 16: parameters differ by {diff}"
    );
    // Not vacuous: one process on rank 0's rows alone ends elsewhere.
    run(0, 2, &app2_args(&half, 8), &dir);
    let control = max_diff(&checkpoint(&half, 1), &checkpoint(&two, 1));
    eprintln!("2 ranks x 8 vs 1 process x 8: max |diff| {control:.2e}");
    assert!(
        control > 1e-4,
        "batch 8 alone is within {control} of 2 ranks"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Application 9 on a 4 x 4 lattice: the ranks draw their rows of the same base draws.
fn app9_args(run_dir: &Path, batch: usize) -> Vec<String> {
    let mut a = args(&[
        "--epochs",
        "1",
        "--lattice",
        "4x4",
        "--set",
        "training.steps_per_epoch=5",
        "--set",
        "run.validation_size=256",
        "--set",
        "run.mcmc_samples=256",
        "--set",
        "hmc.trajectories=200",
        "--set",
        "run.tracking_dir=mlruns",
    ]);
    a.extend(args(&["--set", &format!("training.batch_size={batch}")]));
    a.extend(args(&["--run-dir", run_dir.to_str().unwrap()]));
    a
}

#[test]
fn lattice_ranks_take_the_steps_of_one_process_with_twice_the_batch() {
    let dir = temp_dir("lattice");
    let (one, two, half) = (dir.join("one"), dir.join("two"), dir.join("half"));
    run(0, 9, &app9_args(&one, 64), &dir);
    run(2, 9, &app9_args(&two, 32), &dir);
    let diff = max_diff(&checkpoint(&one, 1), &checkpoint(&two, 1));
    eprintln!("app 9, 2 ranks x 32 vs 1 process x 64: max |diff| {diff:.2e}");
    assert!(diff <= 1e-5, "parameters differ by {diff}");
    run(0, 9, &app9_args(&half, 32), &dir);
    let control = max_diff(&checkpoint(&half, 1), &checkpoint(&two, 1));
    assert!(
        control > 1e-4,
        "batch 32 alone is within {control} of 2 ranks"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn app1_args(run_dir: &Path, batch: usize, epochs: usize) -> Vec<String> {
    let mut a = args(&[
        "--set",
        "training.steps_per_epoch=10",
        "--set",
        "model.num_layers=4",
        "--set",
        "model.hidden_units=[32, 32]",
        "--set",
        "run.validation_size=500",
        "--set",
        "run.plot_points=200",
        "--set",
        "run.tracking_dir=mlruns",
    ]);
    a.extend(args(&[
        "--epochs",
        &epochs.to_string(),
        "--set",
        &format!("training.batch_size={batch}"),
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]));
    a
}

#[test]
fn a_run_resumes_with_another_number_of_ranks() {
    let dir = temp_dir("resume");
    let (straight, resumed) = (dir.join("straight"), dir.join("resumed"));
    run(2, 1, &app1_args(&straight, 32, 2), &dir);
    run(2, 1, &app1_args(&resumed, 32, 1), &dir);
    // The second epoch in one process with the same global batch.
    let resume = args(&[
        "--resume",
        resumed.to_str().unwrap(),
        "--epochs",
        "2",
        "--set",
        "training.batch_size=64",
    ]);
    run(0, 1, &resume, &dir);
    let diff = max_diff(&checkpoint(&straight, 2), &checkpoint(&resumed, 2));
    eprintln!("2 ranks for 2 epochs vs 2 ranks then 1 process: max |diff| {diff:.2e}");
    assert!(
        diff <= 1e-5,
        "resumed with 1 rank: parameters differ by {diff}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The process of rank `rank` among the children of `parent`, from their environment.
fn rank_pid(parent: u32, rank: usize) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
        if environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_rank_that_dies_ends_the_job_with_an_error_and_the_checkpoint_intact() {
    let dir = temp_dir("death");
    let run_dir = dir.join("run");
    let mut job = command(2, 1, &app1_args(&run_dir, 32, 10_000), &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let checkpoints = flowcore::train::CheckpointDir::new(run_dir.join("checkpoints"));
    // Epoch checkpoints come and go (keep_last); wait until two epochs have finished.
    while checkpoints
        .epochs()
        .last()
        .is_none_or(|(epoch, _)| *epoch < 2)
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let victim = rank_pid(job.id(), 1).expect("rank 1 among mpirun's children");
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_with_timeout(&mut job, Duration::from_secs(60));
    let Some(status) = status else {
        let _ = job.kill();
        panic!("the job still runs 60 s after rank 1 died");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    eprintln!("mpirun after rank 1 died ({status}):\n{stderr}");
    assert!(!status.success(), "the job succeeded after a rank died");
    assert!(
        stderr.contains("rank 1") && stderr.contains("signal 9"),
        "the error does not name the dead rank:\n{stderr}"
    );
    // The newest checkpoint loads, and the run resumes from it in one process.
    let newest = checkpoints.latest().expect("a checkpoint");
    let epoch: usize = newest.file_name().unwrap().to_string_lossy()["epoch-".len()..]
        .parse()
        .unwrap();
    params(&newest.join("model.safetensors"));
    let resume = args(&[
        "--resume",
        run_dir.to_str().unwrap(),
        "--epochs",
        &(epoch + 1).to_string(),
        "--set",
        "training.batch_size=64",
    ]);
    run(0, 1, &resume, &dir);
    assert!(checkpoint(&run_dir, epoch + 1).exists());
    let _ = std::fs::remove_dir_all(&dir);
}
