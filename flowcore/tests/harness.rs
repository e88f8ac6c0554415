//! Every layer and both architectures through the one shared harness
//! (`flowcore::testing::check_architecture`). A new layer adds its cases here.

use flowcore::arch::{
    DenseNet, ImageMask, MafConfig, Mixing, NsfAutoregressiveConfig, NsfConfig, NsfMixing,
};
use flowcore::layers::{
    ActNormSpec, AutoregressiveSpec, ChainSpec, CouplingSpec, FactorOutSpec, ImageShape,
    InvConvSpec, InvertSpec, LogitSpec, LuLinearSpec, Mask, PermutationKind, PermuteSpec,
    SqueezeSpec,
};
use flowcore::nets::{Activation, ConvSpec, MadeSpec, MlpSpec, NetSpec, ResMlpSpec};
use flowcore::testing::{HarnessSettings, Inputs, check_architecture};
use flowcore::transform::{ScaleFn, Spline, Transform};
use flowcore::{ArchitectureConfig, GlowConfig, LayerList, LayerSpec, RealNvpConfig};

fn mlp() -> NetSpec {
    NetSpec::Mlp(MlpSpec {
        hidden: vec![16, 16],
        activation: Activation::Tanh,
    })
}

fn conv() -> NetSpec {
    NetSpec::Conv(ConvSpec { hidden_channels: 8 })
}

fn affine(scale: ScaleFn) -> Transform {
    Transform::Affine { scale }
}

fn coupling(mask: Mask, transform: Transform, net: NetSpec) -> LayerSpec {
    LayerSpec::Coupling(CouplingSpec {
        mask,
        transform,
        net,
        cond_dim: 0,
    })
}

fn run(name: &str, layers: Vec<LayerSpec>, inputs: Inputs) {
    run_arch(
        name,
        ArchitectureConfig::Layers(LayerList { layers }),
        inputs,
    );
}

fn run_arch(name: &str, config: ArchitectureConfig, inputs: Inputs) {
    run_with(name, config, inputs, HarnessSettings::default());
}

fn run_with(name: &str, config: ArchitectureConfig, inputs: Inputs, settings: HarnessSettings) {
    let dir = std::env::temp_dir().join(format!("flowcore-harness-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = check_architecture(name, config, inputs, settings, &dir);
    eprintln!("{name}: {report:?}");
}

const TANH: ScaleFn = ScaleFn::Tanh { clamp: 2.0 };
const ATAN: ScaleFn = ScaleFn::Atan { clamp: 2.0 };

#[test]
fn affine_coupling_half_mask_odd_dim() {
    for flip in [false, true] {
        for scale in [TANH, ATAN, ScaleFn::Sigmoid] {
            run(
                &format!("affine {scale:?} half dim 3 flip {flip}"),
                vec![coupling(Mask::Half { dim: 3, flip }, affine(scale), mlp())],
                Inputs::Normal,
            );
        }
    }
}

#[test]
fn additive_coupling_half_mask() {
    run(
        "additive half dim 4",
        vec![coupling(
            Mask::Half {
                dim: 4,
                flip: false,
            },
            Transform::Additive,
            mlp(),
        )],
        Inputs::Normal,
    );
}

#[test]
fn coupling_with_residual_net_and_condition() {
    run(
        "affine res_mlp norm cond",
        vec![LayerSpec::Coupling(CouplingSpec {
            mask: Mask::Half { dim: 5, flip: true },
            transform: affine(TANH),
            net: NetSpec::ResMlp(ResMlpSpec {
                width: 16,
                blocks: 2,
                norm: true,
                activation: Activation::Gelu,
                batch_norm: false,
                cond_every_block: false,
            }),
            cond_dim: 2,
        })],
        Inputs::Normal,
    );
}

#[test]
fn channel_and_checkerboard_couplings() {
    let shape = ImageShape::new(3, 4, 4);
    for flip in [false, true] {
        run(
            &format!("affine channel 3x4x4 flip {flip}"),
            vec![coupling(
                Mask::Channel { shape, flip },
                affine(ScaleFn::Sigmoid),
                conv(),
            )],
            Inputs::Normal,
        );
        run(
            &format!("affine checkerboard 3x4x4 flip {flip}"),
            vec![coupling(
                Mask::Checkerboard { shape, flip },
                affine(TANH),
                conv(),
            )],
            Inputs::Normal,
        );
    }
    run(
        "additive checkerboard 2x2x4",
        vec![coupling(
            Mask::Checkerboard {
                shape: ImageShape::new(2, 2, 4),
                flip: false,
            },
            Transform::Additive,
            conv(),
        )],
        Inputs::Normal,
    );
    run(
        "conditional channel coupling",
        vec![LayerSpec::Coupling(CouplingSpec {
            mask: Mask::Channel {
                shape: ImageShape::new(4, 2, 2),
                flip: false,
            },
            transform: affine(ScaleFn::Sigmoid),
            net: conv(),
            cond_dim: 3,
        })],
        Inputs::Normal,
    );
}

#[test]
fn permutations() {
    for (kind, dim) in [(PermutationKind::Reverse, 3), (PermutationKind::Random, 7)] {
        run(
            &format!("permute {kind:?} {dim}"),
            vec![
                LayerSpec::Permute(PermuteSpec {
                    dim,
                    permutation: kind,
                    seed: 11,
                }),
                // A coupling after the permutation makes the check see which feature went where.
                coupling(Mask::Half { dim, flip: false }, affine(TANH), mlp()),
            ],
            Inputs::Normal,
        );
    }
}

#[test]
fn actnorm_dense_and_image() {
    run(
        "actnorm dense 3",
        vec![LayerSpec::ActNorm(ActNormSpec {
            channels: 3,
            spatial: 1,
        })],
        Inputs::Normal,
    );
    run(
        "actnorm 2 channels x 6 pixels",
        vec![LayerSpec::ActNorm(ActNormSpec {
            channels: 2,
            spatial: 6,
        })],
        Inputs::Normal,
    );
}

#[test]
fn invertible_1x1_conv() {
    // One channel has no off-diagonal entries, so L and U would get no gradient by design.
    for channels in [2, 4, 5, 12] {
        run(
            &format!("inv_conv {channels} channels"),
            vec![LayerSpec::InvConv(InvConvSpec {
                channels,
                spatial: 4,
                seed: 5,
            })],
            Inputs::Normal,
        );
    }
}

#[test]
fn lu_linear_alone_and_between_couplings() {
    // As with the 1x1 convolution, one feature would leave L and U without entries.
    for dim in [2, 3, 8] {
        run(
            &format!("lu_linear dim {dim}"),
            vec![LuLinearSpec { dim }.into()],
            Inputs::Normal,
        );
    }
    let half = |flip| Mask::Half { dim: 5, flip };
    run(
        "coupling, lu_linear, coupling",
        vec![
            coupling(half(false), affine(TANH), mlp()),
            LuLinearSpec { dim: 5 }.into(),
            coupling(half(true), affine(TANH), mlp()),
        ],
        Inputs::Normal,
    );
}

fn spline(bins: usize, bound: f64) -> Transform {
    Transform::RationalQuadratic(Spline {
        bins,
        bound,
        ..Spline::default()
    })
}

#[test]
fn spline_couplings() {
    for flip in [false, true] {
        run(
            &format!("spline half dim 3 flip {flip}"),
            vec![coupling(Mask::Half { dim: 3, flip }, spline(8, 3.0), mlp())],
            Inputs::Normal,
        );
    }
    // Most inputs beyond the bound: the identity tails, and the values on both sides of it.
    run(
        "spline bound 1, wide inputs",
        vec![coupling(
            Mask::Half {
                dim: 4,
                flip: false,
            },
            spline(5, 1.0),
            mlp(),
        )],
        Inputs::Wide,
    );
    run(
        "spline 128 bins",
        vec![coupling(
            Mask::Half { dim: 4, flip: true },
            spline(128, 3.0),
            mlp(),
        )],
        Inputs::Normal,
    );
    let shape = ImageShape::new(2, 4, 4);
    run(
        "spline checkerboard image",
        vec![coupling(
            Mask::Checkerboard { shape, flip: false },
            spline(6, 2.0),
            conv(),
        )],
        Inputs::Normal,
    );
}

#[test]
fn conditional_spline_coupling_with_residual_net() {
    run(
        "conditional spline res_mlp",
        vec![LayerSpec::Coupling(CouplingSpec {
            mask: Mask::Half { dim: 5, flip: true },
            transform: spline(8, 3.0),
            net: ResMlpSpec {
                width: 16,
                blocks: 2,
                norm: true,
                activation: Activation::Relu,
                batch_norm: false,
                cond_every_block: false,
            }
            .into(),
            cond_dim: 3,
        })],
        Inputs::Normal,
    );
}

#[test]
fn squeeze_then_coupling() {
    let shape = ImageShape::new(2, 4, 6);
    run(
        "squeeze 2x4x6",
        vec![
            LayerSpec::Squeeze(SqueezeSpec { shape }),
            coupling(
                Mask::Channel {
                    shape: ImageShape::new(8, 2, 3),
                    flip: false,
                },
                affine(ScaleFn::Sigmoid),
                conv(),
            ),
        ],
        Inputs::Normal,
    );
}

#[test]
fn logit_preprocessing() {
    for alpha in [0.0, 0.05] {
        run(
            &format!("logit alpha {alpha}"),
            vec![LayerSpec::Logit(LogitSpec { dim: 4, alpha })],
            Inputs::UnitInterval,
        );
    }
}

#[test]
fn factor_out_chain_and_invert() {
    let inner = vec![coupling(
        Mask::Half {
            dim: 3,
            flip: false,
        },
        affine(TANH),
        mlp(),
    )];
    run(
        "factor_out 5 -> 3",
        vec![
            coupling(Mask::Half { dim: 5, flip: true }, affine(TANH), mlp()),
            LayerSpec::FactorOut(FactorOutSpec {
                dim: 5,
                active: 3,
                layers: inner.clone(),
            }),
        ],
        Inputs::Normal,
    );
    run(
        "nested chain and invert",
        vec![
            LayerSpec::Chain(ChainSpec {
                layers: vec![
                    LayerSpec::ActNorm(ActNormSpec {
                        channels: 3,
                        spatial: 1,
                    }),
                    inner[0].clone(),
                ],
            }),
            LayerSpec::Invert(InvertSpec {
                layers: vec![
                    coupling(Mask::Half { dim: 3, flip: true }, affine(ATAN), mlp()),
                    LayerSpec::Permute(PermuteSpec {
                        dim: 3,
                        permutation: PermutationKind::Random,
                        seed: 2,
                    }),
                ],
            }),
        ],
        Inputs::Normal,
    );
}

#[test]
fn real_nvp_dense_architectures() {
    let mut odd = RealNvpConfig::new(3);
    odd.num_layers = 4;
    odd.hidden_units = vec![16, 16];
    run_arch(
        "real_nvp_dense 3-D",
        ArchitectureConfig::RealNvpDense(odd.clone()),
        Inputs::Normal,
    );

    let mut rich = odd.clone();
    rich.dim = 6;
    rich.net = DenseNet::ResMlp;
    rich.layer_norm = true;
    rich.actnorm = true;
    rich.permutation = Mixing::Random;
    rich.cond_dim = 2;
    rich.hidden_per_layer = Some(vec![vec![16, 16], vec![8, 8, 8], vec![16], vec![12, 12]]);
    run_arch(
        "real_nvp_dense resmlp actnorm random cond",
        ArchitectureConfig::RealNvpDense(rich),
        Inputs::Normal,
    );

    let mut nice = odd;
    nice.dim = 4;
    nice.transform = Transform::Additive;
    nice.permutation = Mixing::Alternate;
    run_arch(
        "real_nvp_dense additive alternate",
        ArchitectureConfig::RealNvpDense(nice),
        Inputs::Normal,
    );
}

#[test]
fn glow_architectures() {
    let mut glow = GlowConfig::new(3, 8, 8);
    glow.levels = 3;
    glow.steps_per_level = 2;
    glow.hidden_channels = 8;
    let deep = HarnessSettings {
        perturbation: 0.05,
        ..HarnessSettings::default()
    };
    run_with(
        "glow 3x8x8",
        ArchitectureConfig::Glow(glow),
        Inputs::Normal,
        deep,
    );

    let mut small = GlowConfig::new(1, 8, 8);
    small.levels = 2;
    small.steps_per_level = 2;
    small.hidden_channels = 4;
    small.mask = ImageMask::Checkerboard;
    small.logit_alpha = Some(0.05);
    run_with(
        "glow 1x8x8 logit checkerboard",
        ArchitectureConfig::Glow(small),
        Inputs::UnitInterval,
        deep,
    );
}

fn made(hidden: &[usize]) -> MadeSpec {
    MadeSpec {
        hidden: hidden.to_vec(),
        activation: Activation::Tanh,
    }
}

#[test]
fn autoregressive_layers_affine_spline_conditional_and_inverted() {
    let ar = |dim, transform, cond_dim| -> LayerSpec {
        AutoregressiveSpec {
            dim,
            transform,
            made: made(&[16, 16]),
            cond_dim,
        }
        .into()
    };
    run(
        "maf affine dim 4",
        vec![ar(4, affine(TANH), 0)],
        Inputs::Normal,
    );
    run(
        "maf spline dim 3",
        vec![ar(3, spline(6, 3.0), 0)],
        Inputs::Normal,
    );
    run(
        "maf spline wide inputs",
        vec![ar(3, spline(4, 1.5), 0)],
        Inputs::Wide,
    );
    run(
        "maf affine conditional dim 3",
        vec![ar(3, affine(ATAN), 2)],
        Inputs::Normal,
    );
    // One feature: its transform depends on the condition alone.
    run(
        "maf conditional dim 1",
        vec![ar(1, affine(TANH), 2)],
        Inputs::Normal,
    );
    run(
        "iaf: an inverted autoregressive layer",
        vec![
            InvertSpec {
                layers: vec![ar(4, affine(TANH), 0)],
            }
            .into(),
        ],
        Inputs::Normal,
    );
}

#[test]
fn spline_and_autoregressive_architectures() {
    let nsf = |dim, net, mixing, cond_dim| NsfConfig {
        dim,
        num_layers: 3,
        hidden_units: vec![16, 16],
        net,
        layer_norm: false,
        batch_norm: false,
        cond_every_block: false,
        activation: Activation::Relu,
        spline: Spline::default(),
        mixing,
        seed: 1,
        cond_dim,
    };
    run_arch(
        "nsf lu_linear",
        nsf(3, DenseNet::Mlp, NsfMixing::LuLinear, 0).into(),
        Inputs::Normal,
    );
    run_arch(
        "nsf res_mlp random conditional",
        nsf(4, DenseNet::ResMlp, NsfMixing::Random, 2).into(),
        Inputs::Normal,
    );
    // FlashSim's conditioners: residual blocks with batch normalisation, the condition in each.
    let mut flashsim = nsf(5, DenseNet::ResMlp, NsfMixing::LuLinear, 3);
    flashsim.hidden_units = vec![16, 16, 16];
    flashsim.batch_norm = true;
    flashsim.cond_every_block = true;
    // Normalising by the statistics of 8 samples makes these conditioners steep: smaller
    // random weights, as for deep image flows.
    run_with(
        "nsf residual batch-norm conditioners, condition in every block",
        flashsim.into(),
        Inputs::Normal,
        HarnessSettings {
            perturbation: 0.1,
            ..HarnessSettings::default()
        },
    );
    let maf = |dim, transform, inverse, cond_dim| MafConfig {
        dim,
        num_layers: 3,
        hidden_units: vec![16, 16],
        activation: Activation::Relu,
        transform,
        permutation: PermutationKind::Random,
        inverse,
        seed: 2,
        cond_dim,
    };
    run_arch("maf", maf(3, None, false, 0).into(), Inputs::Normal);
    run_arch(
        "maf conditional",
        maf(2, None, false, 2).into(),
        Inputs::Normal,
    );
    run_arch("iaf", maf(3, None, true, 0).into(), Inputs::Normal);
    run_arch(
        "nsf_autoregressive",
        NsfAutoregressiveConfig(maf(3, None, false, 1)).into(),
        Inputs::Normal,
    );
    run_arch(
        "maf with a spline given",
        maf(2, Some(spline(5, 2.0)), false, 0).into(),
        Inputs::Normal,
    );
}
