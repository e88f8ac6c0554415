//! The forward simulators of applications 5-7 against hand-computed cases, and the reference
//! posterior against a case with a known answer.

use std::f64::consts::PI;

use flowdata::batch_rng;
use flowdata::inverse::{
    GRAVITATIONAL_CONSTANT, Glacier, JointSample, MGAL, RobotArm, Seismic, Simulator,
    gravity_of_fill, rejection_posterior, ricker,
};

#[test]
fn a_straight_arm_reaches_its_full_length() {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    let y = RobotArm.simulate(&[0.0, 0.0, 0.0, 0.0]);
    assert!(close(y[0], 2.0) && close(y[1], 0.0), "{y:?}");
    // Raised on the rail by 0.3, pointing straight up: the end is 2 above that.
    let y = RobotArm.simulate(&[0.3, PI / 2.0, 0.0, 0.0]);
    assert!(close(y[0], 0.0) && close(y[1], 2.3), "{y:?}");
    // A right angle at the second joint: 0.5 along, then 1.5 up.
    let y = RobotArm.simulate(&[0.0, 0.0, PI / 2.0, 0.0]);
    assert!(close(y[0], 0.5) && close(y[1], 1.5), "{y:?}");
    assert_eq!(RobotArm::joints(&[0.0; 4])[1], (0.5, 0.0));
}

#[test]
fn a_flat_glacier_bed_attracts_like_a_bouguer_slab() {
    // A slab of thickness h and density contrast rho, wide beyond the station's reach,
    // gives 2 pi G rho h.
    let (h, rho) = (250.0, -1753.0);
    let slab = 2.0 * PI * GRAVITATIONAL_CONSTANT * rho * h;
    let g = gravity_of_fill(|_| h, -1e6, 1e6, 20_000, rho, 0.0);
    assert!((g / slab - 1.0).abs() < 1e-3, "{g} vs slab {slab}");
    // Half the slab (one side of the station) gives half.
    let half = gravity_of_fill(|_| h, 0.0, 1e6, 10_000, rho, 0.0);
    assert!((half / slab - 0.5).abs() < 1e-3, "{half} vs {}", slab / 2.0);
    // Ice is lighter than rock: a negative anomaly, strongest over the deepest ice, and a
    // symmetric valley gives symmetric stations.
    let glacier = Glacier::default();
    let mean = glacier.mean_profile();
    let y = glacier.simulate(&mean);
    assert!(y.iter().all(|v| *v < 0.0), "{y:?}");
    assert!(
        (y[0] - y[3]).abs() < 1e-9 && (y[1] - y[2]).abs() < 1e-9,
        "{y:?}"
    );
    assert!(y[1] < y[0], "inner stations see more ice: {y:?}");
    // Tens of mGal for 400 m of ice: the slab of that thickness gives 2 pi G rho h / MGAL.
    let slab_mgal = 2.0 * PI * GRAVITATIONAL_CONSTANT * rho * 400.0 / MGAL;
    assert!(
        y[1] > slab_mgal && y[1] < 0.3 * slab_mgal,
        "{y:?} mGal, slab {slab_mgal}"
    );
    let deeper: Vec<f64> = mean.iter().map(|h| h + 50.0).collect();
    assert!(glacier.simulate(&deeper)[1] < y[1]);
}

#[test]
fn a_single_reflector_puts_its_coefficient_at_its_time() {
    let s = Seismic::default();
    // v2 = v3: only the first interface reflects. Its two-way time 2 h1 / v1 = 0.4 s is a
    // sample time (0.2 + 5 * 0.04).
    let x = [1500.0, 2500.0, 2500.0, 300.0, 400.0];
    let [(t1, r1), (_, r2)] = Seismic::reflections(&x);
    assert!((t1 - 0.4).abs() < 1e-12 && (r1 - 0.25).abs() < 1e-12 && r2 == 0.0);
    let trace = s.simulate(&x);
    assert!((trace[5] - 0.25).abs() < 1e-12, "{}", trace[5]);
    // Symmetric about the reflection, quiet far from it.
    assert!(
        (trace[4] - trace[6]).abs() < 1e-12 && (trace[4] - 0.25 * ricker(0.04, 8.0)).abs() < 1e-12
    );
    assert!(trace[20].abs() < 1e-6, "{}", trace[20]);
    assert_eq!(ricker(0.0, 8.0), 1.0);
    assert!(
        ricker(1.0 / (PI * 8.0) * 0.5f64.sqrt(), 8.0).abs() < 1e-12,
        "zero crossing"
    );
}

/// y = x + sigma eps with x ~ N(0, 1): the posterior is N(y / (1 + s2), s2 / (1 + s2)).
struct Linear;
impl Simulator for Linear {
    fn x_names(&self) -> Vec<String> {
        vec!["x".into()]
    }
    fn y_names(&self) -> Vec<String> {
        vec!["y".into()]
    }
    fn sample_prior(&self, rng: &mut dyn rand::RngCore) -> Vec<f64> {
        use rand_distr::Distribution;
        vec![rand_distr::StandardNormal.sample(rng)]
    }
    fn simulate(&self, x: &[f64]) -> Vec<f64> {
        x.to_vec()
    }
    fn noise_std(&self) -> f64 {
        0.5
    }
}

#[test]
fn rejection_sampling_finds_a_known_posterior() {
    let joint = JointSample::draw(&Linear, 200_000, 1);
    assert_eq!(joint.len(), 200_000);
    let y = 1.2;
    let post = rejection_posterior(&Linear, &joint, &[y], &[1.0], 100_000, &mut batch_rng(2, 0));
    let n = post.x.len() as f64;
    assert!(n > 10_000.0, "{} accepted", post.accepted);
    let mean = post.x.iter().sum::<f64>() / n;
    let var = post.x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let s2 = 0.25;
    assert!((mean - y / (1.0 + s2)).abs() < 0.02, "mean {mean}");
    assert!((var - s2 / (1.0 + s2)).abs() < 0.01, "var {var}");
    // The same draws, whatever the thread count: seeded per chunk.
    let again = JointSample::draw(&Linear, 200_000, 1);
    assert_eq!(again.x, joint.x);
}

#[test]
fn without_noise_the_nearest_draws_are_kept() {
    let joint = JointSample::draw(&RobotArm, 100_000, 3);
    let y = RobotArm.simulate(&[0.1, 0.2, -0.3, 0.4]);
    let post = rejection_posterior(
        &RobotArm,
        &joint,
        &y,
        &[1.0, 1.0],
        200,
        &mut batch_rng(4, 0),
    );
    assert_eq!(post.accepted, 200);
    let tol = post.tolerance.unwrap();
    assert!(tol > 0.0 && tol < 0.2, "tolerance {tol}");
    for x in post.x.chunks(4) {
        let f = RobotArm.simulate(x);
        let d = ((f[0] - y[0]).powi(2) + (f[1] - y[1]).powi(2)).sqrt();
        assert!(d <= tol + 1e-12, "{d} > {tol}");
    }
}
