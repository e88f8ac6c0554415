//! The Metropolis chain's proposals: the defensive base (its density, its draws, and what it is
//! for, weights that stay bounded where the flow is too narrow) and the symmetrised flow (its
//! density, and both vacua from a flow that learnt one).

use burn::prelude::*;
use flowcore::Flow;
use flowcore::lattice::{
    Phi4, Phi4Couplings, Proposal, ReverseKl, base_draws, effective_sample_size, log_partition,
};
use flowcore::testing::perturb_params;

use super::lattice::site_spline_only;

fn log_normal(r2: f64, sites: usize, scale: f64) -> f64 {
    let d = sites as f64;
    -0.5 * r2 / (scale * scale) - d * scale.ln() - 0.5 * d * (2.0 * std::f64::consts::PI).ln()
}

#[test]
fn the_defensive_base_draws_its_mixture_and_corrects_by_its_density() {
    let device = Device::flex();
    let (sites, n) = (6, 20000);
    // The plain base is the flow's own: the same draws, no correction.
    let plain = Proposal::default();
    let (z, c) = plain.base_draws(50, sites, 4, &device);
    let direct = base_draws(50, sites, 4, &device);
    assert_eq!(
        z.into_data().try_to_vec::<f32>().unwrap(),
        direct.into_data().try_to_vec::<f32>().unwrap()
    );
    assert!(c.iter().all(|&v| v == 0.0));

    let base = Proposal::new(0.25, 2.0, false).unwrap();
    let (z, correction) = base.base_draws(n, sites, 4, &device);
    let values = z.into_data().try_to_vec::<f32>().unwrap();
    let mut wide = 0;
    for (row, &c) in values.chunks(sites).zip(&correction) {
        let r2: f64 = row.iter().map(|&v| f64::from(v).powi(2)).sum();
        // log N(z; 0, 1) - log [(1 - f) N(z; 0, 1) + f N(z; 0, s^2)], written out.
        let mixture = (0.75 * log_normal(r2, sites, 1.0).exp()
            + 0.25 * log_normal(r2, sites, 2.0).exp())
        .ln();
        let expected = log_normal(r2, sites, 1.0) - mixture;
        assert!((c - expected).abs() < 1e-9, "{c} against {expected}");
        // A row of 6 N(0, 4) values has |z|^2 > 15 with probability 0.66, one of N(0, 1) 0.02.
        wide += usize::from(r2 > 15.0);
    }
    let expected = n as f64 * (0.25 * 0.659 + 0.75 * 0.020);
    assert!(
        (wide as f64 - expected).abs() < 5.0 * expected.sqrt(),
        "{wide} wide rows, expected {expected:.0}"
    );
    // The same seed draws the same rows.
    let (again, _) = base.base_draws(n, sites, 4, &device);
    assert_eq!(values, again.into_data().try_to_vec::<f32>().unwrap());

    for (f, s, what) in [
        (1.0, 2.0, "fraction"),
        (-0.1, 2.0, "fraction"),
        (f64::NAN, 2.0, "fraction"),
        (0.2, 0.0, "scale"),
        (0.2, f64::INFINITY, "scale"),
    ] {
        let err = Proposal::new(f, s, false).unwrap_err();
        assert!(err.contains(what), "({f}, {s}): {err}");
    }
}

#[test]
fn a_wide_base_bounds_the_weights_of_a_flow_narrower_than_its_target() {
    // A flow that is the identity (N(0, 1) per site) against a Gaussian action of variance 4
    // per site: w ~ exp(3 phi^2 / 8) has no second moment under N(0, 1), so the plain
    // proposals' ESS collapses and their log Z falls short; the wide base keeps w bounded.
    let device = Device::flex();
    let sites = 4;
    let m_sq = 0.25;
    let action = Phi4::new(
        &[sites],
        Phi4Couplings {
            kappa: 0.0,
            m_sq,
            lambda: 0.0,
        },
    )
    .unwrap();
    let exact = 0.5 * sites as f64 * (2.0 * std::f64::consts::PI / m_sq).ln();
    let objective = ReverseKl::new(action);
    let flow = Flow::seeded(site_spline_only(sites, 8, true), 0, &device).unwrap();
    let weights = |proposal: Proposal| proposal.draw(&flow, &objective, 65536, 11, &device).1;
    let plain = weights(Proposal::default());
    let wide = weights(Proposal::new(0.3, 2.5, false).unwrap());
    let (ess_plain, ess_wide) = (effective_sample_size(&plain), effective_sample_size(&wide));
    let (log_z, err) = log_partition(&wide);
    eprintln!(
        "ESS plain {ess_plain:.4}, wide {ess_wide:.4}; log Z {log_z:.4} +- {err:.4}, plain {:.4}, exact {exact:.4}",
        log_partition(&plain).0
    );
    assert!(ess_wide > 0.3, "ESS with the wide base {ess_wide}");
    assert!(ess_wide > 3.0 * ess_plain, "{ess_wide} against {ess_plain}");
    assert!(
        (log_z - exact).abs() < 4.0 * err,
        "log Z {log_z} +- {err}, exact {exact}"
    );
}

#[test]
fn the_symmetrised_proposal_has_the_density_of_its_mixture_and_both_vacua() {
    // A single-site double well (kappa 0, m_sq -4, lambda 1: vacua at +-sqrt(2), a barrier of
    // 4) and a flow of one non-symmetric spline, perturbed until it is lopsided.
    let device = Device::flex();
    let action = Phi4::new(
        &[1],
        Phi4Couplings {
            kappa: 0.0,
            m_sq: -4.0,
            lambda: 1.0,
        },
    )
    .unwrap();
    let objective = ReverseKl::new(action);
    let flow = Flow::seeded(site_spline_only(1, 8, false), 0, &device).unwrap();
    let flow = perturb_params(flow, 1.0, 3);
    let n = 4096;
    let symmetric = Proposal::new(0.0, 1.0, true).unwrap();
    let (phi, log_w) = symmetric.draw(&flow, &objective, n, 5, &device);
    let values = phi.clone().into_data().try_to_vec::<f32>().unwrap();
    // log w = -S - log((q(phi) + q(-phi)) / 2), with q from the flow's own density.
    let q = |x: Tensor<2>| {
        flow.log_prob(x, None)
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap()
    };
    let (q_plus, q_minus) = (q(phi.clone()), q(phi.neg()));
    let mut negative = 0;
    for i in 0..n {
        let x = f64::from(values[i]);
        let s = -2.0 * x * x + x.powi(4);
        let mixture = ((q_plus[i].exp() + q_minus[i].exp()) / 2.0).ln();
        let expected = -s - mixture;
        assert!(
            (log_w[i] - expected).abs() < 1e-3,
            "phi {x}: log w {} against {expected}",
            log_w[i]
        );
        negative += usize::from(x < 0.0);
    }
    // Each sign half the time, whatever the flow's own balance.
    let plain = Proposal::default().draw(&flow, &objective, n, 5, &device).0;
    let plain_negative = plain
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .filter(|&&v| v < 0.0)
        .count();
    eprintln!("negative: {negative} of {n} symmetrised, {plain_negative} plain");
    assert!(
        (negative as f64 - n as f64 / 2.0).abs() < 4.0 * (n as f64 / 4.0).sqrt(),
        "{negative} of {n} negative"
    );
    // log Z by quadrature against the symmetrised estimate.
    let exact: f64 = (-60000..60000)
        .map(|i| {
            let p = i as f64 * 1e-4;
            (2.0 * p * p - p.powi(4)).exp() * 1e-4
        })
        .sum::<f64>()
        .ln();
    let (log_z, err) = log_partition(&symmetric.draw(&flow, &objective, 65536, 6, &device).1);
    assert!(
        (log_z - exact).abs() < 4.0 * err.max(1e-3),
        "log Z {log_z} +- {err}, quadrature {exact}"
    );
}
