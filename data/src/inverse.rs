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

use std::f64::consts::PI;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

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

fn normal(rng: &mut dyn rand::RngCore) -> f64 {
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

/// Ardizzone et al.'s planar robot arm: a rail offset `x1 ~ N(0, 1/4^2)` and three joint
/// angles `x2, x3, x4 ~ N(0, 1/2^2)`, segments of 0.5, 0.5 and 1; `y` is the end point.
#[derive(Clone, Copy, Debug, Default)]
pub struct RobotArm;

impl RobotArm {
    /// Segment lengths.
    pub const LENGTHS: [f64; 3] = [0.5, 0.5, 1.0];
    /// Prior standard deviations of the four parameters.
    pub const PRIOR_STD: [f64; 4] = [0.25, 0.5, 0.5, 0.5];

    /// The joints of the arm, from the rail to the end point: 4 `(horizontal, vertical)`
    /// points.
    pub fn joints(x: &[f64]) -> [(f64, f64); 4] {
        let mut p = (0.0, x[0]);
        let mut out = [p; 4];
        let mut angle = 0.0;
        for (i, l) in Self::LENGTHS.iter().enumerate() {
            angle += x[i + 1];
            p = (p.0 + l * angle.cos(), p.1 + l * angle.sin());
            out[i + 1] = p;
        }
        out
    }
}

impl Simulator for RobotArm {
    fn x_names(&self) -> Vec<String> {
        ["rail", "angle1", "angle2", "angle3"]
            .map(String::from)
            .to_vec()
    }

    fn y_names(&self) -> Vec<String> {
        ["end_horizontal", "end_vertical"]
            .map(String::from)
            .to_vec()
    }

    fn sample_prior(&self, rng: &mut dyn rand::RngCore) -> Vec<f64> {
        Self::PRIOR_STD.iter().map(|s| s * normal(rng)).collect()
    }

    fn simulate(&self, x: &[f64]) -> Vec<f64> {
        let end = Self::joints(x)[3];
        vec![end.0, end.1]
    }
}

/// Newton's constant, m^3 kg^-1 s^-2.
pub const GRAVITATIONAL_CONSTANT: f64 = 6.674_30e-11;
/// m/s^2 per mGal.
pub const MGAL: f64 = 1e-5;

/// The vertical attraction, in m/s^2 (positive down), at the surface point `station` of a 2-D
/// body (infinite along the valley) of density contrast `density` that fills the ground from
/// the surface down to the depth `depth(u)` at horizontal position `u`, for `u` in
/// `[left, right]`, integrated over `columns` vertical columns.
///
/// A column from `u1` to `u2`, from the surface to depth `h`, attracts a station at `s` with
/// `G rho [F(u2 - s, h) - F(u1 - s, h)]`, `F(u, h) = u ln(1 + h^2/u^2) + 2 h atan(u/h)`: the
/// integral of `2 G rho z / (u^2 + z^2)` over the column.
pub fn gravity_of_fill(
    depth: impl Fn(f64) -> f64,
    left: f64,
    right: f64,
    columns: usize,
    density: f64,
    station: f64,
) -> f64 {
    fn f(u: f64, h: f64) -> f64 {
        if h <= 0.0 {
            return 0.0;
        }
        let log_term = if u == 0.0 {
            0.0
        } else {
            u * (h * h / (u * u)).ln_1p()
        };
        log_term + 2.0 * h * (u / h).atan()
    }
    let width = (right - left) / columns as f64;
    (0..columns)
        .map(|i| {
            let (u1, u2) = (left + i as f64 * width, left + (i + 1) as f64 * width);
            let h = depth(0.5 * (u1 + u2)).max(0.0);
            f(u2 - station, h) - f(u1 - station, h)
        })
        .sum::<f64>()
        * GRAVITATIONAL_CONSTANT
        * density
}

/// A glacier valley's cross-section: the ice thickness at `nodes` points evenly spaced inside
/// a valley of `width` metres (zero at both walls, linear in between) is the unknown; `y` is
/// the gravity anomaly of the ice (density contrast ice minus rock) in mGal at `stations`
/// surface points. The prior is a U-shaped mean profile with correlated Gaussian
/// perturbations.
#[derive(Clone, Debug)]
pub struct Glacier {
    /// Valley width, m.
    pub width: f64,
    /// Unknown thicknesses across the valley.
    pub nodes: usize,
    /// Station positions, m from the valley's centre.
    pub stations: Vec<f64>,
    /// Greatest mean thickness (at the centre), m.
    pub mean_depth: f64,
    /// Prior standard deviation of each thickness, m.
    pub depth_std: f64,
    /// Correlation length of the perturbations, m.
    pub correlation: f64,
    /// Density of ice minus density of rock, kg/m^3.
    pub density_contrast: f64,
    /// Columns of the forward integral.
    pub columns: usize,
    prior_factor: Vec<f64>,
}

impl Default for Glacier {
    fn default() -> Self {
        Self::new(2000.0, 6, vec![-600.0, -200.0, 200.0, 600.0])
    }
}

impl Glacier {
    /// A valley of `width` metres with `nodes` unknown thicknesses and stations at `stations`
    /// (metres from the centre); 400 m deepest mean thickness, 60 m prior spread correlated
    /// over 500 m, ice 917 kg/m^3 in rock of 2670.
    pub fn new(width: f64, nodes: usize, stations: Vec<f64>) -> Self {
        let mut g = Self {
            width,
            nodes,
            stations,
            mean_depth: 400.0,
            depth_std: 60.0,
            correlation: 500.0,
            density_contrast: 917.0 - 2670.0,
            columns: 48,
            prior_factor: Vec::new(),
        };
        g.prior_factor = g.cholesky();
        g
    }

    /// Horizontal positions of the nodes, m from the centre.
    pub fn node_positions(&self) -> Vec<f64> {
        let step = self.width / (self.nodes + 1) as f64;
        (1..=self.nodes)
            .map(|k| -0.5 * self.width + k as f64 * step)
            .collect()
    }

    /// The prior mean thickness at each node: `mean_depth sqrt(1 - (2u/width)^2)`.
    pub fn mean_profile(&self) -> Vec<f64> {
        self.node_positions()
            .iter()
            .map(|u| {
                let r = 2.0 * u / self.width;
                self.mean_depth * (1.0 - r * r).max(0.0).sqrt()
            })
            .collect()
    }

    /// The thickness at `u` of the piecewise-linear profile through the node thicknesses,
    /// zero at the walls.
    pub fn depth_at(&self, thickness: &[f64], u: f64) -> f64 {
        let half = 0.5 * self.width;
        if u <= -half || u >= half {
            return 0.0;
        }
        let step = self.width / (self.nodes + 1) as f64;
        let t = (u + half) / step;
        let k = (t.floor() as usize).min(self.nodes);
        let at = |i: usize| {
            if i == 0 || i > self.nodes {
                0.0
            } else {
                thickness[i - 1]
            }
        };
        let frac = t - k as f64;
        at(k) * (1.0 - frac) + at(k + 1) * frac
    }

    /// Lower Cholesky factor of the prior covariance, row-major.
    fn cholesky(&self) -> Vec<f64> {
        let pos = self.node_positions();
        let n = self.nodes;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let d = (pos[i] - pos[j]) / self.correlation;
                a[i * n + j] =
                    self.depth_std.powi(2) * (-0.5 * d * d).exp() + if i == j { 1e-9 } else { 0.0 };
            }
        }
        let mut l = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
                l[i * n + j] = if i == j {
                    (a[i * n + i] - s).sqrt()
                } else {
                    (a[i * n + j] - s) / l[j * n + j]
                };
            }
        }
        l
    }
}

impl Simulator for Glacier {
    fn x_names(&self) -> Vec<String> {
        self.node_positions()
            .iter()
            .map(|u| format!("thickness_at_{u:.0}m"))
            .collect()
    }

    fn y_names(&self) -> Vec<String> {
        self.stations
            .iter()
            .map(|s| format!("gravity_at_{s:.0}m"))
            .collect()
    }

    fn sample_prior(&self, rng: &mut dyn rand::RngCore) -> Vec<f64> {
        let n = self.nodes;
        let xi: Vec<f64> = (0..n).map(|_| normal(rng)).collect();
        self.mean_profile()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m + (0..=i)
                    .map(|k| self.prior_factor[i * n + k] * xi[k])
                    .sum::<f64>()
            })
            .collect()
    }

    fn simulate(&self, x: &[f64]) -> Vec<f64> {
        let half = 0.5 * self.width;
        self.stations
            .iter()
            .map(|&s| {
                gravity_of_fill(
                    |u| self.depth_at(x, u),
                    -half,
                    half,
                    self.columns,
                    self.density_contrast,
                    s,
                ) / MGAL
            })
            .collect()
    }
}

/// The Ricker wavelet of peak frequency `f` Hz at time `t` s: 1 at `t = 0`.
pub fn ricker(t: f64, f: f64) -> f64 {
    let a = (PI * f * t).powi(2);
    (1.0 - 2.0 * a) * (-a).exp()
}

/// A 1-D layered earth at normal incidence: layers of velocity `v1, v2` and thicknesses `h1,
/// h2` over a half-space of velocity `v3` (constant density); the seismogram is the sum of
/// the reflections (coefficient `(v_{k+1} - v_k) / (v_{k+1} + v_k)` at two-way time
/// `sum 2 h_i / v_i`) convolved with a Ricker wavelet, sampled at `samples` times from
/// `start` every `dt` seconds, with Gaussian noise.
#[derive(Clone, Debug)]
pub struct Seismic {
    /// Prior means of `v1, v2, v3` (m/s) and `h1, h2` (m).
    pub prior_mean: [f64; 5],
    /// Their prior standard deviations.
    pub prior_std: [f64; 5],
    /// Peak frequency of the wavelet, Hz.
    pub frequency: f64,
    /// Time of the first sample, s.
    pub start: f64,
    /// Sampling interval, s.
    pub dt: f64,
    /// Samples per trace.
    pub samples: usize,
    /// Noise standard deviation per sample.
    pub noise: f64,
}

impl Default for Seismic {
    fn default() -> Self {
        Self {
            prior_mean: [1500.0, 2200.0, 3000.0, 300.0, 400.0],
            prior_std: [150.0, 200.0, 300.0, 50.0, 60.0],
            frequency: 8.0,
            start: 0.2,
            dt: 0.04,
            samples: 24,
            noise: 0.05,
        }
    }
}

impl Seismic {
    /// Two-way times and reflection coefficients of the two interfaces.
    pub fn reflections(x: &[f64]) -> [(f64, f64); 2] {
        let (v1, v2, v3, h1, h2) = (x[0], x[1], x[2], x[3], x[4]);
        let t1 = 2.0 * h1 / v1;
        let t2 = t1 + 2.0 * h2 / v2;
        let r = |a: f64, b: f64| (b - a) / (b + a);
        [(t1, r(v1, v2)), (t2, r(v2, v3))]
    }

    /// Sample times, s.
    pub fn times(&self) -> Vec<f64> {
        (0..self.samples)
            .map(|i| self.start + i as f64 * self.dt)
            .collect()
    }
}

impl Simulator for Seismic {
    fn x_names(&self) -> Vec<String> {
        ["v1", "v2", "v3", "h1", "h2"].map(String::from).to_vec()
    }

    fn y_names(&self) -> Vec<String> {
        self.times()
            .iter()
            .map(|t| format!("trace_{t:.3}s"))
            .collect()
    }

    fn sample_prior(&self, rng: &mut dyn rand::RngCore) -> Vec<f64> {
        self.prior_mean
            .iter()
            .zip(&self.prior_std)
            .map(|(m, s)| m + s * normal(rng))
            .collect()
    }

    fn simulate(&self, x: &[f64]) -> Vec<f64> {
        // Velocities and thicknesses far in the prior's tails are kept physical.
        let x: Vec<f64> = x.iter().map(|v| v.max(1.0)).collect();
        let refl = Self::reflections(&x);
        self.times()
            .iter()
            .map(|t| {
                refl.iter()
                    .map(|(tk, r)| r * ricker(t - tk, self.frequency))
                    .sum()
            })
            .collect()
    }

    fn noise_std(&self) -> f64 {
        self.noise
    }
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
