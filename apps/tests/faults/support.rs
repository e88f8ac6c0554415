//! What the fault cases share: running a binary, asserting an error that names its culprit,
//! hashing a folder, and the finished tiny runs the cases damage copies of.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowfaults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `(exit code, stdout, stderr)` of a binary run in `cwd`.
pub fn run(bin: &str, args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env("MLFLOW_TRACKING_URI", cwd.join("mlruns"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An error: exit code 1 and `what` in the message.
pub fn fails_naming(result: (i32, String, String), what: &[&str]) -> String {
    let (code, _, err) = result;
    assert_eq!(code, 1, "expected an error (exit 1), got {code}: {err}");
    for w in what {
        assert!(err.contains(w), "the error does not name `{w}`: {err}");
    }
    err
}

/// Every file under `dir` with a hash of its bytes.
pub fn hashes(dir: &Path) -> BTreeMap<PathBuf, u64> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap().hash(&mut h);
                out.insert(path, h.finish());
            }
        }
    }
    out
}

pub const APP1: &str = env!("CARGO_BIN_EXE_train_flowmodels1");

pub const APP4: &str = env!("CARGO_BIN_EXE_train_flowmodels4");

pub const APP5: &str = env!("CARGO_BIN_EXE_train_flowmodels5");

pub const APP2: &str = env!("CARGO_BIN_EXE_train_flowmodels2");

pub const TINY: [&str; 12] = [
    "--set",
    "training.epochs=2",
    "--set",
    "training.steps_per_epoch=5",
    "--set",
    "model.num_layers=2",
    "--set",
    "model.hidden_units=[8]",
    "--set",
    "run.validation_size=64",
    "--set",
    "training.batch_size=32",
];

/// A finished tiny run of `bin` with `extra` arguments, made once per test binary and app.
pub fn finished(bin: &'static str, extra: &'static [&'static str]) -> PathBuf {
    static RUNS: OnceLock<std::sync::Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let runs = RUNS.get_or_init(Default::default);
    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{bin}{extra:?}");
    if let Some(dir) = runs.get(&key) {
        return dir.clone();
    }
    let name = Path::new(bin)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let dir = scratch(&format!("{name}-finished"));
    let run_dir = dir.join("run");
    let mut args: Vec<&str> = vec!["--run-dir", run_dir.to_str().unwrap()];
    args.extend(TINY);
    args.extend(extra);
    let (code, _, err) = run(bin, &args, &dir);
    assert_eq!(code, 0, "{name} did not finish: {err}");
    runs.insert(key, run_dir.clone());
    run_dir
}

pub fn app1_run() -> PathBuf {
    finished(APP1, &["--set", "run.plot_points=64"])
}

pub fn app5_run() -> PathBuf {
    finished(
        APP5,
        &[
            "--set",
            "run.test_observations=1",
            "--set",
            "run.reference_draws=2000",
            "--set",
            "run.reference_keep=20",
            "--set",
            "run.calibration_pairs=4",
            "--set",
            "run.calibration_samples=8",
            "--set",
            "run.posterior_samples=16",
            "--set",
            "run.normalization_draws=200",
        ],
    )
}

pub fn app4_run() -> PathBuf {
    finished(
        APP4,
        &[
            "--set",
            "run.plot_points=64",
            "--set",
            "run.samples_per_class=8",
        ],
    )
}

/// A copy of the run folder `from` with a tracking run of its own: tests run in parallel, and
/// two resumed copies must not write into one tracking run.
pub fn copy_run(from: &Path, to: &Path) {
    copy_dir(from, to);
    let file = to.join("run.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    json["tracking_run"] = serde_json::Value::Null;
    std::fs::write(&file, json.to_string()).unwrap();
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else if path.file_name().is_some_and(|n| n != ".lock") {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Overwrite the first float of every tensor of a safetensors file with NaN: a valid file
/// full of non-finite parameters, as a diverged run would save it.
pub fn poison(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let start = info["data_offsets"][0].as_u64().unwrap() as usize;
        let at = 8 + header_len + start;
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// The tensors of a safetensors file, without its metadata (which records when and where it
/// was written): its header's tensor entries and its data bytes.
pub fn weights(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    header.as_object_mut().unwrap().remove("__metadata__");
    (header, bytes[8 + header_len..].to_vec())
}
