//! Where the applications compute: `--device cpu`, `cuda`, `cuda:N` or `cuda:local`.

use anyhow::{Context, Result};
use burn::prelude::*;

static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
static CUDA_ORDINAL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The device the applications compute on: the one `--device` selected, else the CPU.
pub fn device() -> Device {
    DEVICE.get().cloned().unwrap_or_else(Device::flex)
}

/// Select the process's device from `cpu`, `cuda` or `cuda:N`. CUDA needs a build with
/// `--features cuda` and a working driver and GPU; either missing is an error that says so.
pub fn select_device(spec: &str) -> Result<()> {
    let (device, ordinal) = parse_device(spec)?;
    if DEVICE.set(device.clone()).is_err() && DEVICE.get() != Some(&device) {
        anyhow::bail!("--device {spec}: the process already computes on another device");
    }
    if let Some(ordinal) = ordinal {
        let _ = CUDA_ORDINAL.set(ordinal);
    }
    Ok(())
}

/// The GPU `--device` selected (its index on this node), if a GPU.
pub fn cuda_ordinal() -> Option<usize> {
    CUDA_ORDINAL.get().copied()
}

fn parse_device(spec: &str) -> Result<(Device, Option<usize>)> {
    let spec = spec.trim();
    if spec == "cpu" || spec == "flex" {
        return Ok((Device::flex(), None));
    }
    let index = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(":local") => local_rank(),
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .with_context(|| format!("--device {spec}: expected cuda, cuda:N or cuda:local"))?,
        None => anyhow::bail!("--device {spec}: expected cpu, cuda, cuda:N or cuda:local"),
    };
    Ok((cuda_device(spec, index)?, Some(index)))
}

/// This process's rank among the ranks of a job on its node, as the MPI launcher says
/// (OpenMPI, MPICH, Slurm), else 0: `--device cuda:local` gives each rank of a node its own GPU.
fn local_rank() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(0)
}

#[cfg(feature = "cuda")]
fn cuda_device(spec: &str, index: usize) -> Result<Device> {
    // The driver and NVRTC load at first use; a missing driver or GPU panics there. Probe once
    // with a tiny computation and turn that into an error.
    let device = Device::cuda(index);
    let probe = device.clone();
    let silenced = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(move || {
        Tensor::<1>::from_floats([1.0, 2.0], &probe)
            .sum()
            .into_scalar::<f64>()
    });
    std::panic::set_hook(silenced);
    match result {
        Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(device),
        Ok(v) => anyhow::bail!("--device {spec}: the GPU computed 1 + 2 = {v}"),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no message".into());
            anyhow::bail!(
                "--device {spec}: no usable NVIDIA driver or GPU {index} was found ({why})"
            )
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(spec: &str, _index: usize) -> Result<Device> {
    anyhow::bail!(
        "--device {spec}: this build has no CUDA support; build with `cargo build --release \
         --features cuda` (see README: Building)"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn devices_parse_and_a_missing_cuda_build_says_so() {
        assert!(super::parse_device("cpu").is_ok());
        let e = format!("{:#}", super::parse_device("gpu").unwrap_err());
        assert!(
            e.contains("expected cpu, cuda, cuda:N or cuda:local"),
            "{e}"
        );
        let e = format!("{:#}", super::parse_device("cuda:x").unwrap_err());
        assert!(e.contains("cuda:N"), "{e}");
        // Each rank of a node takes the GPU of its index there; 0 outside MPI.
        assert_eq!(super::local_rank(), 0);
        #[cfg(not(feature = "cuda"))]
        {
            let e = format!("{:#}", super::parse_device("cuda:1").unwrap_err());
            assert!(
                e.contains("no CUDA support") && e.contains("--features cuda"),
                "{e}"
            );
        }
    }
}
