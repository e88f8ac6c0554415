//! Each architecture kind, as its config builds it.

use super::*;

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

    // A learnt linear map between the couplings, as application 7's INN uses.
    let mut mixed = odd.clone();
    mixed.dim = 5;
    mixed.permutation = Mixing::LuLinear;
    run_arch(
        "real_nvp_dense lu_linear",
        ArchitectureConfig::RealNvpDense(mixed),
        Inputs::Normal,
    );

    // An INN's two sides, [x | eps] -> [y | z], with a first block of one feature and of three.
    for split_at in [1, 3] {
        let mut blocks = odd.clone();
        blocks.dim = 7;
        blocks.num_layers = 5;
        blocks.permutation = Mixing::Blocks;
        blocks.split_at = split_at;
        blocks.transform = affine(ATAN);
        run_arch(
            &format!("real_nvp_dense blocks split at {split_at}"),
            ArchitectureConfig::RealNvpDense(blocks),
            Inputs::Normal,
        );
    }

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

#[test]
fn lattice_architectures() {
    let base = LatticeFlowConfig {
        lattice: vec![4, 4],
        couplings: 4,
        transform: affine(TANH),
        hidden_channels: vec![6, 6],
        kernel_size: 3,
        activation: Activation::Tanh,
        z2: false,
        site_spline: None,
    };
    let spline_site = |symmetric| SiteSplineSpec {
        dim: 0,
        bins: 8,
        symmetric,
        shared: true,
    };
    let cases = [
        ("lattice 4x4 affine", base.clone()),
        (
            "lattice 4x4 z2 with a symmetric site spline",
            LatticeFlowConfig {
                z2: true,
                site_spline: Some(spline_site(true)),
                ..base.clone()
            },
        ),
        (
            "lattice 1-D of 6, spline couplings",
            LatticeFlowConfig {
                lattice: vec![6],
                transform: spline(6, 3.0),
                ..base.clone()
            },
        ),
        (
            "lattice single site",
            LatticeFlowConfig {
                lattice: vec![1],
                couplings: 0,
                site_spline: Some(spline_site(true)),
                ..base.clone()
            },
        ),
        (
            "lattice 2x3x2, site spline only",
            LatticeFlowConfig {
                lattice: vec![2, 3, 2],
                couplings: 0,
                site_spline: Some(spline_site(false)),
                ..base
            },
        ),
    ];
    for (name, config) in cases {
        run_arch(name, ArchitectureConfig::Lattice(config), Inputs::Normal);
    }
}

#[test]
fn ffjord_architectures() {
    let two_blocks = FfjordConfig {
        dim: 3,
        num_blocks: 2,
        hidden_units: vec![16, 16],
        actnorm: true,
        ..FfjordConfig::default()
    };
    run_arch("ffjord 2 blocks actnorm", two_blocks.into(), Inputs::Normal);
    let conditional = FfjordConfig {
        dim: 2,
        hidden_units: vec![16],
        cond_dim: 2,
        solver: OdeSolver::Rk4 { steps: 12 },
        ..FfjordConfig::default()
    };
    run_arch("ffjord conditional rk4", conditional.into(), Inputs::Normal);
    // The image config: logit, one squeeze, ActNorm and a convolutional block.
    let image = FfjordConfig {
        dim: 16,
        channels: 1,
        height: 4,
        width: 4,
        network: OdeNetwork::Conv,
        logit_alpha: Some(0.05),
        squeezes: 1,
        actnorm: true,
        hidden_units: vec![8],
        ..FfjordConfig::default()
    };
    run_arch("ffjord conv image", image.into(), Inputs::UnitInterval);
}
