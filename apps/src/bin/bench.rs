//! `bench`: the benchmark table of flowmodels (training and scoring throughput, peak memory,
//! FLOPs per step, fraction of the matrix-multiply peak), each configuration in a process of
//! its own; with `--compare-torch`, the PyTorch reference (`benches/reference/torch_bench.py`)
//! runs its cases (RealNVP, Glow, spline and autoregressive flows, FFJORD through torchdiffeq
//! and zuko, the lattice flow, h5py
//! reading the HDF5 case's files) in the same invocation.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Parser;
use flowapps::bench::{
    CASES, Case, Row, SCALING, TFP, TORCH, check_device, format_checks, format_table,
    matmul_peak_gflops, run_case,
};

#[derive(Parser)]
#[command(version, about = "Benchmark table of flowmodels")]
struct Cli {
    /// Run one case in this process and print its row as JSON (used by the table).
    #[arg(long)]
    only: Option<String>,
    /// Multiply every case's step count (below 1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The matrix-multiply peak to relate to, GFLOP/s (measured when absent).
    #[arg(long)]
    peak: Option<f64>,
    /// Also run the references (PyTorch; nflows and zuko) on the same threads.
    #[arg(long)]
    compare_torch: bool,
    /// Also run the original project's TensorFlow Probability models (RealNVP and Glow at the
    /// app-1 and Glow cases' sizes, `benches/reference/tfp_bench.py`) on the same threads.
    #[arg(long)]
    compare_tfp: bool,
    /// The Python with torch (and, for `--compare-tfp`, tensorflow-probability) installed (see
    /// README: Benchmarks).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Only these cases (comma-separated ids), flowmodels and references alike.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Where the cases compute: `cpu`, or `cuda`/`cuda:N` in a build with `--features cuda`
    /// (the references run on the CPU unless their script is told otherwise).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Instead of the table: check the bench's flows on `--device` against the CPU (log p,
    /// round trip, gradients); fails when one differs.
    #[arg(long)]
    check_device: bool,
    /// Instead of the table's cases: the Glow scaling series (batch 8 to 64 at 32x32, sides 16
    /// to 64 at batch 16), with the references' rows for the same points.
    #[arg(long)]
    scaling: bool,
    /// Write the rows as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn run(cli: Cli) -> Result<()> {
    flowapps::run::select_device(&cli.device)?;
    if cli.check_device {
        let checks = check_device(&flowapps::run::device())?;
        print!("{}", format_checks(&checks, &cli.device));
        if let Some(path) = &cli.json {
            flowcore::io::write_atomic(path, serde_json::to_string_pretty(&checks)?.as_bytes())?;
        }
        let failed: Vec<_> = checks.iter().filter(|c| !c.pass).map(|c| &c.case).collect();
        if !failed.is_empty() {
            bail!("the device check failed for {failed:?}");
        }
        return Ok(());
    }
    let peak = cli.peak.unwrap_or_else(matmul_peak_gflops);
    if let Some(id) = cli.only {
        let row = run_case(&id, cli.scale, peak)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find the bench binary itself")?;
    let cases: &[Case] = if cli.scaling { &SCALING } else { &CASES };
    if let Some(unknown) = cli.cases.iter().find(|c| !cases.iter().any(|k| k.id == *c)) {
        bail!(
            "--cases: unknown case `{unknown}`; the cases are {}",
            cases.iter().map(|c| c.id).collect::<Vec<_>>().join(", ")
        );
    }
    let chosen = |id: &str| cli.cases.is_empty() || cli.cases.iter().any(|c| c == id);
    let wanted = |script: &str| match script {
        TFP => cli.compare_tfp,
        _ => cli.compare_torch,
    };
    // Each case's references run right after it: on a shared machine whose speed drifts by
    // tens of percent within minutes, a ratio of runs minutes apart means more than one of
    // runs a whole table apart.
    let mut rows = Vec::new();
    for case in cases.iter().filter(|c| chosen(c.id)) {
        eprintln!("bench: {} ({})", case.id, case.what);
        let out = Command::new(&exe)
            .args(["--only", case.id, "--scale", &cli.scale.to_string()])
            .args(["--peak", &peak.to_string(), "--device", &cli.device])
            .output()
            .with_context(|| format!("cannot run case {}", case.id))?;
        if !out.status.success() {
            bail!(
                "case {} failed: {}",
                case.id,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let row: Row = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("case {} printed no row", case.id))?;
        rows.push(row);
        for &script in case.references.iter().filter(|s| wanted(s)) {
            rows.extend(reference_rows(&cli, script, case.id, peak)?);
        }
    }
    // The HDF5 case's files, which its reference read.
    let _ = std::fs::remove_dir_all(flowapps::bench::hdf5_bench_dir());
    print!("{}", format_table(&rows, peak));
    if let Some(path) = cli.json {
        flowcore::io::write_atomic(&path, serde_json::to_string_pretty(&rows)?.as_bytes())?;
    }
    Ok(())
}

/// The rows of reference `script` (plain PyTorch for the RealNVP, Glow and lattice cases;
/// nflows and zuko for the spline and autoregressive ones; torchdiffeq and zuko for FFJORD;
/// h5py; TFP for the original project's models) for case `id`: a row saying which reference
/// is missing and why where it could not run (no such Python, a library it cannot import).
fn reference_rows(cli: &Cli, script: &str, id: &str, peak: f64) -> Result<Vec<Row>> {
    let on_gpu = cli.device != "cpu";
    if on_gpu && script != TORCH {
        // Only torch_bench.py moves its models to the GPU; a CPU figure beside a GPU one
        // would mislead.
        return Ok(vec![missing_row(
            script,
            "has no GPU mode; run on the CPU only",
        )]);
    }
    let path = reference_dir().join(script);
    eprintln!("bench: {id}: reference {script}");
    let mut command = Command::new(&cli.python);
    command.arg(&path).args(["--cases", id]);
    if on_gpu {
        command.args(["--device", "cuda"]);
    }
    let out = command
        .args([
            "--scale",
            &cli.scale.to_string(),
            "--peak",
            &peak.to_string(),
        ])
        .output();
    let out = match out {
        Err(e) => Err(format!("cannot run {}: {e}", cli.python)),
        Ok(out) if !out.status.success() => {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().last().unwrap_or("no message").to_string();
            Err(format!("{} failed: {why}", cli.python))
        }
        Ok(out) => Ok(out),
    };
    let out = match out {
        Ok(out) => out,
        Err(why) => {
            eprintln!("bench: the reference {script}: {why}");
            return Ok(vec![missing_row(script, &why)]);
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .with_context(|| format!("{} printed `{line}`", path.display()))
        })
        .collect()
}

/// A row saying that a reference did not run, and why.
fn missing_row(script: &str, why: &str) -> Row {
    Row {
        id: "-".into(),
        implementation: format!("missing: {script}"),
        steps_per_sec: 0.0,
        samples_per_sec: 0.0,
        peak_mib: 0.0,
        flops_per_step: 0.0,
        fraction_of_peak: 0.0,
        note: why.into(),
    }
}

/// The reference scripts: beside the sources this binary was built from, else
/// `benches/reference` under the working directory (a binary built elsewhere, run from a
/// checkout).
fn reference_dir() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/reference");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("benches/reference")
    }
}

fn main() -> ExitCode {
    let _awake = flowapps::run::threads();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
