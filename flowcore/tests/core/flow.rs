//! Flows built from the two architectures: shapes, configuration errors, identity at
//! initialisation, the change-of-variables identity, sampling.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use flowcore::arch::{Architecture, Mixing};
use flowcore::layers::Mask;
use flowcore::testing::perturb_params;
use flowcore::{ArchitectureConfig, Bijector, Flow, GlowConfig, LayerSpec, RealNvpConfig};

fn device() -> Device {
    Device::flex()
}

fn max_abs(t: Tensor<1>) -> f64 {
    t.abs().max().into_scalar::<f64>()
}

fn glow(c: usize, h: usize, w: usize, levels: usize) -> ArchitectureConfig {
    let mut g = GlowConfig::new(c, h, w);
    g.levels = levels;
    g.steps_per_level = 2;
    g.hidden_channels = 8;
    ArchitectureConfig::Glow(g)
}

#[test]
fn glow_on_8x8x3_and_28x28x1() {
    let d = device();
    for (cfg, dim) in [(glow(3, 8, 8, 3), 192), (glow(1, 28, 28, 2), 784)] {
        let flow = perturb_params(Flow::new(cfg, &d).unwrap(), 0.05, 1);
        assert_eq!(flow.dim(), dim);
        let x = Tensor::<2>::random([4, dim], Distribution::Normal(0.0, 1.0), &d);
        let (z, _) = flow.forward(x.clone(), None);
        assert_eq!(z.dims(), [4, dim]);
        let back = flow.decode(z, None);
        let err = (back - x).abs().max().into_scalar::<f64>();
        assert!(err < 1e-4, "round trip error {err}");
    }
}

#[test]
fn glow_levels_that_do_not_divide_the_image_are_rejected() {
    let e = Flow::new(glow(1, 28, 28, 3), &device())
        .unwrap_err()
        .to_string();
    assert!(e.contains("height 28 is not divisible by 2^3"), "{e}");
    assert!(e.contains("use at most 2 levels"), "{e}");
    let e = Flow::new(glow(3, 32, 24, 4), &device())
        .unwrap_err()
        .to_string();
    assert!(e.contains("width 24 is not divisible by 2^4"), "{e}");
    assert!(e.contains("at most 3 levels"), "{e}");
}

#[test]
fn real_nvp_configuration_errors_name_the_key() {
    let mut c = RealNvpConfig::new(1);
    let e = Flow::new(ArchitectureConfig::RealNvpDense(c.clone()), &device())
        .unwrap_err()
        .to_string();
    assert!(e.contains("dim must be at least 2"), "{e}");
    c.dim = 4;
    c.hidden_per_layer = Some(vec![vec![8]]);
    let e = Flow::new(ArchitectureConfig::RealNvpDense(c), &device())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hidden_per_layer has 1 entries but num_layers is 8"),
        "{e}"
    );
    let mut b = RealNvpConfig::new(4);
    b.split_at = 2;
    let e = Flow::new(ArchitectureConfig::RealNvpDense(b.clone()), &device())
        .unwrap_err()
        .to_string();
    assert!(e.contains("split_at is only read with permutation"), "{e}");
    b.permutation = Mixing::Blocks;
    for split_at in [0, 4] {
        b.split_at = split_at;
        let e = Flow::new(ArchitectureConfig::RealNvpDense(b.clone()), &device())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("needs split_at between 1 and dim - 1 = 3"),
            "{e}"
        );
    }
}

/// Blocks `[a | b]` come out as `[b | a]` (the identity at the start, so exactly the input
/// rotated); the second block is transformed from the first block alone, once, and the first
/// block's features take turns.
#[test]
fn real_nvp_blocks_start_as_a_rotation_and_map_the_second_block_from_the_first() {
    let mut c = RealNvpConfig::new(5);
    c.num_layers = 3;
    c.hidden_units = vec![8];
    c.permutation = Mixing::Blocks;
    c.split_at = 2;
    let flow = Flow::new(ArchitectureConfig::RealNvpDense(c.clone()), &device()).unwrap();
    let values: Vec<f32> = (0..10).map(|i| i as f32 * 0.3 - 1.0).collect();
    let x = Tensor::<2>::from_data(TensorData::new(values.clone(), [2, 5]), &device());
    let (z, _) = flow.forward(x, None);
    let z: Vec<f32> = z.into_data().try_to_vec::<f32>().unwrap();
    for row in 0..2 {
        let input = &values[row * 5..row * 5 + 5];
        let rotated: Vec<f32> = input[2..].iter().chain(&input[..2]).copied().collect();
        assert_eq!(&z[row * 5..row * 5 + 5], &rotated[..], "row {row}");
    }
    let specs = c.to_specs().unwrap();
    match &specs[0] {
        LayerSpec::Coupling(s) => assert_eq!(
            s.mask,
            Mask::Features {
                dim: 5,
                transformed: vec![2, 3, 4]
            }
        ),
        other => panic!("{other:?}"),
    }
    // The first block's couplings take its two features in turn.
    let firsts: Vec<Vec<usize>> = specs
        .iter()
        .filter_map(|s| match s {
            LayerSpec::Coupling(s) => match &s.mask {
                Mask::Features { transformed, .. } if transformed.iter().all(|&i| i < 2) => {
                    Some(transformed.clone())
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(firsts.len(), 2);
    assert_eq!(firsts[0].len(), 1);
    assert_ne!(firsts[0], firsts[1]);
}

#[test]
fn architecture_configs_read_from_toml_with_tfp_names() {
    let cfg: ArchitectureConfig = toml_like(
        r#"{"kind": "glow", "channels": 3, "height": 32, "width": 32,
            "num_glow_blocks": 3, "num_steps_per_block": 4, "hidden_channels": 64}"#,
    );
    match &cfg {
        ArchitectureConfig::Glow(g) => assert_eq!((g.levels, g.steps_per_level), (3, 4)),
        other => panic!("{other:?}"),
    }
    let cfg: ArchitectureConfig = toml_like(
        r#"{"kind": "real_nvp_dense", "dim": 2, "num_layers": 12, "hidden_layers": [512, 512]}"#,
    );
    assert_eq!(
        cfg,
        ArchitectureConfig::RealNvpDense(RealNvpConfig {
            num_layers: 12,
            hidden_units: vec![512, 512],
            ..RealNvpConfig::new(2)
        })
    );
    let e = serde_json::from_str::<ArchitectureConfig>(
        r#"{"kind": "glow", "channels": 1, "height": 8, "width": 8, "levelz": 2}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `levelz`"), "{e}");
}

fn toml_like(json: &str) -> ArchitectureConfig {
    serde_json::from_str(json).unwrap()
}

#[test]
fn a_new_flow_is_the_identity_up_to_its_permutations() {
    let d = device();
    let mut c = RealNvpConfig::new(3);
    c.num_layers = 3; // reverse, reverse: an odd number of couplings ends un-reversed
    let flow = Flow::new(ArchitectureConfig::RealNvpDense(c), &d).unwrap();
    let x = Tensor::<2>::random([5, 3], Distribution::Normal(0.0, 1.0), &d);
    let (z, ld) = flow.forward(x.clone(), None);
    assert_eq!(max_abs(ld), 0.0);
    assert_eq!((z - x).abs().max().into_scalar::<f64>(), 0.0);
}

#[test]
fn log_prob_is_base_density_of_encode_plus_log_det() {
    let d = device();
    for cfg in [
        ArchitectureConfig::RealNvpDense(RealNvpConfig {
            num_layers: 4,
            hidden_units: vec![16],
            ..RealNvpConfig::new(3)
        }),
        glow(3, 8, 8, 2),
    ] {
        let flow = perturb_params(Flow::new(cfg, &d).unwrap(), 0.05, 7);
        let x = Tensor::<2>::random([6, flow.dim()], Distribution::Normal(0.0, 1.0), &d);
        let log_p = flow.log_prob(x.clone(), None);
        let z = flow.encode(x.clone(), None);
        let (_, logdet) = flow.bijector().forward(x, None);
        // Computed independently of Flow::base_log_prob: -|z|^2/2 - D/2 log(2 pi).
        let zz = z.clone().square().sum_dim(1).squeeze_dim::<1>(1);
        let base = zz
            .mul_scalar(-0.5)
            .sub_scalar(0.5 * flow.dim() as f64 * (2.0 * std::f64::consts::PI).ln());
        let diff = max_abs(log_p - (base + logdet));
        assert!(diff < 1e-3, "change of variables off by {diff}");
    }
}

#[test]
fn samples_have_the_shape_and_spread_of_the_temperature() {
    let d = device();
    let c = RealNvpConfig {
        num_layers: 2,
        ..RealNvpConfig::new(2)
    };
    let flow = Flow::new(ArchitectureConfig::RealNvpDense(c), &d).unwrap();
    // A new flow is the identity up to permutation: samples are the base at that temperature.
    let s = flow.sample(4000, 0.5, 7, None, &d);
    assert_eq!(s.dims(), [4000, 2]);
    let std = s.var(0).sqrt().mean().into_scalar::<f64>();
    assert!((std - 0.5).abs() < 0.03, "sample std {std}, expected 0.5");
}

#[test]
fn initialize_sets_actnorm_to_zero_mean_unit_variance() {
    let d = device();
    let c = RealNvpConfig {
        num_layers: 1,
        actnorm: true,
        ..RealNvpConfig::new(2)
    };
    let flow = Flow::new(ArchitectureConfig::RealNvpDense(c), &d).unwrap();
    assert_eq!(flow.init_flags(), vec![false]);
    let x = Tensor::<2>::random([512, 2], Distribution::Normal(3.0, 2.0), &d);
    let flow = flow.initialize(x.clone(), None);
    assert_eq!(flow.init_flags(), vec![true]);
    // Layer 0 is the ActNorm; the coupling after it is still the identity.
    let (z, _) = flow.bijector().layers[0].forward(x, None);
    let mean = z.clone().mean_dim(0).abs().max().into_scalar::<f64>();
    let var = z.var(0);
    let var_err = (var.sub_scalar(1.0)).abs().max().into_scalar::<f64>();
    assert!(
        mean < 1e-4 && var_err < 1e-2,
        "mean {mean}, var error {var_err}"
    );
}

#[test]
fn a_seed_gives_the_same_parameters_while_other_threads_build_and_sample() {
    // burn's generator is one per process and draws parameters lazily: a build that is
    // seeded must not share draws with builds, loads or samples on other threads.
    let cfg = || {
        ArchitectureConfig::RealNvpDense(RealNvpConfig {
            num_layers: 2,
            hidden_units: vec![8],
            ..RealNvpConfig::new(2)
        })
    };
    let probe = |flow: &Flow| {
        struct Values(Vec<f32>);
        impl ModuleVisitor for Values {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.0.extend(p.val().into_data().iter::<f32>());
            }
        }
        let mut v = Values(Vec::new());
        flow.visit(&mut v);
        v.0
    };
    let noise = std::thread::spawn(move || {
        for i in 0..200 {
            let f = Flow::new(cfg(), &device()).unwrap();
            let _ = f.sample(4, 1.0, i, None, &device());
        }
    });
    let reference = probe(&Flow::seeded(cfg(), 11, &device()).unwrap());
    for _ in 0..50 {
        let again = probe(&Flow::seeded(cfg(), 11, &device()).unwrap());
        assert_eq!(again, reference);
    }
    noise.join().unwrap();
}

#[test]
fn glow_level_latents_follow_its_factor_outs() {
    use flowcore::arch::Architecture;
    use flowcore::layer::LayerSpec;
    // The factored-out tails of the specs, outermost first, and what is left at the bottom.
    fn tails(specs: &[LayerSpec], dim: usize, out: &mut Vec<std::ops::Range<usize>>) {
        match specs.iter().find_map(|s| match s {
            LayerSpec::FactorOut(f) => Some(f),
            _ => None,
        }) {
            Some(f) => {
                assert_eq!(f.dim, dim);
                out.push(f.active..f.dim);
                tails(&f.layers, f.active, out);
            }
            None => out.push(0..dim),
        }
    }
    for (levels, c, h) in [(1, 1, 4), (2, 1, 8), (3, 3, 16)] {
        let glow = GlowConfig {
            levels,
            ..GlowConfig::new(c, h, h)
        };
        let mut expected = Vec::new();
        tails(&glow.to_specs().unwrap(), c * h * h, &mut expected);
        let got = glow.level_latents();
        assert_eq!(got, expected, "{levels} levels");
        assert_eq!(got.iter().map(|r| r.len()).sum::<usize>(), c * h * h);
    }
}

#[test]
fn initialize_under_autodiff_matches_the_plain_pass_and_keeps_which_parameters_train() {
    let autodiff = Device::flex().autodiff();
    for d in [autodiff.clone(), autodiff.gradient_checkpointing()] {
        initialize_untracked_on(&d);
    }
}

fn initialize_untracked_on(d: &Device) {
    let flow = Flow::seeded(glow(3, 8, 8, 2), 3, d).unwrap();
    struct Grads(Vec<(burn::module::ParamId, bool)>);
    impl ModuleVisitor for Grads {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push((p.id, p.is_require_grad()));
        }
    }
    let grads = |flow: &Flow| {
        let mut g = Grads(Vec::new());
        flow.visit(&mut g);
        g.0
    };
    // One parameter frozen by the user stays frozen; the pass must not thaw it.
    let frozen = grads(&flow)[1].0;
    let flow = flow.set_require_grad_group(burn::module::ParamGroup::from_ids(vec![frozen]), false);
    let before = grads(&flow);
    assert!(before.iter().filter(|(_, g)| !g).count() == 1);
    let x = Tensor::<2>::random([16, 3 * 8 * 8], Distribution::Normal(0.5, 2.0), d);
    let plain = flow.valid().initialize(x.clone().inner(), None);
    let tracked = flow.initialize(x.clone(), None);
    assert_eq!(grads(&tracked), before);
    assert_eq!(tracked.init_flags(), plain.init_flags());
    assert!(tracked.init_flags().iter().all(|&f| f));
    let diff = max_abs(
        (tracked.log_prob(x.clone(), None).inner() - plain.log_prob(x.clone().inner(), None))
            .reshape([-1]),
    );
    assert!(diff < 1e-4, "log-densities differ by {diff}");
    // Every trained parameter still receives a gradient through the initialised flow.
    let g = tracked.log_prob(x, None).mean().backward();
    let report = flowcore::testing::gradient_report(&tracked, &g);
    assert_eq!(
        report.len(),
        before.len() - 1,
        "the frozen parameter is not trained"
    );
    let missing: Vec<_> = report.iter().filter(|(_, g)| g.is_none()).collect();
    assert!(missing.is_empty(), "without a gradient: {missing:?}");
}
