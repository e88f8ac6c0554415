//! Every layer and both architectures through the one shared harness
//! (`flowcore::testing::check_architecture`). A new layer adds its cases to `layers.rs`, a new
//! architecture kind to `architectures.rs`.

use flowcore::arch::{
    DenseNet, FfjordConfig, ImageMask, LatticeFlowConfig, MafConfig, Mixing,
    NsfAutoregressiveConfig, NsfConfig, NsfMixing, OdeNetwork,
};
use flowcore::layers::{
    ActNormSpec, AutoregressiveSpec, ChainSpec, CouplingSpec, FactorOutSpec, FfjordSpec,
    ImageShape, InvConvSpec, InvertSpec, LogitSpec, LuLinearSpec, Mask, PermutationKind,
    PermuteSpec, SiteSplineSpec, SqueezeSpec, TraceEstimator,
};
use flowcore::nets::{
    Activation, ConvSpec, MadeSpec, MlpSpec, NetSpec, OdeActivation, PeriodicConvSpec, ResMlpSpec,
    TimeInput,
};
use flowcore::ode::{OdeGradient, OdeSolver};
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
        z2: false,
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

fn spline(bins: usize, bound: f64) -> Transform {
    Transform::RationalQuadratic(Spline {
        bins,
        bound,
        ..Spline::default()
    })
}

fn made(hidden: &[usize]) -> MadeSpec {
    MadeSpec {
        hidden: hidden.to_vec(),
        activation: Activation::Tanh,
    }
}

mod architectures;
mod layers;
