//! The configurations the bench times, and their FLOPs per sample.

use flowcore::arch::{DenseNet, MafConfig, Mixing, NsfConfig, NsfMixing};
use flowcore::layers::PermutationKind;
use flowcore::nets::Activation;
use flowcore::transform::Spline;
use flowcore::{ArchitectureConfig, GlowConfig, RealNvpConfig};

/// The FlashSim-shaped conditional neural spline flow of the bench.
pub(super) fn nsf_flashsim() -> ArchitectureConfig {
    NsfConfig {
        dim: 17,
        num_layers: 6,
        hidden_units: vec![128, 128],
        net: DenseNet::Mlp,
        layer_norm: false,
        batch_norm: false,
        cond_every_block: false,
        activation: Activation::Relu,
        spline: Spline {
            bins: 16,
            ..Spline::default()
        },
        mixing: NsfMixing::Reverse,
        seed: 0,
        cond_dim: 14,
    }
    .into()
}

/// The FEDHEX-shaped conditional masked autoregressive flow of the bench.
pub(super) fn maf_fedhex() -> ArchitectureConfig {
    MafConfig {
        dim: 2,
        num_layers: 10,
        hidden_units: vec![128, 128],
        activation: Activation::Relu,
        transform: None,
        permutation: PermutationKind::Reverse,
        inverse: false,
        seed: 0,
        cond_dim: 2,
    }
    .into()
}

/// Multiply-adds (times 2) of a dense network of these widths over `batch` rows.
pub(super) fn mlp_flops(widths: &[usize], batch: usize) -> f64 {
    2.0 * (widths.windows(2).map(|w| w[0] * w[1]).sum::<usize>() * batch) as f64
}

pub(super) fn dense_flops(dim: usize, layers: usize, hidden: &[usize], batch: usize) -> f64 {
    let a = dim / 2;
    let mut widths = vec![a];
    widths.extend_from_slice(hidden);
    widths.push(2 * (dim - a));
    let per_coupling: usize = widths.windows(2).map(|w| w[0] * w[1]).sum();
    2.0 * (per_coupling * layers * batch) as f64
}

pub(super) fn glow_flops(
    c: usize,
    h: usize,
    w: usize,
    levels: usize,
    steps: usize,
    hidden: usize,
) -> f64 {
    let (mut c, mut h, mut w) = (c, h, w);
    let mut total = 0usize;
    for level in 0..levels {
        c *= 4;
        h /= 2;
        w /= 2;
        let half = c / 2;
        let coupling = 9 * half * hidden + hidden * hidden + 9 * hidden * 2 * (c - half);
        total += steps * h * w * (coupling + c * c);
        if level + 1 < levels {
            c /= 2;
        }
    }
    2.0 * total as f64
}

pub(super) fn real_nvp(dim: usize, layers: usize, hidden: Vec<usize>) -> ArchitectureConfig {
    ArchitectureConfig::RealNvpDense(RealNvpConfig {
        num_layers: layers,
        hidden_units: hidden,
        permutation: Mixing::Reverse,
        ..RealNvpConfig::new(dim)
    })
}

pub(super) fn glow(
    c: usize,
    hw: usize,
    levels: usize,
    steps: usize,
    hidden: usize,
) -> ArchitectureConfig {
    let mut g = GlowConfig::new(c, hw, hw);
    g.levels = levels;
    g.steps_per_level = steps;
    g.hidden_channels = hidden;
    g.logit_alpha = Some(0.05);
    ArchitectureConfig::Glow(g)
}

/// The flow of Albergo et al.'s tutorial on an 8 x 8 periodic lattice: 8 affine checkerboard
/// couplings of 3x3 periodic convolutions 1 -> 8 -> 8 -> 2 channels, LeakyReLU, no site spline
/// and no Z2 symmetrisation (as `benches/reference/lattice_bench.py`).
pub(super) fn lattice_8x8() -> ArchitectureConfig {
    use flowcore::arch::LatticeFlowConfig;
    use flowcore::nets::Activation;
    use flowcore::transform::{ScaleFn, Transform};
    ArchitectureConfig::Lattice(LatticeFlowConfig {
        lattice: vec![8, 8],
        couplings: 8,
        transform: Transform::Affine {
            scale: ScaleFn::Tanh { clamp: 3.0 },
        },
        hidden_channels: vec![8, 8],
        kernel_size: 3,
        activation: Activation::LeakyRelu,
        z2: false,
        site_spline: None,
    })
}

/// The phi^4 action of the lattice cases: kappa 2, m_sq -8, lambda 8 on 8 x 8 (the tutorial's
/// M2 = -4, lam = 8).
pub(super) fn phi4_8x8() -> flowcore::lattice::ReverseKl {
    let couplings = flowcore::lattice::Phi4Couplings {
        kappa: 2.0,
        m_sq: -8.0,
        lambda: 8.0,
    };
    flowcore::lattice::ReverseKl::new(
        flowcore::lattice::Phi4::new(&[8, 8], couplings).expect("a valid theory"),
    )
}

/// Multiply-adds (x2) of the lattice flow's convolutions per sample: 8 couplings of 3x3
/// convolutions 1 -> 8 -> 8 -> 2 channels at 64 sites.
pub(super) fn lattice_flops() -> f64 {
    2.0 * 8.0 * 64.0 * 9.0 * (8.0 + 64.0 + 16.0)
}

/// FFJORD's toy model, as the `ffjord-moons` reference builds it: one block, a 64-64-64
/// concat-squash network with tanh, Dormand-Prince at rtol = atol = 1e-5, the exact trace.
pub(super) fn ffjord_moons() -> ArchitectureConfig {
    flowcore::arch::FfjordConfig {
        dim: 2,
        ..Default::default()
    }
    .into()
}

/// Application 2's FFJORD at the size of `apps/configs/app2-ffjord.toml`, on 28x28x1 images.
pub(super) fn ffjord_conv28() -> ArchitectureConfig {
    use flowcore::arch::OdeNetwork;
    use flowcore::layers::TraceEstimator;
    flowcore::arch::FfjordConfig {
        dim: 28 * 28,
        network: OdeNetwork::Conv,
        channels: 1,
        height: 28,
        width: 28,
        logit_alpha: Some(0.05),
        squeezes: 2,
        hidden_units: vec![64, 64],
        trace: TraceEstimator::Hutchinson,
        eval_probes: 4,
        solver: flowcore::ode::OdeSolver::Rk4 { steps: 8 },
        ..Default::default()
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_counts_of_small_cases_by_hand() {
        // dim 2: MLP 1 -> 4 -> 2 per coupling: 1*4 + 4*2 = 12 multiply-adds per sample.
        assert_eq!(dense_flops(2, 1, &[4], 1), 24.0);
        // One level, one step, c=1, 2x2 image: after squeeze c=4 at 1x1, half 2, hidden 1:
        // 9*2*1 + 1*1 + 9*1*4 = 55, plus the 1x1 conv 16: 71 multiply-adds.
        assert_eq!(glow_flops(1, 2, 2, 1, 1, 1), 142.0);
    }
}
