//! The benchmark table: training and scoring throughput of fixed configurations, their peak
//! memory, FLOPs per step and the fraction of this machine's matrix-multiply peak they reach.
//! Each configuration runs in a process of its own (`bench --only ID`), so its peak resident
//! memory is its own.

mod device_check;
mod models;
mod scaling;
mod timing;

use std::time::Instant;

use anyhow::{Result, bail};
use flowcore::train::TrainingConfig;
use flowcore::{ArchitectureConfig, Flow, standard_normal};
use serde::{Deserialize, Serialize};

pub use device_check::{DeviceCheck, check_device, format_checks};
use models::{
    dense_flops, ffjord_conv28, ffjord_moons, glow, glow_flops, lattice_8x8, lattice_flops,
    maf_fedhex, mlp_flops, nsf_flashsim, phi4_8x8, real_nvp,
};
pub use scaling::SCALING;
pub use timing::hdf5_bench_dir;
use timing::{
    hdf5_reader, loader, moons, time_conditional_training, time_ffjord_training,
    time_objective_training, time_training,
};

/// One configuration of the table.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Its id, for `--only`.
    pub id: &'static str,
    /// What it measures.
    pub what: &'static str,
    /// The reference scripts (`benches/reference/`) that run it too.
    pub references: &'static [&'static str],
}

/// The PyTorch reference for the RealNVP and Glow cases (and the scaling series).
pub const TORCH: &str = "torch_bench.py";
/// The original project's TensorFlow Probability models, for the same cases.
pub const TFP: &str = "tfp_bench.py";
const TORCH_AND_TFP: &[&str] = &[TORCH, TFP];

/// Every configuration, in table order.
pub const CASES: [Case; 18] = [
    Case {
        id: "realnvp2d",
        what: "2-D RealNVP, 8 couplings, MLP 1-128-128-2, batch 1024, Adam: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "app1-8x256",
        what: "app 1 RealNVP 8 x [256, 256], batch 128: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "app1-12x512",
        what: "app 1 RealNVP 12 x [512, 512], batch 128: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "glow32",
        what: "Glow 32x32x3, 3 levels x 4 steps x 64 channels, batch 16: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "glow32-score",
        what: "Glow 32x32x3 as above: scoring log p, batch 256",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "glow128",
        what: "Glow 128x128x3, 3 levels x 6 steps x 128 channels, batch 16: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "loader",
        what: "data loading: PNG decode + flip/rotate/zoom + dequantise, 32x32x3",
        references: &[],
    },
    Case {
        id: "hdf5-reader",
        what: "HDF5 tables as app 8 trains on them: 4 files x 250k rows x 31 f32 (deflate), \
               shuffled blocks across files, prefetched, batches of 256: rows/s",
        references: &["hdf5_bench.py"],
    },
    Case {
        id: "nsf-flashsim",
        what: "FlashSim-shaped conditional NSF: 17 targets | 14 conditions, 6 spline couplings \
               (16 bins) of MLP [128, 128], reversed between, batch 256: training",
        references: &["flows_bench.py"],
    },
    Case {
        id: "nsf-flashsim-sample",
        what: "the FlashSim-shaped NSF: sampling 4096 targets for 4096 conditions",
        references: &["flows_bench.py"],
    },
    Case {
        id: "maf-fedhex",
        what: "FEDHEX-shaped conditional MAF: 2-D data | 2-D labels, 10 MADE blocks [128, 128], \
               affine, reversed between, batch 512: training",
        references: &["flows_bench.py"],
    },
    Case {
        id: "maf-fedhex-sample",
        what: "the FEDHEX-shaped MAF: sampling 4096 points for 4096 labels",
        references: &["flows_bench.py"],
    },
    Case {
        id: "phi4-8x8",
        what: "lattice phi^4 8x8, 8 affine checkerboard couplings of periodic 3x3 convs \
               1-8-8-2, batch 256: reverse-KL training against the action",
        references: &["lattice_bench.py"],
    },
    Case {
        id: "phi4-8x8-sample",
        what: "the 8x8 lattice flow: 4096 fields with their log-weights -S - log q",
        references: &["lattice_bench.py"],
    },
    Case {
        id: "ffjord-moons",
        what: "FFJORD on the moons: one block, concat-squash 2-64-64-64-2 tanh, dopri5 \
               rtol = atol = 1e-5, exact trace, back-propagation through the solver, batch 256: \
               training",
        references: &["ffjord_bench.py"],
    },
    Case {
        id: "ffjord-moons-adjoint",
        what: "the FFJORD moons model trained with gradients by the adjoint method (a backward \
               solve at the same tolerances), batch 256: training",
        references: &["ffjord_bench.py"],
    },
    Case {
        id: "ffjord-conv28",
        what: "application 2's FFJORD (app2-ffjord.toml): 28x28x1, logit, 2 squeezes, \
               concat-squash 3x3 convs 16-64-64-16 tanh, RK4 x 8, Hutchinson's trace with one \
               Rademacher probe, batch 32: training",
        references: &["ffjord_bench.py"],
    },
    Case {
        id: "ffjord-moons-sample",
        what: "the FFJORD moons model: sampling 4096 points (one inverse solve)",
        references: &["ffjord_bench.py"],
    },
];

/// One row of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// The case id.
    pub id: String,
    /// Which implementation: `flowmodels` or `pytorch`.
    pub implementation: String,
    /// Steps (or batches) per second.
    pub steps_per_sec: f64,
    /// Samples (or images) per second.
    pub samples_per_sec: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_mib: f64,
    /// Floating-point operations per step (multiply-adds count 2), matrix products and
    /// convolutions only.
    pub flops_per_step: f64,
    /// Achieved GFLOP/s over the machine's measured matrix-multiply peak.
    pub fraction_of_peak: f64,
    /// Anything else worth saying.
    pub note: String,
}

/// Peak resident memory of this process (VmHWM), MiB.
pub fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// This machine's matrix-multiply peak through burn: the best of several 1024^3 products,
/// GFLOP/s.
pub fn matmul_peak_gflops() -> f64 {
    let d = crate::run::device();
    let n = 1024;
    let a = standard_normal(n, n, 1, &d);
    let b = standard_normal(n, n, 2, &d);
    let _ = a.clone().matmul(b.clone()).sum().into_scalar::<f64>();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let _ = a.clone().matmul(b.clone()).sum().into_scalar::<f64>();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// Run one case in this process; `scale` multiplies its step count.
pub fn run_case(id: &str, scale: f64, peak_gflops: f64) -> Result<Row> {
    let steps = |n: usize| ((n as f64 * scale).round() as usize).max(2);
    // As the apps train: with gradient checkpointing (TrainingConfig's default).
    let device = TrainingConfig::default().autodiff_device(&crate::run::device());
    let unit = |dim: usize, batch: usize| {
        let d = device.clone();
        move |i: u64| {
            // Dequantised-image-like inputs in (0, 1).
            standard_normal(batch, dim, i, &d)
                .mul_scalar(0.15)
                .add_scalar(0.5)
                .clamp(0.01, 0.99)
        }
    };
    let normal = |dim: usize, batch: usize| {
        let d = device.clone();
        move |i: u64| standard_normal(batch, dim, i, &d)
    };
    let (steps_per_sec, batch, flops, note) = match id {
        "realnvp2d" => {
            let n = steps(200);
            let s = time_training(real_nvp(2, 8, vec![128, 128]), n, &normal(2, 1024))?;
            (
                s,
                1024,
                3.0 * dense_flops(2, 8, &[128, 128], 1024),
                format!("{n} steps"),
            )
        }
        "app1-8x256" => {
            let n = steps(200);
            let s = time_training(real_nvp(2, 8, vec![256, 256]), n, &normal(2, 128))?;
            (
                s,
                128,
                3.0 * dense_flops(2, 8, &[256, 256], 128),
                format!("{n} steps"),
            )
        }
        "app1-12x512" => {
            let n = steps(60);
            let s = time_training(real_nvp(2, 12, vec![512, 512]), n, &normal(2, 128))?;
            (
                s,
                128,
                3.0 * dense_flops(2, 12, &[512, 512], 128),
                format!("{n} steps"),
            )
        }
        id if scaling::parse(id).is_some() => {
            let (side, batch) = scaling::parse(id).expect("a series id");
            let n = steps(scaling::steps(side, batch));
            let s = time_training(glow(3, side, 3, 4, 64), n, &unit(3 * side * side, batch))?;
            (
                s,
                batch,
                3.0 * glow_flops(3, side, side, 3, 4, 64) * batch as f64,
                format!("{n} steps"),
            )
        }
        "glow32" => {
            let n = steps(30);
            let s = time_training(glow(3, 32, 3, 4, 64), n, &unit(3 * 32 * 32, 16))?;
            (
                s,
                16,
                3.0 * glow_flops(3, 32, 32, 3, 4, 64) * 16.0,
                format!("{n} steps"),
            )
        }
        "glow32-score" => {
            let d = crate::run::device();
            let flow = Flow::seeded(glow(3, 32, 3, 4, 64), 0, &d)?;
            let dim = 3 * 32 * 32;
            let x = |i| {
                standard_normal(256, dim, i, &d)
                    .mul_scalar(0.15)
                    .add_scalar(0.5)
                    .clamp(0.01, 0.99)
            };
            let flow = flow.initialize(x(0), None);
            let _ = flow.log_prob(x(1), None).sum().into_scalar::<f64>();
            let n = steps(6);
            let started = Instant::now();
            for i in 0..n as u64 {
                let _ = flow.log_prob(x(2 + i), None).sum().into_scalar::<f64>();
            }
            let s = n as f64 / started.elapsed().as_secs_f64();
            (
                s,
                256,
                glow_flops(3, 32, 32, 3, 4, 64) * 256.0,
                format!("{n} batches"),
            )
        }
        "glow128" => {
            let n = steps(3);
            let s = time_training(glow(3, 128, 3, 6, 128), n, &unit(3 * 128 * 128, 16))?;
            (
                s,
                16,
                3.0 * glow_flops(3, 128, 128, 3, 6, 128) * 16.0,
                format!("{n} steps"),
            )
        }
        "nsf-flashsim" | "maf-fedhex" => {
            let (config, dim, cond, batch, n, nets) = if id == "nsf-flashsim" {
                // 6 couplings: 8 + 14 inputs -> 128 -> 128 -> 9 x 47 spline parameters.
                let widths = [8 + 14, 128, 128, 9 * 47];
                (
                    nsf_flashsim(),
                    17,
                    14,
                    256,
                    steps(40),
                    6.0 * mlp_flops(&widths, 256),
                )
            } else {
                // 10 MADE blocks: 2 + 2 inputs -> 128 -> 128 -> 2 x 2 (dense, then masked).
                let widths = [2 + 2, 128, 128, 2 * 2];
                (
                    maf_fedhex(),
                    2,
                    2,
                    512,
                    steps(60),
                    10.0 * mlp_flops(&widths, 512),
                )
            };
            let (dx, dc) = (normal(dim, batch), normal(cond, batch));
            let s = time_conditional_training(config, n, &|i| (dx(i), Some(dc(1_000_000 + i))))?;
            (s, batch, 3.0 * nets, format!("{n} steps"))
        }
        "nsf-flashsim-sample" | "maf-fedhex-sample" => {
            let (config, cond, n) = if id == "nsf-flashsim-sample" {
                (nsf_flashsim(), 14, steps(10))
            } else {
                (maf_fedhex(), 2, steps(10))
            };
            let d = crate::run::device();
            let flow = Flow::seeded(config, 0, &d)?;
            let batch = 4096;
            let c = standard_normal(batch, cond, 5, &d);
            let _ = flow
                .sample(batch, 1.0, 0, Some(&c), &d)
                .sum()
                .into_scalar::<f64>();
            let started = Instant::now();
            for i in 0..n as u64 {
                let _ = flow
                    .sample(batch, 1.0, 1 + i, Some(&c), &d)
                    .sum()
                    .into_scalar::<f64>();
            }
            let s = n as f64 / started.elapsed().as_secs_f64();
            (s, batch, 0.0, format!("{n} batches of {batch}"))
        }
        "phi4-8x8" => {
            let n = steps(100);
            let s = time_objective_training(lattice_8x8(), &phi4_8x8(), n, 256)?;
            (s, 256, 3.0 * lattice_flops() * 256.0, format!("{n} steps"))
        }
        "phi4-8x8-sample" => {
            let d = crate::run::device();
            let flow = Flow::seeded(lattice_8x8(), 0, &d)?;
            let objective = phi4_8x8();
            let batch = 4096;
            let draw = |i: u64| {
                let z = standard_normal(batch, 64, i, &d);
                let (_, log_w) = objective.log_weights(&flow, z);
                std::hint::black_box(log_w);
            };
            draw(0);
            let n = steps(10);
            let started = Instant::now();
            for i in 0..n as u64 {
                draw(1 + i);
            }
            let s = n as f64 / started.elapsed().as_secs_f64();
            (
                s,
                batch,
                lattice_flops() * batch as f64,
                format!("{n} batches of {batch} with log-weights"),
            )
        }
        "ffjord-moons" | "ffjord-moons-adjoint" => {
            let n = steps(30);
            let mut config = ffjord_moons();
            if let (true, ArchitectureConfig::Ffjord(c)) = (id.ends_with("adjoint"), &mut config) {
                c.gradient = flowcore::ode::OdeGradient::Adjoint;
            }
            let (s, nfe) = time_ffjord_training(config, n, &|i, d| moons(256, i, d))?;
            (
                s,
                256,
                0.0,
                format!("{n} steps, {nfe:.1} evaluations per step (every solve)"),
            )
        }
        "ffjord-conv28" => {
            let n = steps(10);
            let images = |i: u64, d: &burn::tensor::Device| {
                // Dequantised-image-like inputs in (0, 1), as `unit` draws them.
                standard_normal(32, 28 * 28, i, d)
                    .mul_scalar(0.15)
                    .add_scalar(0.5)
                    .clamp(0.01, 0.99)
            };
            let (s, nfe) = time_ffjord_training(ffjord_conv28(), n, &images)?;
            (
                s,
                32,
                0.0,
                format!("{n} steps, {nfe:.1} evaluations per step"),
            )
        }
        "ffjord-moons-sample" => {
            let d = crate::run::device();
            // A model a few steps into training: dynamics that are not the zero start.
            let flow =
                flowcore::testing::perturb_params(Flow::seeded(ffjord_moons(), 0, &d)?, 0.3, 1);
            let batch = 4096;
            let _ = flow
                .sample(batch, 1.0, 0, None, &d)
                .sum()
                .into_scalar::<f64>();
            let n = steps(10);
            let before = flowcore::ode::OdeCounts::now();
            let started = Instant::now();
            for i in 0..n as u64 {
                let _ = flow
                    .sample(batch, 1.0, 1 + i, None, &d)
                    .sum()
                    .into_scalar::<f64>();
            }
            let s = n as f64 / started.elapsed().as_secs_f64();
            let c = flowcore::ode::OdeCounts::now().since(&before);
            let nfe = c.nfe as f64 / c.solves.max(1) as f64;
            (
                s,
                batch,
                0.0,
                format!("{n} batches of {batch}, {nfe:.1} evaluations per solve"),
            )
        }
        "loader" => {
            let (decode, images) = loader(steps(40))?;
            let note = format!("decode alone {decode:.0} images/s; batches of 32");
            (images / 32.0, 32, 0.0, note)
        }
        "hdf5-reader" => {
            let (rows, note) = hdf5_reader(steps(1_000_000))?;
            (rows / 256.0, 256, 0.0, note)
        }
        other => bail!(
            "unknown case `{other}`; the cases are {}",
            CASES.iter().map(|c| c.id).collect::<Vec<_>>().join(", ")
        ),
    };
    Ok(Row {
        id: id.into(),
        implementation: "flowmodels".into(),
        steps_per_sec,
        samples_per_sec: steps_per_sec * batch as f64,
        peak_mib: peak_mib(),
        flops_per_step: flops,
        fraction_of_peak: flops * steps_per_sec / 1e9 / peak_gflops.max(1e-9),
        note,
    })
}

/// The table for a terminal (Markdown); a reference's row gives flowmodels' rate over its
/// own, the same case in the same invocation.
pub fn format_table(rows: &[Row], peak_gflops: f64) -> String {
    let mut out = format!(
        "matrix-multiply peak (burn, 1024^3, f32): {peak_gflops:.1} GFLOP/s\n\n\
         | case | implementation | steps/s | samples/s | peak MiB | GFLOP/step | of peak | \
         flowmodels / this | note |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let ours = rows
            .iter()
            .find(|o| o.id == r.id && o.implementation == "flowmodels");
        let ratio = match ours {
            Some(o) if r.implementation != "flowmodels" && r.steps_per_sec > 0.0 => {
                format!("{:.2}x", o.steps_per_sec / r.steps_per_sec)
            }
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {:.3} | {:.1}% | {ratio} | {} |\n",
            r.id,
            r.implementation,
            r.steps_per_sec,
            r.samples_per_sec,
            r.peak_mib,
            r.flops_per_step / 1e9,
            100.0 * r.fraction_of_peak,
            r.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The ids of the cases reference `script` runs: its `CASES` (or `CASE`) list, and the
    /// scaling series where it imports it.
    fn script_cases(dir: &Path, script: &str) -> Vec<String> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        let quoted = |line: &str| {
            line.split('"')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let listed = |text: &str, starts: &[&str]| {
            text.lines()
                .filter(|l| starts.iter().any(|s| l.starts_with(s)))
                .flat_map(quoted)
                .collect::<Vec<_>>()
        };
        let text = read(script);
        let mut ids = listed(&text, &["CASES = [", "CASE = "]);
        if text.contains("from bench_common import SERIES") {
            ids.extend(listed(&read("bench_common.py"), &["SERIES = ["]));
        }
        ids.sort();
        ids
    }

    #[test]
    fn each_case_names_exactly_the_reference_scripts_that_run_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/reference");
        let mut scripts: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with("_bench.py"))
            .collect();
        scripts.sort();
        assert!(scripts.len() >= 6, "the reference scripts: {scripts:?}");
        let cases: Vec<&Case> = CASES.iter().chain(SCALING.iter()).collect();
        for script in &scripts {
            let runs = script_cases(&dir, script);
            assert!(!runs.is_empty(), "{script}: no case list found");
            let mut named: Vec<String> = cases
                .iter()
                .filter(|c| c.references.contains(&script.as_str()))
                .map(|c| c.id.to_string())
                .collect();
            named.sort();
            assert_eq!(runs, named, "{script}'s cases against the cases naming it");
        }
        for case in cases {
            for script in case.references {
                assert!(
                    scripts.iter().any(|s| s == script),
                    "{}: no reference {script}",
                    case.id
                );
            }
        }
    }
}
