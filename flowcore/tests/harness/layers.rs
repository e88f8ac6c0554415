//! Each layer type alone and in small chains, with its edge cases.

use super::*;

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
fn coupling_on_listed_features() {
    // Scattered features, an unsorted list, a condition, and one feature left to condition.
    for (transformed, cond_dim) in [(vec![3, 0], 0), (vec![1, 4, 2], 2), (vec![0, 1, 2, 3], 0)] {
        run(
            &format!("affine features {transformed:?} cond {cond_dim}"),
            vec![LayerSpec::Coupling(CouplingSpec {
                mask: Mask::Features {
                    dim: 5,
                    transformed: transformed.clone(),
                },
                transform: affine(ATAN),
                net: mlp(),
                cond_dim,
                z2: false,
            })],
            Inputs::Normal,
        );
    }
}

#[test]
fn coupling_on_listed_features_rejects_bad_lists() {
    for (transformed, needle) in [
        (vec![], "at least one"),
        (vec![0, 1, 2], "at least one"),
        (vec![1, 1], "twice"),
        (vec![3], "transforms feature 3"),
    ] {
        let spec = LayerSpec::Coupling(CouplingSpec {
            mask: Mask::Features {
                dim: 3,
                transformed: transformed.clone(),
            },
            transform: affine(ATAN),
            net: mlp(),
            cond_dim: 0,
            z2: false,
        });
        let err = spec.build(&Default::default()).unwrap_err().to_string();
        assert!(err.contains(needle), "{transformed:?}: {err}");
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
            z2: false,
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
            z2: false,
        })],
        Inputs::Normal,
    );
}

#[test]
fn permutations() {
    for (kind, dim) in [
        (PermutationKind::Reverse, 3),
        (PermutationKind::Random, 7),
        (PermutationKind::Rotate(2), 5),
    ] {
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
            z2: false,
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

fn site_spline(dim: usize, bins: usize, symmetric: bool, shared: bool) -> LayerSpec {
    LayerSpec::SiteSpline(SiteSplineSpec {
        dim,
        bins,
        symmetric,
        shared,
    })
}

#[test]
fn site_spline_shared_per_site_symmetric() {
    for (bins, symmetric, shared) in [(8, true, true), (2, true, false), (5, false, true)] {
        run(
            &format!("site_spline bins {bins} symmetric {symmetric} shared {shared}"),
            vec![site_spline(3, bins, symmetric, shared)],
            Inputs::Normal,
        );
    }
}

#[test]
fn site_spline_extreme_parameters() {
    // Raw parameters of standard deviation 2: bins and knot derivatives near their minimum and
    // far above 1, values falling on steep and flat bins alike. The round trip is as good as
    // f32 allows there: the sigmoid of the latent rounds by 6e-8, which a flat bin (slope near
    // 1e-3) magnifies a thousandfold on the way back, and the inverse's log-det with it; the
    // numerical-Jacobian check keeps its tolerance.
    run_with(
        "site_spline extreme parameters",
        ArchitectureConfig::Layers(LayerList {
            layers: vec![site_spline(4, 8, false, false)],
        }),
        Inputs::Normal,
        HarnessSettings {
            perturbation: 2.0,
            round_trip: 5e-3,
            cancel: 1e-3,
            ..HarnessSettings::default()
        },
    );
}

fn periodic(hidden: &[usize], kernel_size: usize, output_bias: bool) -> NetSpec {
    NetSpec::PeriodicConv(PeriodicConvSpec {
        hidden_channels: hidden.to_vec(),
        kernel_size,
        activation: Activation::Tanh,
        output_bias,
    })
}

#[test]
fn periodic_conv_checkerboard_couplings_1d_2d_and_z2() {
    let square = ImageShape::new(1, 4, 4);
    let line = ImageShape::new(1, 1, 6);
    let cases = [
        ("affine 4x4 kernel 3", square, affine(TANH), 3, false),
        (
            "affine 4x4 kernel 5 (wraps 2 sites)",
            square,
            affine(TANH),
            5,
            false,
        ),
        ("additive line of 6", line, Transform::Additive, 3, false),
        ("spline 4x4", square, spline(6, 3.0), 3, false),
        ("z2 affine 4x4", square, affine(TANH), 3, true),
        ("z2 additive line of 6", line, Transform::Additive, 3, true),
    ];
    for (name, shape, transform, kernel, z2) in cases {
        for flip in [false, true] {
            run(
                &format!("periodic {name} flip {flip}"),
                vec![LayerSpec::Coupling(CouplingSpec {
                    mask: Mask::Checkerboard { shape, flip },
                    transform,
                    // A z2 coupling's shift is the odd part of the network, in which an
                    // output bias cancels: it would be a parameter without a gradient.
                    net: periodic(&[6, 6], kernel, !z2),
                    cond_dim: 0,
                    z2,
                })],
                Inputs::Normal,
            );
        }
    }
}

fn ffjord(dim: usize, cond_dim: usize) -> FfjordSpec {
    FfjordSpec {
        hidden: vec![16, 16],
        cond_dim,
        ..FfjordSpec::new(dim)
    }
}

/// Round trips within 10 x the solver's tolerance (1e-5); the log-det of the whole solve
/// against its numerical Jacobian.
#[test]
fn ffjord_blocks_exact_trace_both_time_inputs_conditional_and_rk4() {
    let rk4 = FfjordSpec {
        solver: OdeSolver::Rk4 { steps: 16 },
        ..ffjord(3, 0)
    };
    let concat_softplus = FfjordSpec {
        time: TimeInput::Concat,
        activation: OdeActivation::Softplus,
        ..ffjord(2, 1)
    };
    // A condition of several columns goes through an embedding.
    let embedded = ffjord(3, 4);
    // Trained with Hutchinson's estimator: the harness's densities use the exact trace.
    let hutchinson = FfjordSpec {
        trace: TraceEstimator::Hutchinson,
        ..ffjord(2, 0)
    };
    // RNODE's weights change nothing outside a training loss.
    let rnode = FfjordSpec {
        kinetic_weight: 0.01,
        jacobian_weight: 0.01,
        ..ffjord(2, 0)
    };
    // Gradients by the adjoint method, here with Hutchinson's noise and an embedded condition:
    // every parameter still gets one (core/adjoint.rs compares their values).
    let adjoint = FfjordSpec {
        gradient: OdeGradient::Adjoint,
        trace: TraceEstimator::Hutchinson,
        ..ffjord(3, 2)
    };
    for (name, spec) in [
        ("ffjord dopri5 dim 2", ffjord(2, 0)),
        ("ffjord adjoint hutchinson cond 2", adjoint),
        ("ffjord rnode weights", rnode),
        ("ffjord rk4 dim 3", rk4),
        ("ffjord concat softplus cond 1", concat_softplus),
        ("ffjord embedded cond 4", embedded),
        ("ffjord hutchinson", hutchinson),
    ] {
        run(name, vec![spec.into()], Inputs::Normal);
    }
}

#[test]
fn ffjord_with_strong_dynamics_and_between_other_layers() {
    // Large random weights: stiffer dynamics, many more adaptive steps. Here the forward solve
    // and the decode (no trace column) take different steps and their global errors add: at a
    // tolerance of 1e-5 the decode was off by 2.8e-5 to 2.7e-4 over seeds 0-5, at 1e-6 by
    // 3.3e-6 to 2.3e-5, with libm's tanh as with ours. So this case runs at 1e-6 and allows 50x.
    let tight = OdeSolver::Dopri5 {
        rtol: 1e-6,
        atol: 1e-6,
        max_steps: 4000,
    };
    run_with(
        "ffjord strong dynamics",
        ArchitectureConfig::Layers(LayerList {
            layers: vec![
                FfjordSpec {
                    solver: tight,
                    ..ffjord(2, 0)
                }
                .into(),
            ],
        }),
        Inputs::Wide,
        HarnessSettings {
            perturbation: 0.6,
            round_trip: 5e-5,
            ..HarnessSettings::default()
        },
    );
    run(
        "actnorm ffjord coupling",
        vec![
            ActNormSpec {
                channels: 4,
                spatial: 1,
            }
            .into(),
            ffjord(4, 0).into(),
            coupling(
                Mask::Half {
                    dim: 4,
                    flip: false,
                },
                affine(TANH),
                mlp(),
            ),
        ],
        Inputs::Normal,
    );
}

/// The convolutional dynamics on small images: alone, conditional with concat time and
/// softplus, and after a squeeze as in the image configs. Densities use the exact trace.
#[test]
fn ffjord_conv_blocks_on_small_images() {
    let conv = |shape: ImageShape, cond_dim: usize| FfjordSpec {
        hidden: vec![6, 6],
        image: Some(shape),
        ..ffjord(shape.numel(), cond_dim)
    };
    let concat_softplus = FfjordSpec {
        time: TimeInput::Concat,
        activation: OdeActivation::Softplus,
        ..conv(ImageShape::new(1, 2, 3), 1)
    };
    run(
        "ffjord conv 2x3x3",
        vec![conv(ImageShape::new(2, 3, 3), 0).into()],
        Inputs::Normal,
    );
    run(
        "ffjord conv concat softplus cond 1",
        vec![concat_softplus.into()],
        Inputs::Normal,
    );
    run(
        "squeeze ffjord conv",
        vec![
            SqueezeSpec {
                shape: ImageShape::new(1, 4, 4),
            }
            .into(),
            conv(ImageShape::new(4, 2, 2), 0).into(),
        ],
        Inputs::Normal,
    );
}
