//! The one-pass Adam against burn's, to the bit.

use super::*;
use burn::tensor::Distribution;

fn bits<const D: usize>(t: &Tensor<D>) -> Vec<u32> {
    let data = t.to_data().convert::<f32>();
    data.as_slice::<f32>()
        .expect("f32 values")
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// Runs `ours` and `burns` side by side for a few steps from one start, with gradients of
/// very different scales, and asserts the parameters and moments agree to the bit.
fn same_steps<O: Optimizer, R: Optimizer>(
    ours: &O,
    burns: &R,
    shape: [usize; 2],
    moments: impl Fn(&O::State<2>) -> [Tensor<2>; 2],
    burn_moments: impl Fn(&R::State<2>) -> [Tensor<2>; 2],
) {
    let device = Device::flex();
    let start = Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let (mut p, mut q) = (start.clone(), start);
    let (mut ps, mut qs) = (None, None);
    for (step, scale) in [1.0, 1e-3, 30.0, 1e-6, 0.2].into_iter().enumerate() {
        let grad = Tensor::<2>::random(shape, Distribution::Normal(0.0, scale), &device);
        let lr = 1e-3 * (step + 1) as f64;
        (p, ps) = ours.step(lr, p, grad.clone(), ps);
        (q, qs) = burns.step(lr, q, grad, qs);
        assert_eq!(bits(&p), bits(&q), "parameters after step {}", step + 1);
        let (a, b) = (ps.as_ref().unwrap(), qs.as_ref().unwrap());
        for (x, y) in moments(a).iter().zip(burn_moments(b).iter()) {
            assert_eq!(bits(x), bits(y), "moments after step {}", step + 1);
        }
    }
}

fn adam_moments(s: &AdamState<2>) -> [Tensor<2>; 2] {
    [s.momentum.moment_1.clone(), s.momentum.moment_2.clone()]
}

fn adam_w_moments(s: &AdamWState<2>) -> [Tensor<2>; 2] {
    [s.momentum.moment_1.clone(), s.momentum.moment_2.clone()]
}

#[test]
fn adam_updates_equal_burns_to_the_bit_small_and_split() {
    let burns = AdamConfig::new().with_epsilon(1e-8).build();
    for shape in [[3, 5], [256, 300]] {
        same_steps(&Adam::new(1e-8), &burns, shape, adam_moments, adam_moments);
    }
}

#[test]
fn adam_w_updates_equal_burns_to_the_bit_with_and_without_decay() {
    for decay in [0.0, 1e-2] {
        let burns = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(decay)
            .build();
        for shape in [[7, 2], [300, 256]] {
            let ours = AdamW::new(1e-8, decay);
            same_steps(&ours, &burns, shape, adam_w_moments, adam_w_moments);
        }
    }
}

#[test]
fn a_shared_parameter_is_left_as_it_was() {
    let device = Device::flex();
    let p = Tensor::<2>::random([200, 200], Distribution::Normal(0.0, 1.0), &device);
    let kept = p.clone();
    let before = bits(&kept);
    let grad = Tensor::<2>::ones([200, 200], &device);
    let (updated, state) = Adam::new(1e-8).step(0.1, p, grad.clone(), None);
    let (updated, _) = Adam::new(1e-8).step(0.1, updated, grad, state);
    assert_eq!(bits(&kept), before, "the other holder's values changed");
    assert_ne!(bits(&updated), before, "the step changed nothing");
}

fn address(t: &Tensor<2>) -> usize {
    let flex = t
        .clone()
        .try_into_primitive::<Flex>()
        .expect("a CPU tensor");
    flex.storage::<f32>().as_ptr() as usize
}

#[test]
fn plain_cpu_tensors_are_updated_in_one_pass_in_place() {
    let device = Device::flex();
    let p = Tensor::<2>::random([64, 64], Distribution::Normal(0.0, 1.0), &device);
    let grad = Tensor::<2>::ones([64, 64], &device);
    let moments = Adam::new(1e-8).moments;
    let (p, state) = moments
        .step(p, grad.clone(), None, |t| moments.adam(t, 0.1))
        .unwrap_or_else(|_| panic!("the CPU backend's tensors fell back to burn's step"));
    let (at, m_at) = (address(&p), address(&state.moment_1));
    let (p, state) = moments
        .step(p, grad, Some(state), |t| moments.adam(t, 0.1))
        .unwrap_or_else(|_| panic!("the CPU backend's tensors fell back to burn's step"));
    assert_eq!(state.time, 2);
    assert_eq!(address(&p), at, "the parameter was copied");
    assert_eq!(
        address(&state.moment_1),
        m_at,
        "the first moment was copied"
    );
}

#[test]
fn the_baseline_and_the_vector_passes_agree_to_the_bit() {
    let n = 1000;
    let values = |seed: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.37 + seed).sin() * 3.0).powi(3))
            .collect()
    };
    let moments = Adam::new(1e-8).moments;
    let rules = [moments.adam(3, 1e-3), moments.adam_w(3, 1e-3, 1e-2)];
    for rule in rules {
        for first in [true, false] {
            let run = |fastest: bool| {
                let (mut p, mut m, g) = (values(0.0), values(1.0), values(3.0));
                let mut v: Vec<f32> = values(2.0).iter().map(|x| x.abs()).collect();
                let chunk = (&mut p[..], &mut m[..], &mut v[..], &g[..]);
                if fastest {
                    rule.pass_fastest(chunk, first, [0.9, 0.999]);
                } else {
                    rule.pass(chunk, first, [0.9, 0.999]);
                }
                [p, m, v].map(|x| x.iter().map(|y| y.to_bits()).collect::<Vec<_>>())
            };
            assert_eq!(run(true), run(false));
        }
    }
}
