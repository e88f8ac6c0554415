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
    CASES, Case, Row, SCALING, check_device, format_checks, format_table, matmul_peak_gflops,
    run_case,
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
    // The references run the same points: the series is not among their default cases.
    let reference_cases = match (cli.cases.is_empty(), cli.scaling) {
        (false, _) => cli.cases.clone(),
        (true, true) => SCALING.iter().map(|c| c.id.to_string()).collect(),
        (true, false) => Vec::new(),
    };
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
    }
    // Plain PyTorch for the RealNVP, Glow and lattice cases; nflows and zuko for the spline and
    // autoregressive ones (a library that does not import gives a row that says so); TFP for
    // the original project's models.
    let mut scripts = Vec::new();
    if cli.compare_torch {
        scripts.extend([
            "torch_bench.py",
            "flows_bench.py",
            "ffjord_bench.py",
            "lattice_bench.py",
            "hdf5_bench.py",
        ]);
    }
    if cli.compare_tfp {
        scripts.push("tfp_bench.py");
    }
    for script in scripts {
        let on_gpu = cli.device != "cpu";
        if on_gpu && script != "torch_bench.py" {
            // Only torch_bench.py moves its models to the GPU; a CPU figure beside a GPU
            // one would mislead.
            rows.push(missing_row(script, "has no GPU mode; run on the CPU only"));
            continue;
        }
        let script = reference_dir().join(script);
        eprintln!("bench: references ({})", script.display());
        let mut command = Command::new(&cli.python);
        command.arg(&script);
        if !reference_cases.is_empty() {
            command.args(["--cases", &reference_cases.join(",")]);
        }
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
        // Reported, not skipped: a row saying which reference is missing and why (no such
        // Python, or a library it cannot import).
        let failed = match &out {
            Err(e) => Some(format!("cannot run {}: {e}", cli.python)),
            Ok(out) if !out.status.success() => {
                let why = String::from_utf8_lossy(&out.stderr);
                let why = why.lines().last().unwrap_or("no message").to_string();
                Some(format!("{} failed: {why}", cli.python))
            }
            Ok(_) => None,
        };
        let name = script.file_name().unwrap_or_default().to_string_lossy();
        let out = match (failed, out) {
            (None, Ok(out)) => out,
            (why, _) => {
                let why = why.unwrap_or_default();
                eprintln!("bench: the reference {name}: {why}");
                rows.push(missing_row(&name, &why));
                continue;
            }
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let row: Row = serde_json::from_str(line)
                .with_context(|| format!("{} printed `{line}`", script.display()))?;
            rows.push(row);
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
