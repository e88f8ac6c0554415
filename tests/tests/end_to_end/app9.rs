//! Application 9 end to end, driven as a library: a flow trained against the phi^4 action and
//! corrected by Metropolis agrees with the Hybrid Monte Carlo baseline in both phases (reduced
//! lattices and training), the single-site double well reaches its effective sample size, the
//! commands after `train` read the run, and bad theories are refused with their key.

use std::path::{Path, PathBuf};

use flowapps::app9::{self, TrainOptions, TrainSummary};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowtests-app9-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn train_in(dir: &Path, sets: &[&str]) -> anyhow::Result<TrainSummary> {
    app9::train(&TrainOptions {
        sets: sets.iter().map(|s| s.to_string()).collect(),
        run_dir: Some(dir.join("run")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
}

/// A 6 x 6 lattice, a short training, and chains long enough for errors of a few percent.
const REDUCED: [&str; 8] = [
    "theory.lattice=[6, 6]",
    "training.epochs=3",
    "training.steps_per_epoch=100",
    "training.schedule={kind = \"constant\"}",
    "run.validation_size=2048",
    "run.mcmc_samples=16384",
    "hmc.trajectories=16000",
    "hmc.thermalisation=500",
];

/// Flow + Metropolis against HMC: every judged observable within `bound` combined standard
/// errors, and the training must have improved the flow (ESS, acceptance) so that the chain
/// is worth something.
fn check_agreement(name: &str, extra: &[&str], bound: f64) -> TrainSummary {
    let dir = scratch(name);
    let mut sets = REDUCED.to_vec();
    sets.extend_from_slice(extra);
    let s = train_in(&dir, &sets).unwrap();
    let r = &s.report;
    let table = flowapps::app9::comparison_table(&r.comparison, "flow+MH", "HMC");
    eprintln!(
        "{name}: ESS {:.3}, acceptance {:.3}, max |pull| {:.2}\n{table}",
        r.weights.ess, r.weights.acceptance, r.max_abs_pull
    );
    let first_ess = r.run.history[0]
        .val_parts
        .iter()
        .find(|p| p.0 == "ess")
        .unwrap()
        .1;
    assert!(
        r.weights.ess > 0.1 && r.weights.ess > first_ess,
        "{name}: ESS {} (after the first epoch {first_ess}) shows no training",
        r.weights.ess
    );
    assert!(
        r.weights.acceptance > 0.2,
        "{name}: acceptance {}",
        r.weights.acceptance
    );
    assert!(
        r.max_abs_pull <= bound,
        "{name}: flow + Metropolis and HMC differ by {:.2} combined standard errors\n{table}",
        r.max_abs_pull
    );
    for judged in ["|M|", "chi", "energy_density", "G(0)", "G(1)"] {
        assert!(
            r.comparison
                .iter()
                .any(|c| c.name == judged && c.pull.is_finite()),
            "{name}: {judged} was not compared"
        );
    }
    assert!(s.run_dir.join("correlator.png").exists());
    assert!(s.run_dir.join("magnetisation.png").exists());
    s
}

/// The symmetric phase (the tutorial's M2 = -4, lam = 8): |M| small, no vacuum preferred.
#[test]
fn symmetric_phase_agrees_with_hmc() {
    let s = check_agreement("symmetric", &[], 2.5);
    let abs_m = s
        .report
        .hmc
        .estimates
        .iter()
        .find(|e| e.name == "|M|")
        .unwrap()
        .value;
    assert!(abs_m < 0.2, "|M| = {abs_m}: not the symmetric phase");

    // The commands after training read the run: the HMC baseline repeats for a seed, and the
    // flow chain accepts what the report's did, within its statistics.
    let run = &s.run_dir;
    let a = app9::hmc(run, Some(500), Some(7)).unwrap();
    let b = app9::hmc(run, Some(500), Some(7)).unwrap();
    assert_eq!(a.estimates[1].value, b.estimates[1].value);
    let (weights, _, exact) = app9::mcmc(run, 4096, 3, None).unwrap();
    assert!(
        (weights.acceptance - s.report.weights.acceptance).abs() < 0.05,
        "mcmc acceptance {} against the report's {}",
        weights.acceptance,
        s.report.weights.acceptance
    );
    assert_eq!(exact.samples, 4096);
    let err = app9::mcmc(run, 1, 3, None).unwrap_err().to_string();
    assert!(err.contains("--n"), "{err}");
    let err = app9::mcmc(&run.join("nothing"), 10, 3, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("theory.json"), "{err}");
}

/// The broken phase (lambda 3) as `apps/configs/app9-broken.toml` runs it: spline couplings
/// without z2, learning one vacuum, and symmetrised proposals that cover both. The default
/// affine z2 flow's chain over-weights ordered fields here (see the README).
#[test]
fn broken_phase_with_spline_couplings_agrees_with_hmc() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/configs/app9-broken.toml");
    let dir = scratch("broken");
    let mut sets: Vec<String> = REDUCED.iter().map(|s| s.to_string()).collect();
    sets.push("theory.lambda=3.0".into());
    // Three epochs left ESS at the bound (0.095 to just over 0.1, as the products' rounding
    // moved); five give 0.42 and acceptance 0.62, in about a minute.
    sets.push("training.epochs=5".into());
    let s = app9::train(&TrainOptions {
        config: Some(config),
        sets,
        run_dir: Some(dir.join("run")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap();
    let r = &s.report;
    let table = flowapps::app9::comparison_table(&r.comparison, "flow+MH", "HMC");
    eprintln!(
        "broken: ESS {:.3}, acceptance {:.3}, max |pull| {:.2}\n{table}",
        r.weights.ess, r.weights.acceptance, r.max_abs_pull
    );
    let estimate = |chain: &app9::ChainSummary, name: &str| {
        chain
            .estimates
            .iter()
            .find(|e| e.name == name)
            .unwrap()
            .clone()
    };
    let abs_m = estimate(&r.hmc, "|M|").value;
    assert!(abs_m > 0.6, "|M| = {abs_m}: not the broken phase");
    assert!(r.weights.ess > 0.1, "ESS {}", r.weights.ess);
    assert!(
        r.weights.acceptance > 0.4,
        "acceptance {}",
        r.weights.acceptance
    );
    assert!(
        r.max_abs_pull <= 2.5,
        "flow + Metropolis and HMC differ by {:.2} combined standard errors\n{table}",
        r.max_abs_pull
    );
    // Both vacua: <M> near 0 within its error, where the unsymmetrised chain of this
    // one-vacuum flow sits at +-|M|.
    let m = estimate(&r.flow_metropolis, "M");
    assert!(
        m.value.abs() < 4.0 * m.error && m.value.abs() < 0.1,
        "<M> = {m:?}"
    );
    let (_, _, one_vacuum) = app9::mcmc(
        &s.run_dir,
        4096,
        3,
        Some(app9::ProposalGroup {
            symmetric: false,
            ..Default::default()
        }),
    )
    .unwrap();
    let m = estimate(&one_vacuum, "M").value;
    assert!(
        (m.abs() - abs_m).abs() < 0.05,
        "unsymmetrised <M> = {m}, |M| = {abs_m}"
    );
}

/// The exact answers of a periodic chain of `sites` sites by its transfer matrix on a grid:
/// `Z = tr T^L` with `T(a, b) = h exp(-[kappa/2 (b - a)^2 + (U(a) + U(b)) / 2])`,
/// `U = m_sq/2 phi^2 + lambda phi^4`. Returns `(log Z, <phi^2>, <S> / sites)`.
fn chain_exact(kappa: f64, m_sq: f64, lambda: f64, sites: u32) -> (f64, f64, f64) {
    let n = 601;
    let grid: Vec<f64> = (0..n)
        .map(|i| -3.5 + 7.0 * i as f64 / (n - 1) as f64)
        .collect();
    let h = grid[1] - grid[0];
    let u: Vec<f64> = grid
        .iter()
        .map(|x| m_sq / 2.0 * x * x + lambda * x.powi(4))
        .collect();
    let kin = |i: usize, j: usize| kappa / 2.0 * (grid[j] - grid[i]).powi(2);
    let t: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            h * (-(kin(i, j) + (u[i] + u[j]) / 2.0)).exp()
        })
        .collect();
    let mul = |a: &[f64], b: &[f64]| {
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                let aik = a[i * n + k];
                let (row, bk) = (&mut c[i * n..(i + 1) * n], &b[k * n..(k + 1) * n]);
                row.iter_mut().zip(bk).for_each(|(c, b)| *c += aik * b);
            }
        }
        c
    };
    // T^(L-1) by repeated multiplication (L is small).
    let mut power = t.clone();
    for _ in 1..sites - 1 {
        power = mul(&power, &t);
    }
    let full = mul(&power, &t);
    let z: f64 = (0..n).map(|i| full[i * n + i]).sum();
    let phi2 = (0..n)
        .map(|i| grid[i] * grid[i] * full[i * n + i])
        .sum::<f64>()
        / z;
    let potential = (0..n).map(|i| u[i] * full[i * n + i]).sum::<f64>() / z;
    // <kappa/2 (phi_1 - phi_0)^2> = tr((K o T) T^(L-1)) / Z.
    let kinetic = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| kin(i, j) * t[i * n + j] * power[j * n + i])
        .sum::<f64>()
        / z;
    (z.ln(), phi2, potential + kinetic)
}

/// A chain of 8 sites with a deep double well at each (kappa 2, m_sq -8, lambda 3, the
/// broken-phase couplings), where the transfer matrix gives the exact answers: flow +
/// Metropolis and HMC must find <phi^2> and the action density within 3 standard errors of
/// them, and the flow's log Z within 4 of its error.
#[test]
fn a_double_well_chain_matches_its_transfer_matrix() {
    let (log_z, phi2, energy) = chain_exact(2.0, -8.0, 3.0, 8);
    let dir = scratch("chain");
    let s = train_in(
        &dir,
        &[
            "theory.lattice=[8]",
            "theory.lambda=3.0",
            "training.epochs=4",
            "training.steps_per_epoch=150",
            "run.validation_size=2048",
            "run.mcmc_samples=32768",
            "hmc.trajectories=30000",
        ],
    )
    .unwrap();
    let r = &s.report;
    eprintln!(
        "exact log Z {log_z:.5}, <phi^2> {phi2:.5}, energy density {energy:.5}; flow log Z {:?}, ESS {:.3}",
        r.weights.log_z, r.weights.ess
    );
    assert!(r.weights.ess > 0.2, "ESS {}", r.weights.ess);
    let (est, err) = r.weights.log_z;
    assert!(
        (est - log_z).abs() < 4.0 * err,
        "log Z {est} +- {err}, exact {log_z}"
    );
    for chain in [&r.flow_metropolis, &r.hmc] {
        let get = |name: &str| chain.estimates.iter().find(|e| e.name == name).unwrap();
        // In 1-D each site is a time slice, so G(0) = <phi^2> - <M>^2.
        let (g0, m) = (get("G(0)"), get("M"));
        let measured = g0.value + m.value * m.value;
        assert!(
            (measured - phi2).abs() < 3.0 * g0.error,
            "{}: <phi^2> {measured} +- {}, exact {phi2}",
            chain.sampler,
            g0.error
        );
        let e = get("energy_density");
        assert!(
            (e.value - energy).abs() < 3.0 * e.error,
            "{}: action density {} +- {}, exact {energy}",
            chain.sampler,
            e.value,
            e.error
        );
    }
}

/// `(log Z, <|M|>, <S> / 4)` of the 2 x 2 torus by quadrature over its four fields (each
/// bond is counted twice on a periodic axis of two sites: `kappa (b - a)^2` per pair).
fn torus_2x2_exact(kappa: f64, m_sq: f64, lambda: f64) -> (f64, f64, f64) {
    let n = 91;
    let grid: Vec<f64> = (0..n)
        .map(|i| -2.6 + 5.2 * i as f64 / (n - 1) as f64)
        .collect();
    let h = grid[1] - grid[0];
    let u = |x: f64| m_sq / 2.0 * x * x + lambda * x.powi(4);
    let (mut z, mut abs_m, mut energy) = (0.0, 0.0, 0.0);
    for &a in &grid {
        for &b in &grid {
            for &c in &grid {
                for &d in &grid {
                    let kinetic = kappa
                        * ((b - a).powi(2) + (d - c).powi(2) + (c - a).powi(2) + (d - b).powi(2));
                    let s = kinetic + u(a) + u(b) + u(c) + u(d);
                    let w = (-s).exp();
                    z += w;
                    abs_m += w * ((a + b + c + d) / 4.0).abs();
                    energy += w * s / 4.0;
                }
            }
        }
    }
    ((z * h.powi(4)).ln(), abs_m / z, energy / z)
}

/// The broken-phase couplings on a 2 x 2 torus, small enough for quadrature: flow +
/// Metropolis, HMC and the flow's log Z against the exact values. (On 4 x 4 and 8 x 8 the
/// default flow's weights are heavy-tailed and its chain over-weights ordered fields: see
/// the README.)
#[test]
fn a_2x2_torus_in_the_broken_phase_matches_quadrature() {
    let (log_z, abs_m, energy) = torus_2x2_exact(2.0, -8.0, 3.0);
    let dir = scratch("torus");
    let s = train_in(
        &dir,
        &[
            "theory.lattice=[2, 2]",
            "theory.lambda=3.0",
            "training.epochs=6",
            "training.steps_per_epoch=200",
            "run.validation_size=4096",
            "run.mcmc_samples=65536",
            "hmc.trajectories=50000",
        ],
    )
    .unwrap();
    let r = &s.report;
    eprintln!(
        "exact log Z {log_z:.5}, <|M|> {abs_m:.5}, action density {energy:.5}; flow log Z {:?}, ESS {:.3}",
        r.weights.log_z, r.weights.ess
    );
    assert!(r.weights.ess > 0.3, "ESS {}", r.weights.ess);
    // Where the flow misses a little of the target, the finite-sample estimate of log Z is
    // low by more than its delta-method error says (measured: 3.7789 +- 0.0022 against
    // 3.7864); 0.01 nats (1% of Z) allow for it.
    let (est, err) = r.weights.log_z;
    assert!(
        (est - log_z).abs() < 4.0 * err + 0.01,
        "log Z {est} +- {err}, exact {log_z}"
    );
    for chain in [&r.flow_metropolis, &r.hmc] {
        for (name, exact) in [("|M|", abs_m), ("energy_density", energy)] {
            let e = chain.estimates.iter().find(|e| e.name == name).unwrap();
            assert!(
                (e.value - exact).abs() < 3.0 * e.error,
                "{}: {name} {} +- {}, exact {exact}",
                chain.sampler,
                e.value,
                e.error
            );
        }
    }
}

/// The single site: kappa 0, m_sq -1.2, lambda 0.5, a double well; a symmetric site
/// spline alone reaches ESS 0.99.
#[test]
fn single_site_double_well_reaches_ess_099() {
    let dir = scratch("site");
    let s = train_in(
        &dir,
        &[
            "theory.lattice=[1]",
            "theory.kappa=0.0",
            "theory.m_sq=-1.2",
            "theory.lambda=0.5",
            "model.couplings=0",
            "model.site_spline={bins = 16, symmetric = true}",
            "training.batch_size=1024",
            "training.learning_rate=1e-2",
            "training.epochs=6",
            "training.steps_per_epoch=100",
            "training.schedule={kind = \"constant\"}",
            "run.mcmc_samples=16384",
            "hmc.trajectories=20000",
        ],
    )
    .unwrap();
    let r = &s.report;
    assert!(r.weights.ess >= 0.99, "ESS {}", r.weights.ess);
    assert!(
        r.weights.acceptance > 0.9,
        "acceptance {}",
        r.weights.acceptance
    );
    // One site has no correlator.
    assert!(!s.run_dir.join("correlator.png").exists());
    assert!(r.comparison.iter().all(|c| !c.name.starts_with('G')));
}

#[test]
fn bad_theories_are_refused_before_any_write() {
    let cases: [(&[&str], &str); 9] = [
        (&["theory.parametrisation=\"hopping\""], "theory.hopping"),
        (
            &["theory.parametrisation=\"hopping\"", "theory.kappa=\"x\""],
            "theory.kappa",
        ),
        (&["theory.lambda=-1.0"], "unbounded"),
        (&["theory.lattice=[2, 2, 2]"], "3-D"),
        (&["model.lattice=[4, 4]"], "model.lattice"),
        (
            &["objective.anneal_steps=10", "objective.anneal_from=2.0"],
            "anneal_from",
        ),
        (&["proposal.wide_fraction=1.0"], "proposal.wide_fraction"),
        (&["proposal.wide_scale=0.0"], "positive"),
        (&["proposal.symmetric=\"yes\""], "proposal.symmetric"),
    ];
    for (i, (sets, needle)) in cases.iter().enumerate() {
        let dir = scratch(&format!("bad{i}"));
        let err = format!("{:#}", train_in(&dir, sets).unwrap_err());
        assert!(
            err.contains(needle),
            "{sets:?}: `{err}` does not name {needle}"
        );
        assert!(
            !dir.join("run").exists(),
            "{sets:?}: a run folder was written"
        );
    }
}

/// The hopping parametrisation runs the same theory as its standard couplings.
#[test]
fn hopping_parametrisation_trains_the_mapped_theory() {
    let dir = scratch("hopping");
    let s = train_in(
        &dir,
        &[
            "theory.lattice=[4]",
            "theory.parametrisation=\"hopping\"",
            "theory.hopping=0.2",
            "theory.lambda_h=0.5",
            "theory.kappa=0.0",
        ],
    );
    // kappa belongs to the standard parametrisation.
    let err = format!("{:#}", s.unwrap_err());
    assert!(err.contains("theory.kappa"), "{err}");
    let s = train_in(
        &dir,
        &[
            "theory.lattice=[4]",
            "theory.parametrisation=\"hopping\"",
            "theory.hopping=0.2",
            "theory.lambda_h=0.5",
            "training.epochs=1",
            "training.steps_per_epoch=5",
            "run.mcmc_samples=512",
            "hmc.trajectories=500",
        ],
    )
    .unwrap();
    let c = s.report.couplings;
    // kappa = 1, m_sq = 2 ((1 - 2 lambda_h) / (2 hopping) - d), lambda = lambda_h / (4 hopping^2).
    assert_eq!(c.kappa, 1.0);
    assert!(
        (c.m_sq - 2.0 * (0.0 / 0.4 - 1.0)).abs() < 1e-12,
        "m_sq {}",
        c.m_sq
    );
    assert!((c.lambda - 0.5 / 0.16).abs() < 1e-12, "lambda {}", c.lambda);
}

/// A run resumed from its checkpoint (a hopping-parametrised one, whose saved config must not
/// bring back the default standard couplings) continues the curve of an uninterrupted run.
#[test]
fn resuming_continues_the_same_curve() {
    let dir = scratch("resume");
    let sets = |epochs: usize| -> Vec<String> {
        [
            "theory.lattice=[4, 4]",
            "theory.parametrisation=\"hopping\"",
            "theory.hopping=0.15",
            "theory.lambda_h=1.1",
            "training.steps_per_epoch=10",
            "run.validation_size=256",
            "run.mcmc_samples=256",
            "hmc.trajectories=100",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("training.epochs={epochs}")])
        .collect()
    };
    let run = |sets: Vec<String>, run_dir: Option<PathBuf>, resume: Option<PathBuf>| {
        app9::train(&TrainOptions {
            sets,
            run_dir,
            resume,
            tracking_dir: Some(dir.join("mlruns")),
            ..Default::default()
        })
        .unwrap()
    };
    let straight = run(sets(3), Some(dir.join("straight")), None);
    run(sets(1), Some(dir.join("split")), None);
    let resumed = run(
        vec!["training.epochs=3".into()],
        None,
        Some(dir.join("split")),
    );
    let curve = |s: &TrainSummary| -> Vec<f64> {
        s.report.run.history.iter().map(|e| e.val_loss).collect()
    };
    assert_eq!(curve(&resumed).len(), 3);
    assert_eq!(
        curve(&straight),
        curve(&resumed),
        "validation curves differ"
    );
    assert_eq!(straight.report.weights.log_z, resumed.report.weights.log_z);
    let _ = std::fs::remove_dir_all(&dir);
}
