//! The phi^4 action, its gradient and parametrisations, the importance-weight statistics, the
//! symmetries of lattice flows, and training against the action to a known bound.

use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::arch::LatticeFlowConfig;
use flowcore::lattice::{
    ForwardKlTerm, Phi4, Phi4Couplings, PriorSource, ReverseKl, effective_sample_size,
    independence_metropolis, log_partition,
};
use flowcore::layers::SiteSplineSpec;
use flowcore::nets::Activation;
use flowcore::testing::perturb_params;
use flowcore::train::{Objective, TrainingConfig, fit_objective};
use flowcore::transform::{ScaleFn, Transform};
use flowcore::{ArchitectureConfig, Flow};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn couplings(kappa: f64, m_sq: f64, lambda: f64) -> Phi4Couplings {
    Phi4Couplings {
        kappa,
        m_sq,
        lambda,
    }
}

fn random_field(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-2.0..2.0)).collect()
}

const SHAPES: [&[usize]; 5] = [&[1], &[5], &[4, 3], &[2, 2], &[2, 3, 2]];

#[test]
fn gradient_matches_finite_differences_on_every_shape() {
    for shape in SHAPES {
        let action = Phi4::new(shape, couplings(1.3, -0.7, 0.4)).unwrap();
        let phi = random_field(action.sites(), 1);
        let mut grad = vec![0.0; phi.len()];
        action.gradient_host(&phi, &mut grad);
        let h = 1e-6;
        for x in 0..phi.len() {
            let (mut up, mut down) = (phi.clone(), phi.clone());
            up[x] += h;
            down[x] -= h;
            let numeric = (action.action_host(&up) - action.action_host(&down)) / (2.0 * h);
            assert!(
                (numeric - grad[x]).abs() < 1e-6 * (1.0 + numeric.abs()),
                "{shape:?} site {x}: dS/dphi {} but finite differences give {numeric}",
                grad[x]
            );
        }
    }
}

#[test]
fn batched_action_matches_the_host_action_and_its_definition() {
    // On a 3-site ring, by hand: kappa/2 sum (phi(x+1) - phi(x))^2 + m_sq/2 phi^2 + lambda phi^4.
    let ring = Phi4::new(&[3], couplings(2.0, 1.0, 0.5)).unwrap();
    let phi = [0.5f64, -1.0, 2.0];
    let by_hand = (1.5f64.powi(2) + 3.0f64.powi(2) + 1.5f64.powi(2))
        + phi
            .iter()
            .map(|p| 0.5 * p * p + 0.5 * p.powi(4))
            .sum::<f64>();
    assert!((ring.action_host(&phi) - by_hand).abs() < 1e-12);
    let device = Device::flex();
    for shape in SHAPES {
        let action = Phi4::new(shape, couplings(0.8, -1.1, 0.3)).unwrap();
        let v = action.sites();
        let fields: Vec<f64> = (0..3).flat_map(|i| random_field(v, 10 + i)).collect();
        let t = Tensor::<2>::from_data(
            TensorData::new(fields.iter().map(|&x| x as f32).collect(), [3, v]),
            &device,
        );
        let batched = action
            .action(t)
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap();
        for i in 0..3 {
            let host = action.action_host(&fields[i * v..(i + 1) * v]);
            assert!(
                (batched[i] - host).abs() < 1e-4 * (1.0 + host.abs()),
                "{shape:?}: batched {} host {host}",
                batched[i]
            );
        }
    }
}

#[test]
fn hopping_parametrisation_is_the_same_theory() {
    // S_h(chi) = sum [-2 k sum_mu chi chi_mu + chi^2 + l (chi^2 - 1)^2] equals S(phi) with
    // phi = sqrt(2 k) chi, up to the constant l * sites.
    let (hopping, lambda_h) = (0.18, 0.9);
    for shape in SHAPES {
        let d = shape.iter().filter(|&&l| l > 1).count();
        let action = Phi4::new(
            shape,
            Phi4Couplings::from_hopping(hopping, lambda_h, d).unwrap(),
        )
        .unwrap();
        let chi = random_field(action.sites(), 3);
        let mut s_h = 0.0;
        for (x, &c) in chi.iter().enumerate() {
            s_h += c * c + lambda_h * (c * c - 1.0).powi(2);
            for fwd in action.forward_neighbours() {
                s_h -= 2.0 * hopping * c * chi[fwd[x]];
            }
        }
        let phi: Vec<f64> = chi.iter().map(|c| c * (2.0 * hopping).sqrt()).collect();
        let diff = action.action_host(&phi) - s_h;
        let constant = -lambda_h * action.sites() as f64;
        assert!(
            (diff - constant).abs() < 1e-9,
            "{shape:?}: S(phi) - S_h(chi) = {diff}, expected {constant}"
        );
    }
}

#[test]
fn bad_theories_are_refused_with_the_key() {
    let cases: [(&[usize], Phi4Couplings, &str); 5] = [
        (&[], couplings(1.0, 1.0, 1.0), "lattice"),
        (&[4, 0], couplings(1.0, 1.0, 1.0), "lattice"),
        (&[4], couplings(1.0, -1.0, 0.0), "unbounded"),
        (&[4], couplings(f64::NAN, 1.0, 1.0), "kappa"),
        (&[4], couplings(1.0, 1.0, -0.1), "unbounded"),
    ];
    for (shape, c, key) in cases {
        let err = Phi4::new(shape, c).unwrap_err().to_string();
        assert!(
            err.contains(key),
            "{shape:?} {c:?}: `{err}` does not say {key}"
        );
    }
    assert!(Phi4Couplings::from_hopping(0.0, 1.0, 2).is_err());
}

#[test]
fn importance_weight_statistics() {
    // Equal weights: a perfect sampler.
    let flat = vec![-3.0; 100];
    assert!((effective_sample_size(&flat) - 1.0).abs() < 1e-12);
    let (log_z, err) = log_partition(&flat);
    assert!((log_z + 3.0).abs() < 1e-12 && err < 1e-6);
    let (chain, rate) = independence_metropolis(&flat, 1);
    assert_eq!(rate, 1.0);
    assert_eq!(chain, (0..100).collect::<Vec<_>>());
    // One weight of 1 and n-1 of 0: ESS 1/n; huge offsets change nothing.
    let mut one = vec![f64::NEG_INFINITY; 10];
    one[3] = 1e4;
    assert!((effective_sample_size(&one) - 0.1).abs() < 1e-12);
    // A chain never leaves a proposal of weight 1 for ones of weight 0.
    let (chain, rate) = independence_metropolis(&one, 2);
    assert!(chain[3..].iter().all(|&i| i == 3));
    assert!((rate - 3.0 / 9.0).abs() < 1e-12);
    // Two weights w and 2w alternating: ESS = (3/2)^2 / (5/2) = 0.9.
    let two: Vec<f64> = (0..1000)
        .map(|i| if i % 2 == 0 { 0.0 } else { 2f64.ln() })
        .collect();
    assert!((effective_sample_size(&two) - 0.9).abs() < 1e-12);
    assert_eq!(effective_sample_size(&[0.0, f64::NAN]), 0.0);
}

fn lattice_flow(z2: bool) -> ArchitectureConfig {
    ArchitectureConfig::Lattice(LatticeFlowConfig {
        lattice: vec![4, 6],
        couplings: 4,
        transform: Transform::Affine {
            scale: ScaleFn::Tanh { clamp: 2.0 },
        },
        hidden_channels: vec![6],
        kernel_size: 3,
        activation: Activation::Tanh,
        z2,
        site_spline: Some(SiteSplineSpec {
            dim: 0,
            bins: 8,
            symmetric: true,
            shared: true,
        }),
    })
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn lattice_flows_commute_with_the_symmetries_they_claim() {
    let device = Device::flex();
    let x = flowcore::standard_normal(5, 24, 4, &device);
    // Translations by two sites (which keep the checkerboard): periodic padding makes the
    // flow commute with them, z2 or not.
    let shift = |t: Tensor<2>, dy: usize, dx: usize| {
        t.reshape([5, 4, 6])
            .roll(&[dy as i64, dx as i64], &[1, 2])
            .reshape([5, 24])
    };
    for z2 in [false, true] {
        let flow = perturb_params(Flow::seeded(lattice_flow(z2), 1, &device).unwrap(), 0.3, 2);
        let (z, ld) = flow.forward(x.clone(), None);
        for (dy, dx) in [(2, 0), (0, 2), (1, 1)] {
            let (zs, lds) = flow.forward(shift(x.clone(), dy, dx), None);
            let d = host(zs - shift(z.clone(), dy, dx));
            assert!(
                d.iter().all(|v| v.abs() < 1e-5),
                "z2 {z2}: not translation-equivariant by ({dy}, {dx})"
            );
            let dl = (lds - ld.clone()).abs().max().into_scalar::<f32>();
            assert!(
                dl < 1e-4,
                "z2 {z2}: log-det changed by {dl} under a translation"
            );
        }
        let (zn, ldn) = flow.forward(x.clone().neg(), None);
        let odd = host(zn + z.clone())
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let ld_change = (ldn - ld).abs().max().into_scalar::<f32>();
        if z2 {
            assert!(
                odd < 1e-5 && ld_change < 1e-4,
                "z2 flow not odd: {odd}, {ld_change}"
            );
        } else {
            assert!(
                odd > 1e-3,
                "a flow without z2 came out odd: the check would not catch it"
            );
        }
    }
}

#[test]
fn lattice_configs_refuse_what_they_cannot_build() {
    let device = Device::flex();
    let with = |f: &dyn Fn(&mut LatticeFlowConfig)| {
        let ArchitectureConfig::Lattice(mut c) = lattice_flow(true) else {
            unreachable!()
        };
        f(&mut c);
        Flow::new(ArchitectureConfig::Lattice(c), &device)
            .unwrap_err()
            .to_string()
    };
    type Edit<'a> = &'a dyn Fn(&mut LatticeFlowConfig);
    let cases: [(&str, Edit); 5] = [
        ("3-D", &|c| c.lattice = vec![2, 2, 2]),
        ("single site", &|c| c.lattice = vec![1]),
        ("symmetric", &|c| {
            c.site_spline.as_mut().unwrap().symmetric = false
        }),
        ("affine or additive", &|c| {
            c.transform = Transform::RationalQuadratic(Default::default())
        }),
        ("odd", &|c| c.kernel_size = 4),
    ];
    for (needle, f) in cases {
        let err = with(f);
        assert!(err.contains(needle), "`{err}` does not mention {needle}");
    }
}

/// Train a symmetric site spline against the single-site double well of the issue
/// (kappa = 0, m_sq = -1.2, lambda = 0.5); the effective sample size must pass 0.99 and log Z
/// agree with quadrature, with either gradient estimator.
#[test]
fn single_site_double_well_reaches_ess_099() {
    for path_gradient in [false, true] {
        double_well(path_gradient);
    }
}

/// A flow of one spline per site and no couplings on `sites` sites (z2 when `symmetric`).
pub fn site_spline_only(sites: usize, bins: usize, symmetric: bool) -> ArchitectureConfig {
    ArchitectureConfig::Lattice(LatticeFlowConfig {
        lattice: vec![sites],
        couplings: 0,
        transform: Transform::Additive,
        hidden_channels: vec![],
        kernel_size: 3,
        activation: Activation::Tanh,
        z2: symmetric,
        site_spline: Some(SiteSplineSpec {
            dim: 0,
            bins,
            symmetric,
            shared: true,
        }),
    })
}

fn double_well(path_gradient: bool) {
    let action = Phi4::new(&[1], couplings(0.0, -1.2, 0.5)).unwrap();
    let config = site_spline_only(1, 16, true);
    let training = TrainingConfig {
        epochs: 6,
        steps_per_epoch: 100,
        batch_size: 1024,
        learning_rate: 1e-2,
        ..TrainingConfig::default()
    };
    let device = training.autodiff_device(&Device::flex());
    let flow = Flow::seeded(config, 0, &device).unwrap();
    let mut source = PriorSource::new(1, 7, 16384);
    let dir = std::env::temp_dir().join(format!("flowcore-lattice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut objective = ReverseKl::new(action);
    objective.path_gradient = path_gradient;
    let outcome = fit_objective(
        flow,
        &objective,
        &mut source,
        &training,
        &dir,
        false,
        &device,
        &mut [],
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let last = outcome.history.last().unwrap();
    let part = |k: &str| last.val_parts.iter().find(|(n, _)| n == k).unwrap().1;
    let ess = part("ess");
    eprintln!(
        "path gradient {path_gradient}: ESS per epoch {:?}",
        outcome
            .history
            .iter()
            .map(|e| e.val_parts[0].1)
            .collect::<Vec<_>>()
    );
    assert!(
        ess >= 0.99,
        "path gradient {path_gradient}: ESS {ess} < 0.99"
    );
    // log Z of the double well by quadrature, against the flow's estimate.
    let exact: f64 = (-40000..40000)
        .map(|i| {
            let p = i as f64 * 1e-4;
            (0.6 * p * p - 0.5 * p.powi(4)).exp() * 1e-4
        })
        .sum::<f64>()
        .ln();
    let (log_z, err) = (part("log_z"), part("log_z_err"));
    assert!(
        (log_z - exact).abs() < 4.0 * err.max(1e-3),
        "log Z {log_z} +- {err}, quadrature {exact}"
    );
}

#[test]
fn annealing_raises_the_action_weight_linearly_to_one() {
    let mut objective = ReverseKl::new(Phi4::new(&[2], couplings(1.0, 1.0, 0.1)).unwrap());
    assert_eq!(objective.beta(0), 1.0);
    objective.anneal_steps = 100;
    objective.anneal_from = 0.2;
    for (step, beta) in [(0, 0.2), (50, 0.6), (100, 1.0), (1000, 1.0)] {
        assert!(
            (objective.beta(step) - beta).abs() < 1e-12,
            "step {step}: {}",
            objective.beta(step)
        );
    }
}

#[test]
fn the_forward_kl_term_adds_the_flows_nll_of_chain_fields() {
    let device = Device::flex().autodiff();
    let sites = 24;
    let n = 40;
    let fields: Vec<f32> = random_field(n * sites, 9)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let term = ForwardKlTerm::new(fields.clone(), sites, 0.5, 8, 3).unwrap();
    assert_eq!(term.len(), n);
    // Each step's rows are distinct fields of the set, the same on every call of that step.
    let rows = |step| host(term.batch(step, &device));
    let (a, again, b) = (rows(4), rows(4), rows(5));
    assert_eq!(a, again);
    assert_ne!(a, b);
    let mut picked: Vec<usize> = a
        .chunks(sites)
        .map(|r| {
            fields
                .chunks(sites)
                .position(|f| f == r)
                .expect("a row that is no field of the set")
        })
        .collect();
    picked.sort_unstable();
    picked.dedup();
    assert_eq!(picked.len(), 8);

    let flow = Flow::seeded(lattice_flow(true), 2, &device).unwrap();
    let flow = perturb_params(flow, 0.3, 5);
    let nll: f32 = term
        .negative_log_likelihood(&flow, 4, &device)
        .into_scalar();
    let expected: f32 = -flow
        .log_prob(term.batch(4, &device), None)
        .mean()
        .into_scalar::<f32>();
    assert!(
        (nll - expected).abs() < 1e-4 * expected.abs().max(1.0),
        "{nll} against {expected}"
    );

    // In the objective: the reverse KL plus weight x that NLL, the same draws otherwise.
    let action = Phi4::new(&[4, 6], couplings(2.0, -4.0, 3.0)).unwrap();
    let plain = ReverseKl::new(action);
    let mut with = plain.clone();
    with.forward_kl = Some(term.clone());
    let z = flowcore::lattice::base_draws(16, sites, 1, &device);
    let loss = |o: &ReverseKl| -> f32 { o.loss(&flow, z.clone(), None, 0, 4).total.into_scalar() };
    let (l0, l1) = (loss(&plain), loss(&with));
    assert!(
        (l1 - l0 - 0.5 * nll).abs() < 1e-3,
        "{l1} - {l0} != 0.5 x {nll}"
    );

    // Bad sets are refused with what is wrong.
    let err = |r: Result<ForwardKlTerm, String>| r.unwrap_err();
    assert!(err(ForwardKlTerm::new(vec![0.0; 25], sites, 1.0, 8, 0)).contains("25 values"));
    let mut nan = fields.clone();
    nan[sites * 3 + 2] = f32::NAN;
    assert!(err(ForwardKlTerm::new(nan, sites, 1.0, 8, 0)).contains("field 3"));
    assert!(err(ForwardKlTerm::new(fields.clone(), sites, 0.0, 8, 0)).contains("weight"));
    assert!(err(ForwardKlTerm::new(fields, sites, 1.0, 0, 0)).contains("batch"));
}
