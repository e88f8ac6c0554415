//! Writes the checkpoints of `fixtures/legacy/` with the code of before the layer registry
//! (run once, at commit "legacy checkpoint fixtures"): `cargo test -p flowcore --test
//! make_legacy_fixtures -- --ignored`. `legacy_checkpoints.rs` loads them.

use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::checkpoint::save_flow;
use flowcore::testing::perturb_params;
use flowcore::{ArchitectureConfig, BaseConfig, Flow, standard_normal};

fn dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy")
}

fn write(name: &str, config: &str, base: BaseConfig, cond_dim: usize, unit_inputs: bool) {
    let device = Device::flex();
    let config: ArchitectureConfig = serde_json::from_str(config).unwrap();
    let flow = Flow::with_base(config, base, Some(7), &device).unwrap();
    let dim = flow.dim();
    let n = 5;
    let mut x = standard_normal(n, dim, 11, &device);
    if unit_inputs {
        x = burn::tensor::activation::sigmoid(x);
    }
    let cond = (cond_dim > 0).then(|| standard_normal(n, cond_dim, 13, &device));
    let flow = flow.initialize(x.clone(), cond.as_ref());
    let flow = perturb_params(flow, 0.05, 3);
    let lp = flow.log_prob(x.clone(), cond.as_ref());
    let to_vec = |d: TensorData| d.convert::<f32>().try_to_vec::<f32>().unwrap();
    save_flow(&flow, &dir().join(format!("{name}.safetensors")), serde_json::json!({"fixture": name})).unwrap();
    let json = serde_json::json!({
        "n": n,
        "dim": dim,
        "x": to_vec(x.into_data()),
        "cond_dim": cond_dim,
        "cond": cond.map(|c| to_vec(c.into_data())),
        "log_prob": to_vec(lp.into_data()),
    });
    std::fs::write(dir().join(format!("{name}.json")), serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

#[test]
#[ignore]
fn make_legacy_fixtures() {
    write(
        "real_nvp_conditional",
        r#"{"kind": "real_nvp_dense", "dim": 3, "num_layers": 3, "hidden_units": [8, 8],
            "net": "res_mlp", "layer_norm": true, "activation": "gelu", "permutation": "random",
            "actnorm": true, "seed": 4, "cond_dim": 2}"#,
        BaseConfig::default(),
        2,
        false,
    );
    write(
        "glow_logit",
        r#"{"kind": "glow", "channels": 3, "height": 8, "width": 8, "levels": 2,
            "steps_per_level": 2, "hidden_channels": 8, "logit_alpha": 0.05, "seed": 9}"#,
        BaseConfig::default(),
        0,
        true,
    );
    let image = r#"{"channels": 2, "height": 4, "width": 4}"#;
    write(
        "layers_every_kind",
        &format!(
            r#"{{"kind": "layers", "layers": [
            {{"kind": "act_norm", "channels": 2, "spatial": 16}},
            {{"kind": "coupling", "mask": {{"kind": "checkerboard", "shape": {image}}},
              "transform": {{"kind": "additive"}}, "net": {{"kind": "conv", "hidden_channels": 4}}}},
            {{"kind": "inv_conv", "channels": 2, "spatial": 16, "seed": 3}},
            {{"kind": "invert", "layers": [
              {{"kind": "coupling", "mask": {{"kind": "channel", "shape": {image}, "flip": true}},
                "transform": {{"kind": "affine", "scale": {{"kind": "atan", "clamp": 2.0}}}},
                "net": {{"kind": "conv", "hidden_channels": 4}}}}]}},
            {{"kind": "chain", "layers": [
              {{"kind": "permute", "dim": 32, "permutation": "random", "seed": 5}},
              {{"kind": "coupling", "mask": {{"kind": "half", "dim": 32}},
                "transform": {{"kind": "affine", "scale": {{"kind": "sigmoid"}}}},
                "net": {{"kind": "mlp", "hidden": [8], "activation": "leaky_relu"}}}}]}},
            {{"kind": "squeeze", "shape": {image}}},
            {{"kind": "factor_out", "dim": 32, "active": 16, "layers": [
              {{"kind": "coupling", "mask": {{"kind": "half", "dim": 16, "flip": true}},
                "net": {{"kind": "res_mlp", "width": 8, "blocks": 1}}}},
              {{"kind": "permute", "dim": 16}}]}}
            ]}}"#
        ),
        BaseConfig::default(),
        0,
        false,
    );
    write(
        "class_gaussians",
        r#"{"kind": "real_nvp_dense", "dim": 2, "num_layers": 2, "hidden_units": [8],
            "transform": {"kind": "additive"}, "permutation": "alternate"}"#,
        BaseConfig::ClassGaussians {
            classes: 3,
            init_std: 1.0,
        },
        0,
        false,
    );
}
