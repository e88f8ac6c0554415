//! Checkpoint errors: another architecture, a newer format, a truncated or foreign file; and
//! atomic writes.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::prelude::*;
use flowcore::checkpoint::{
    FORMAT_VERSION, HEADER_KEY, load_flow, load_flow_expecting, read_checkpoint_header, save_flow,
    save_module,
};
use flowcore::testing::perturb_params;
use flowcore::{ArchitectureConfig, Flow, GlowConfig, RealNvpConfig};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowcore-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn small_nvp() -> ArchitectureConfig {
    ArchitectureConfig::RealNvpDense(RealNvpConfig {
        num_layers: 2,
        hidden_units: vec![8],
        ..RealNvpConfig::new(3)
    })
}

fn saved(dir: &std::path::Path) -> (PathBuf, Flow) {
    let d = Device::flex();
    let flow = perturb_params(Flow::new(small_nvp(), &d).unwrap(), 0.1, 1);
    let path = dir.join("model.safetensors");
    save_flow(&flow, &path, serde_json::json!({"epoch": 3})).unwrap();
    (path, flow)
}

fn err_of<T: std::fmt::Debug>(r: flowcore::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn round_trip_keeps_header_and_outputs() {
    let dir = scratch("rt");
    let (path, flow) = saved(&dir);
    let (loaded, header) = load_flow(&path, &Device::flex()).unwrap();
    assert_eq!(header.format_version, FORMAT_VERSION);
    assert_eq!(header.extra["epoch"], 3);
    assert_eq!(&header.architecture, flow.config());
    let x = Tensor::<2>::random([4, 3], burn::tensor::Distribution::Default, &Device::flex());
    let diff = (loaded.log_prob(x.clone(), None) - flow.log_prob(x, None))
        .abs()
        .max()
        .into_scalar::<f64>();
    assert_eq!(diff, 0.0);
    // No temporary file is left beside the checkpoint.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn another_architecture_is_named() {
    let dir = scratch("arch");
    let (path, _) = saved(&dir);
    let glow = ArchitectureConfig::Glow(GlowConfig::new(1, 4, 4));
    let e = err_of(load_flow_expecting(&path, &glow, &Device::flex()));
    assert!(
        e.contains("holds a `real_nvp_dense` model but a `glow` model was expected"),
        "{e}"
    );
    let wider = ArchitectureConfig::RealNvpDense(RealNvpConfig {
        num_layers: 2,
        hidden_units: vec![16],
        ..RealNvpConfig::new(3)
    });
    let e = err_of(load_flow_expecting(&path, &wider, &Device::flex()));
    assert!(
        e.contains("`hidden_units` is [8] in the file but [16] was expected"),
        "{e}"
    );
    load_flow_expecting(&path, &small_nvp(), &Device::flex()).unwrap();
}

#[test]
fn tensors_of_another_model_are_rejected() {
    let dir = scratch("tensors");
    let d = Device::flex();
    let other = Flow::new(
        ArchitectureConfig::RealNvpDense(RealNvpConfig {
            num_layers: 2,
            hidden_units: vec![4],
            ..RealNvpConfig::new(3)
        }),
        &d,
    )
    .unwrap();
    // Header of one model, tensors of another.
    let header = serde_json::json!({
        "format_version": FORMAT_VERSION, "architecture": small_nvp(), "init_flags": []
    });
    let path = dir.join("mixed.safetensors");
    save_module(
        &other,
        &path,
        HashMap::from([(HEADER_KEY.to_string(), header.to_string())]),
    )
    .unwrap();
    let e = err_of(load_flow(&path, &d));
    eprintln!("{e}");
    assert!(
        e.contains("has shape [1, 4] in the file but [1, 8] in the model"),
        "{e}"
    );
    assert!(e.contains("mixed.safetensors"), "{e}");
}

#[test]
fn newer_format_is_refused() {
    let dir = scratch("newer");
    let d = Device::flex();
    let flow = Flow::new(small_nvp(), &d).unwrap();
    let header = serde_json::json!({
        "format_version": FORMAT_VERSION + 1, "architecture": small_nvp(), "init_flags": []
    });
    let path = dir.join("future.safetensors");
    save_module(
        &flow,
        &path,
        HashMap::from([(HEADER_KEY.to_string(), header.to_string())]),
    )
    .unwrap();
    let e = err_of(read_checkpoint_header(&path));
    assert!(
        e.contains(&format!(
            "format version {} is newer than this build reads ({FORMAT_VERSION})",
            FORMAT_VERSION + 1
        )),
        "{e}"
    );
}

#[test]
fn truncated_and_foreign_files_are_clear_errors() {
    let dir = scratch("trunc");
    let (path, _) = saved(&dir);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 5, 40, bytes.len() / 2, bytes.len() - 1] {
        let t = dir.join(format!("cut{cut}.safetensors"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let e = err_of(load_flow(&t, &Device::flex()));
        assert!(e.contains(&format!("cut{cut}.safetensors")), "{e}");
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
    let plain = dir.join("plain.safetensors");
    save_module(
        &Flow::new(small_nvp(), &Device::flex()).unwrap(),
        &plain,
        HashMap::new(),
    )
    .unwrap();
    let e = err_of(load_flow(&plain, &Device::flex()));
    assert!(e.contains("not a flowmodels checkpoint"), "{e}");
    let e = err_of(load_flow(&dir.join("missing.safetensors"), &Device::flex()));
    assert!(e.contains("missing.safetensors"), "{e}");
}
