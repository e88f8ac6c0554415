//! Checkpoints written before the layer registry (by the commit that added them, with the
//! code of then) still load, give the log-densities they gave then, and their
//! architecture configs serialize back to the JSON they were saved with: every layer kind, both
//! architectures, a condition and a class-conditional base.

use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::checkpoint::{load_flow, read_checkpoint_header};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy")
        .join(name)
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn check(name: &str) {
    let device = Device::flex();
    let path = fixture(&format!("{name}.safetensors"));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap())
            .unwrap();
    let (n, dim) = (
        expected["n"].as_u64().unwrap() as usize,
        expected["dim"].as_u64().unwrap() as usize,
    );
    let (flow, header) = load_flow(&path, &device).unwrap();
    assert_eq!(flow.dim(), dim, "{name}");
    let x = Tensor::<2>::from_data(TensorData::new(floats(&expected["x"]), [n, dim]), &device);
    let cond = expected["cond"].as_array().map(|_| {
        let k = expected["cond_dim"].as_u64().unwrap() as usize;
        Tensor::<2>::from_data(TensorData::new(floats(&expected["cond"]), [n, k]), &device)
    });
    let lp = flow
        .log_prob(x, cond.as_ref())
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    for (i, (got, want)) in lp.iter().zip(floats(&expected["log_prob"])).enumerate() {
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{name}: sample {i}: log p {got} but the checkpoint gave {want} when it was written"
        );
    }
    // The config written today is the one written then (same keys, same values).
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let saved: serde_json::Value = serde_json::from_str(
        meta.metadata().as_ref().unwrap()[flowcore::checkpoint::HEADER_KEY].as_str(),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&read_checkpoint_header(&path).unwrap().architecture).unwrap(),
        saved["architecture"],
        "{name}: the architecture serializes differently"
    );
    assert_eq!(header.extra["fixture"], name);
}

#[test]
fn a_conditional_real_nvp_with_actnorm_and_residual_nets_loads() {
    check("real_nvp_conditional");
}

#[test]
fn a_glow_with_logit_preprocessing_loads() {
    check("glow_logit");
}

#[test]
fn a_list_of_every_layer_kind_loads() {
    check("layers_every_kind");
}

#[test]
fn a_class_conditional_base_loads() {
    check("class_gaussians");
}
