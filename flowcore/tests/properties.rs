//! Property tests: random dense RealNVP flows of random size invert and keep their log-dets
//! consistent for random inputs.

use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::arch::Mixing;
use flowcore::testing::perturb_params;
use flowcore::{ArchitectureConfig, Bijector, Flow, RealNvpConfig};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_real_nvp_round_trips(
        dim in 2usize..9,
        layers in 1usize..5,
        mixing in prop_oneof![Just(Mixing::Reverse), Just(Mixing::Random), Just(Mixing::Alternate)],
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
        let (back, ld_inv) = flow.bijector().inverse(z, None);
        let err = (back - x).abs().max().into_scalar::<f64>();
        let cancel = (ld + ld_inv).abs().max().into_scalar::<f64>();
        prop_assert!(err < 1e-4, "round trip error {}", err);
        prop_assert!(cancel < 1e-4, "log-dets do not cancel: {}", cancel);
    }
}
