//! Batch normalisation in the residual conditioners: it trains on batch statistics, scores with
//! running statistics (so that a sample's log-density does not depend on the others scored
//! with it), and checkpoints keep the running statistics.

use burn::prelude::*;
use flowcore::arch::{DenseNet, NsfConfig, NsfMixing};
use flowcore::checkpoint::{load_flow, save_flow};
use flowcore::nets::Activation;
use flowcore::testing::perturb_params;
use flowcore::transform::Spline;
use flowcore::{Flow, standard_normal};

fn values(t: Tensor<1>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn running_statistics_score_every_sample_alike_and_survive_a_checkpoint() {
    let config = NsfConfig {
        dim: 4,
        num_layers: 2,
        hidden_units: vec![16, 16],
        net: DenseNet::ResMlp,
        layer_norm: false,
        batch_norm: true,
        cond_every_block: true,
        activation: Activation::Relu,
        spline: Spline::default(),
        mixing: NsfMixing::LuLinear,
        seed: 0,
        cond_dim: 2,
    };
    let device = Device::flex().autodiff();
    // Parameters away from the start, where every conditioner outputs zero whatever it sees.
    let flow = perturb_params(Flow::seeded(config.into(), 1, &device).unwrap(), 0.3, 3);
    let x = |seed, n| {
        standard_normal(n, 4, seed, &device)
            .mul_scalar(2.0)
            .add_scalar(1.0)
    };
    let c = |seed, n| standard_normal(n, 2, seed, &device);
    let before = values(
        flow.valid()
            .log_prob(x(9, 8).inner(), Some(&c(10, 8).inner())),
    );
    // Training passes move the running statistics towards these batches' (mean 1, sd 2).
    for i in 0..20 {
        let _ = flow.log_prob(x(i, 64), Some(&c(100 + i, 64)));
    }
    let eval = flow.valid();
    let (xs, cs) = (x(9, 8).inner(), c(10, 8).inner());
    let batch = values(eval.log_prob(xs.clone(), Some(&cs)));
    assert!(
        batch.iter().zip(&before).any(|(a, b)| (a - b).abs() > 1e-3),
        "the running statistics did not move: {batch:?} against {before:?}"
    );
    // One at a time: the same log-densities.
    for (i, in_batch) in batch.iter().enumerate() {
        let one = values(eval.log_prob(
            xs.clone().narrow(0, i, 1),
            Some(&cs.clone().narrow(0, i, 1)),
        ));
        assert!(
            (one[0] - in_batch).abs() < 1e-5,
            "sample {i} alone scores {} but {in_batch} in its batch",
            one[0]
        );
    }
    // In training the batch's statistics are used: another batch, another density.
    let train = values(flow.log_prob(x(9, 8), Some(&c(10, 8))));
    assert!(train.iter().zip(&batch).any(|(a, b)| (a - b).abs() > 1e-3));
    let dir = std::env::temp_dir().join(format!("flowcore-bn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bn.safetensors");
    // That pass moved the running statistics once more: the checkpoint holds them with it.
    let expected = values(flow.valid().log_prob(xs.clone(), Some(&cs)));
    save_flow(&flow, &file, serde_json::Value::Null).unwrap();
    let (loaded, _) = load_flow(&file, &Device::flex()).unwrap();
    let again = values(loaded.log_prob(xs, Some(&cs)));
    assert_eq!(again, expected, "the loaded model scores differently");
    let _ = std::fs::remove_dir_all(&dir);
}
