//! The hot kernels of training and scoring, one at a time (criterion): `cargo bench -p flowcore`.
//! Shapes are those of the bench table's Glow 32x32x3 (level 1: 12 channels of 16x16 after the
//! squeeze, batch 16) and of its dense RealNVP configurations; whole training steps are in the
//! `bench` binary (README, Benchmarks).

use std::hint::black_box;

use burn::prelude::*;
use burn::tensor::{Distribution, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowcore::layers::{ActNormSpec, CouplingSpec, ImageShape, InvConvSpec, Mask, SqueezeSpec};
use flowcore::nets::{Activation, ConvSpec, MlpSpec, NetSpec};
use flowcore::transform::{ScaleFn, Transform};
use flowcore::{Bijector, Layer, LayerSpec};

const BATCH: usize = 16;
const GLOW_LEVEL1: (usize, usize, usize) = (12, 16, 16);

fn glow_shape() -> ImageShape {
    let (c, h, w) = GLOW_LEVEL1;
    ImageShape::new(c, h, w)
}

fn input(rows: usize, dim: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::random([rows, dim], Distribution::Normal(0.0, 1.0), device)
}

/// Forward and inverse on the inference device, and forward then backward of
/// `sum(z) + sum(log det)` on the autodiff device: what a scoring pass and a training step spend in the layer.
fn forward_and_backward(c: &mut Criterion, group: &str, spec: &LayerSpec, rows: usize) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(rows as u64));
    let device = Device::flex();
    let layer: Layer = spec.build(&device).expect("the spec builds");
    let dim = layer.dim();
    let x = input(rows, dim, &device);
    g.bench_function(BenchmarkId::new("forward", rows), |b| {
        b.iter(|| {
            let (z, ld) = layer.forward(black_box(x.clone()), None);
            black_box((z.sum().into_scalar::<f32>(), ld.sum().into_scalar::<f32>()))
        })
    });
    g.bench_function(BenchmarkId::new("inverse", rows), |b| {
        b.iter(|| {
            let (z, ld) = layer.inverse(black_box(x.clone()), None);
            black_box((z.sum().into_scalar::<f32>(), ld.sum().into_scalar::<f32>()))
        })
    });
    let ad = Device::flex().autodiff();
    let layer: Layer = spec.build(&ad).expect("the spec builds");
    // The input's gradient too: in a chain, the layers below need it.
    let x = input(rows, dim, &ad).require_grad();
    g.bench_function(BenchmarkId::new("forward_backward", rows), |b| {
        b.iter(|| {
            let (z, ld) = layer.forward(black_box(x.clone()), None);
            let loss = z.sum() + ld.sum();
            black_box(loss.backward())
        })
    });
    g.finish();
}

fn couplings(c: &mut Criterion) {
    forward_and_backward(
        c,
        "coupling/glow_affine_conv64_12x16x16",
        &LayerSpec::Coupling(CouplingSpec {
            mask: Mask::Channel {
                shape: glow_shape(),
                flip: false,
            },
            transform: Transform::Affine {
                scale: ScaleFn::Sigmoid,
            },
            net: NetSpec::Conv(ConvSpec {
                hidden_channels: 64,
            }),
            cond_dim: 0,
            z2: false,
        }),
        BATCH,
    );
    for (name, dim, hidden, rows) in [
        ("coupling/dense_2d_mlp128", 2, 128, 1024),
        ("coupling/dense_2d_mlp512", 2, 512, 128),
    ] {
        forward_and_backward(
            c,
            name,
            &LayerSpec::Coupling(CouplingSpec {
                mask: Mask::Half { dim, flip: false },
                transform: Transform::Affine {
                    scale: ScaleFn::Tanh { clamp: 2.0 },
                },
                net: NetSpec::Mlp(MlpSpec {
                    hidden: vec![hidden, hidden],
                    activation: Activation::Relu,
                }),
                cond_dim: 0,
                z2: false,
            }),
            rows,
        );
    }
}

fn glow_step_layers(c: &mut Criterion) {
    let (channels, h, w) = GLOW_LEVEL1;
    forward_and_backward(
        c,
        "inv_conv_1x1/12x16x16",
        &LayerSpec::InvConv(InvConvSpec {
            channels,
            spatial: h * w,
            seed: 0,
        }),
        BATCH,
    );
    forward_and_backward(
        c,
        "actnorm/12x16x16",
        &LayerSpec::ActNorm(ActNormSpec {
            channels,
            spatial: h * w,
        }),
        BATCH,
    );
    forward_and_backward(
        c,
        "squeeze/3x32x32",
        &LayerSpec::Squeeze(SqueezeSpec {
            shape: ImageShape::new(3, 32, 32),
        }),
        BATCH,
    );
}

fn mmd(c: &mut Criterion) {
    let mut g = c.benchmark_group("mmd_imq");
    for (rows, dim) in [(256, 8), (512, 29)] {
        g.throughput(Throughput::Elements(rows as u64));
        let widths = [0.2, 1.0, 4.0];
        let device = Device::flex();
        let (a, b) = (input(rows, dim, &device), input(rows, dim, &device));
        g.bench_function(
            BenchmarkId::new("forward", format!("{rows}x{dim}")),
            |bench| {
                bench.iter(|| {
                    let m = flowcore::inn::mmd_imq(black_box(a.clone()), b.clone(), &widths);
                    black_box(m.into_scalar::<f32>())
                })
            },
        );
        let ad = Device::flex().autodiff();
        let (a, b) = (input(rows, dim, &ad).require_grad(), input(rows, dim, &ad));
        g.bench_function(
            BenchmarkId::new("forward_backward", format!("{rows}x{dim}")),
            |bench| {
                bench.iter(|| {
                    let m = flowcore::inn::mmd_imq(black_box(a.clone()), b.clone(), &widths);
                    black_box(m.backward())
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, couplings, glow_step_layers, mmd);
criterion_main!(benches);
