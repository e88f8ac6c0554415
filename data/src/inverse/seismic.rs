//! A layered earth from a noisy normal-incidence seismogram (application 7).

use std::f64::consts::PI;

use super::{Simulator, normal};
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
