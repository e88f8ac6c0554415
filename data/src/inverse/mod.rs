//! Forward simulators of the inverse problems (applications 5, 6 and 7): a prior over
//! parameters `x`, a deterministic forward model `y = F(x)`, and optional Gaussian measurement
//! noise `y = F(x) + sigma eps`. Everything is in the problem's own units, f64, seeded.
//!
//! - [`RobotArm`]: the planar arm of Ardizzone et al. 2019 (ill-conditioned: 4 parameters, a
//!   2-D end point).
//! - [`Glacier`]: the bedrock of a glacier valley from the gravity anomaly of its ice at a few
//!   surface stations (ill-posed, no noise).
//! - [`Seismic`]: a layered velocity model from a noisy normal-incidence seismogram (ill-posed,
//!   with noise).

mod glacier;
mod robot_arm;
mod seismic;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

pub use glacier::{GRAVITATIONAL_CONSTANT, Glacier, MGAL, gravity_of_fill};
pub use robot_arm::RobotArm;
pub use seismic::{Seismic, ricker};

/// A prior, a forward model and its noise.
pub trait Simulator: Send + Sync {
    /// Parameter names, one per `x` column.
    fn x_names(&self) -> Vec<String>;
    /// Observation names, one per `y` column.
    fn y_names(&self) -> Vec<String>;
    /// One draw of `x` from the prior.
    fn sample_prior(&self, rng: &mut dyn rand::RngCore) -> Vec<f64>;
    /// `F(x)` without noise.
    fn simulate(&self, x: &[f64]) -> Vec<f64>;
    /// Standard deviation of the measurement noise on each `y` (0: none).
    fn noise_std(&self) -> f64 {
        0.0
    }
    /// Parameters per sample.
    fn x_dim(&self) -> usize {
        self.x_names().len()
    }
    /// Observations per sample.
    fn y_dim(&self) -> usize {
        self.y_names().len()
    }
}

pub(crate) fn normal(rng: &mut dyn rand::RngCore) -> f64 {
    StandardNormal.sample(rng)
}

/// A draw from the joint: parameters `x`, the noise realisation `eps` (`y_dim` standard
/// normal values, empty without noise), and `y = F(x) + sigma eps`.
pub struct Draw {
    /// Parameters.
    pub x: Vec<f64>,
    /// Standard-normal noise, scaled by the simulator's `noise_std` in `y`.
    pub eps: Vec<f64>,
    /// The observation.
    pub y: Vec<f64>,
}

/// One draw from the joint distribution of `sim`.
pub fn draw(sim: &dyn Simulator, rng: &mut dyn rand::RngCore) -> Draw {
    let x = sim.sample_prior(rng);
    let mut y = sim.simulate(&x);
    let sigma = sim.noise_std();
    let eps: Vec<f64> = if sigma > 0.0 {
        y.iter_mut()
            .map(|v| {
                let e = normal(rng);
                *v += sigma * e;
                e
            })
            .collect()
    } else {
        Vec::new()
    };
    Draw { x, eps, y }
}

/// Joint draws `(x, F(x), y)` from a simulator, row-major: made once and shared by the
/// reference posteriors of several observations.
pub struct JointSample {
    /// Parameters, `[n, x_dim]`.
    pub x: Vec<f64>,
    /// `F(x)` without noise, `[n, y_dim]`.
    pub y_clean: Vec<f64>,
    /// Observations `F(x) + sigma eps`, `[n, y_dim]`.
    pub y: Vec<f64>,
    /// Parameters per draw.
    pub x_dim: usize,
    /// Observations per draw.
    pub y_dim: usize,
}

impl JointSample {
    /// `n` joint draws from `seed`, simulated on rayon's threads in seeded chunks, so the
    /// result does not depend on the number of threads.
    pub fn draw(sim: &dyn Simulator, n: usize, seed: u64) -> Self {
        use rayon::prelude::*;
        const CHUNK: usize = 4096;
        let chunks: Vec<Vec<Draw>> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let mut rng = crate::batch_rng(seed, c as u64);
                (0..CHUNK.min(n - c * CHUNK))
                    .map(|_| draw(sim, &mut rng))
                    .collect()
            })
            .collect();
        let (x_dim, y_dim) = (sim.x_dim(), sim.y_dim());
        let sigma = sim.noise_std();
        let mut out = Self {
            x: Vec::with_capacity(n * x_dim),
            y_clean: Vec::with_capacity(n * y_dim),
            y: Vec::with_capacity(n * y_dim),
            x_dim,
            y_dim,
        };
        for d in chunks.into_iter().flatten() {
            out.x.extend(&d.x);
            out.y_clean.extend(
                d.y.iter()
                    .enumerate()
                    .map(|(i, v)| v - sigma * d.eps.get(i).copied().unwrap_or(0.0)),
            );
            out.y.extend(&d.y);
        }
        out
    }

    /// Draws in the sample.
    pub fn len(&self) -> usize {
        self.x.len() / self.x_dim.max(1)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// A reference posterior for one observation.
#[derive(Clone, Debug)]
pub struct ReferencePosterior {
    /// Accepted parameters, row-major.
    pub x: Vec<f64>,
    /// How many were accepted.
    pub accepted: usize,
    /// Without noise: the largest accepted distance, in units of `y_scale`.
    pub tolerance: Option<f64>,
}

/// A reference posterior `p(x | y_obs)` by rejection from the joint draws `joint`, for judging
/// learnt posteriors.
///
/// With measurement noise (`sim.noise_std() > 0`) it is rejection sampling proper: a draw is
/// accepted with probability `L(x) / L_max`, `L` the Gaussian likelihood of `y_obs` given
/// `F(x)`, `L_max` the largest over the draws; at most `keep` are kept. Without noise the
/// posterior lives on the set `F(x) = y_obs`, and the `keep` draws whose `F(x)` lie nearest
/// `y_obs` (distance in units of `y_scale` per observation) are kept: approximate Bayesian
/// computation with the tolerance returned.
pub fn rejection_posterior(
    sim: &dyn Simulator,
    joint: &JointSample,
    y_obs: &[f64],
    y_scale: &[f64],
    keep: usize,
    rng: &mut dyn rand::RngCore,
) -> ReferencePosterior {
    let (dx, dy) = (joint.x_dim, joint.y_dim);
    let n = joint.len();
    let row = |i: usize| &joint.x[i * dx..(i + 1) * dx];
    let sq_dist = |i: usize, scale: &dyn Fn(usize) -> f64| -> f64 {
        joint.y_clean[i * dy..(i + 1) * dy]
            .iter()
            .zip(y_obs)
            .enumerate()
            .map(|(k, (a, b))| ((a - b) / scale(k)).powi(2))
            .sum()
    };
    let sigma = sim.noise_std();
    if sigma > 0.0 {
        let ll: Vec<f64> = (0..n).map(|i| -0.5 * sq_dist(i, &|_| sigma)).collect();
        let best = ll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut x = Vec::new();
        let mut accepted = 0;
        for (i, l) in ll.iter().enumerate() {
            let u: f64 = rng.random();
            if u < (l - best).exp() {
                accepted += 1;
                if accepted <= keep {
                    x.extend_from_slice(row(i));
                }
            }
        }
        return ReferencePosterior {
            x,
            accepted,
            tolerance: None,
        };
    }
    let mut order: Vec<(f64, usize)> = (0..n).map(|i| (sq_dist(i, &|k| y_scale[k]), i)).collect();
    let keep = keep.min(n);
    order.select_nth_unstable_by(keep.saturating_sub(1), |a, b| a.0.total_cmp(&b.0));
    let kept = &order[..keep];
    ReferencePosterior {
        x: kept.iter().flat_map(|&(_, i)| row(i).to_vec()).collect(),
        accepted: keep,
        tolerance: kept.iter().map(|p| p.0.sqrt()).reduce(f64::max),
    }
}
