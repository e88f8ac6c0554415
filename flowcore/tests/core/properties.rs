//! Property tests: random dense RealNVP flows of random size invert and keep their log-dets
//! consistent for random inputs.

use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::arch::Mixing;
use flowcore::testing::perturb_params;
use flowcore::{ArchitectureConfig, Bijector, Flow, RealNvpConfig};
use proptest::prelude::*;

proptest! {
    // A fixed seed: CI sees the same 64 cases every run; change it to explore others.
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261125),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_real_nvp_round_trips(
        dim in 2usize..9,
        layers in 1usize..5,
        mixing in prop_oneof![Just(Mixing::Reverse), Just(Mixing::Random), Just(Mixing::Alternate), Just(Mixing::LuLinear)],
        seed in 0u64..1000,
        values in proptest::collection::vec(-3.0f32..3.0, 4 * 8),
    ) {
        let d = Device::flex();
        let cfg = RealNvpConfig {
            num_layers: layers,
            hidden_units: vec![8],
            permutation: mixing,
            seed,
            ..RealNvpConfig::new(dim)
        };
        let flow = perturb_params(Flow::new(ArchitectureConfig::RealNvpDense(cfg), &d).unwrap(), 0.3, seed);
        let x = Tensor::<2>::from_data(TensorData::new(values[..4 * dim].to_vec(), [4, dim]), &d);
        let (z, ld) = flow.forward(x.clone(), None);
        // Random weights can scale features by e^3 per layer: f32 keeps about 7 digits of the
        // largest value a pass goes through, so the tolerance is relative to it.
        let scale = z.clone().abs().max().into_scalar::<f64>().max(1.0);
        let (back, ld_inv) = flow.bijector().inverse(z, None);
        let err = (back - x).abs().max().into_scalar::<f64>();
        let cancel = (ld.clone() + ld_inv).abs().max().into_scalar::<f64>();
        let ld_scale = ld.abs().max().into_scalar::<f64>().max(1.0);
        prop_assert!(err < 1e-4 * scale, "round trip error {} (largest |z| {})", err, scale);
        prop_assert!(cancel < 1e-4 * ld_scale, "log-dets do not cancel: {}", cancel);
    }
}
