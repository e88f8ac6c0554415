//! Toy distributions of 2-D and 3-D points with known (or well estimated) entropy, the best
//! NLL any model can reach on them.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::DataError;

/// A toy distribution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Toy {
    /// Two interleaved half circles (scikit-learn's `make_moons`, angles drawn uniformly) with
    /// Gaussian noise.
    Moons {
        /// Noise standard deviation.
        noise: f64,
    },
    /// N([3, 5], I).
    Mvn,
    /// 8 Gaussians of sigma 1 on a circle of radius 14, all divided by 10.
    Gmm,
    /// A helix `(cos t, sin t, t / 2 pi)`, `t` in `[0, 4 pi)`, with Gaussian noise.
    Helix {
        /// Noise standard deviation.
        noise: f64,
    },
    /// 6 Gaussians of sigma 0.1 at the vertices of an octahedron of radius 1.
    Gmm3d,
}

impl Toy {
    /// Every dataset name, for messages.
    pub const NAMES: &'static str = "moons, mvn, gmm, helix, gmm3d";

    /// Dimension of the points.
    pub fn dim(&self) -> usize {
        match self {
            Self::Moons { .. } | Self::Mvn | Self::Gmm => 2,
            Self::Helix { .. } | Self::Gmm3d => 3,
        }
    }

    /// Differential entropy in nats where it is known: analytic for `mvn`, and for the
    /// mixtures, whose components barely overlap, `ln K + D/2 ln(2 pi e sigma^2)`; for `moons`
    /// with noise 0.1, the Monte Carlo estimate 1.008 of the roadmap.
    pub fn entropy(&self) -> Option<f64> {
        let gauss =
            |d: f64, sigma: f64| 0.5 * d * (2.0 * PI * std::f64::consts::E * sigma * sigma).ln();
        match *self {
            Self::Mvn => Some(gauss(2.0, 1.0)),
            Self::Gmm => Some(8f64.ln() + gauss(2.0, 0.1)),
            Self::Gmm3d => Some(6f64.ln() + gauss(3.0, 0.1)),
            Self::Moons { noise } if (noise - 0.1).abs() < 1e-12 => Some(1.008),
            _ => None,
        }
    }

    /// The true log-density at a point, where it has a closed form or a one-dimensional
    /// integral: `moons` is an equal mixture of the two arcs, each a uniform angle on
    /// `[0, pi]` blurred by the isotropic Gaussian noise, integrated over the angle by the
    /// midpoint rule (4096 nodes: the integrand varies over an angle of about `noise`).
    pub fn log_density(&self, point: &[f64]) -> Option<f64> {
        if point.len() != self.dim() {
            return None;
        }
        match *self {
            Self::Moons { noise } if noise > 0.0 => {
                const NODES: usize = 4096;
                let var = noise * noise;
                let norm = 1.0 / (2.0 * PI * var);
                let mut total = 0.0;
                for i in 0..NODES {
                    let t = (i as f64 + 0.5) * PI / NODES as f64;
                    for (cx, cy) in [(t.cos(), t.sin()), (1.0 - t.cos(), 0.5 - t.sin())] {
                        let d2 = (point[0] - cx).powi(2) + (point[1] - cy).powi(2);
                        total += (-d2 / (2.0 * var)).exp();
                    }
                }
                // Mean over nodes and arcs, each arc with probability 1/2.
                Some((norm * total / (2.0 * NODES as f64)).ln())
            }
            Self::Mvn => {
                let d2 = (point[0] - 3.0).powi(2) + (point[1] - 5.0).powi(2);
                Some(-d2 / 2.0 - (2.0 * PI).ln())
            }
            _ => None,
        }
    }

    /// The number of classes of a mixture's components (`moons`: which moon), for labelled
    /// points; `None` for the sets without classes.
    pub fn classes(&self) -> Option<usize> {
        match self {
            Self::Moons { .. } => Some(2),
            Self::Gmm => Some(8),
            Self::Gmm3d => Some(6),
            Self::Mvn | Self::Helix { .. } => None,
        }
    }

    /// The centre of class `k` of a mixture (`gmm`, `gmm3d`).
    pub fn class_centre(&self, k: usize) -> Option<Vec<f64>> {
        match self {
            Self::Gmm => {
                let a = 2.0 * PI * k as f64 / 8.0;
                Some(vec![1.4 * a.cos(), 1.4 * a.sin()])
            }
            Self::Gmm3d => {
                let mut c = vec![0.0; 3];
                c[k / 2] = if k.is_multiple_of(2) { 1.0 } else { -1.0 };
                Some(c)
            }
            _ => None,
        }
    }

    /// `n` points, row-major `[n, dim]`.
    pub fn sample<R: Rng>(&self, n: usize, rng: &mut R) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * self.dim());
        for _ in 0..n {
            self.draw(rng, &mut out);
        }
        out
    }

    /// `n` points with their class (see [`Toy::classes`]; 0 for sets without classes).
    pub fn sample_labelled<R: Rng>(&self, n: usize, rng: &mut R) -> (Vec<f32>, Vec<usize>) {
        let mut out = Vec::with_capacity(n * self.dim());
        let labels = (0..n).map(|_| self.draw(rng, &mut out)).collect();
        (out, labels)
    }

    /// One point appended to `out`; returns its class.
    fn draw<R: Rng>(&self, rng: &mut R, out: &mut Vec<f32>) -> usize {
        let normal = |rng: &mut R| -> f64 { StandardNormal.sample(rng) };
        match *self {
            Self::Moons { noise } => {
                let t = rng.random::<f64>() * PI;
                let upper = rng.random::<bool>();
                let (x, y) = if upper {
                    (t.cos(), t.sin())
                } else {
                    (1.0 - t.cos(), 0.5 - t.sin())
                };
                out.push((x + noise * normal(rng)) as f32);
                out.push((y + noise * normal(rng)) as f32);
                usize::from(!upper)
            }
            Self::Mvn => {
                out.push((3.0 + normal(rng)) as f32);
                out.push((5.0 + normal(rng)) as f32);
                0
            }
            Self::Gmm => {
                let k = rng.random_range(0..8);
                let a = 2.0 * PI * k as f64 / 8.0;
                out.push(((14.0 * a.cos() + normal(rng)) / 10.0) as f32);
                out.push(((14.0 * a.sin() + normal(rng)) / 10.0) as f32);
                k
            }
            Self::Helix { noise } => {
                let t = rng.random::<f64>() * 4.0 * PI;
                out.push((t.cos() + noise * normal(rng)) as f32);
                out.push((t.sin() + noise * normal(rng)) as f32);
                out.push((t / (2.0 * PI) + noise * normal(rng)) as f32);
                0
            }
            Self::Gmm3d => {
                let k = rng.random_range(0..6);
                let mut c = [0.0; 3];
                c[k / 2] = if k % 2 == 0 { 1.0 } else { -1.0 };
                for v in c {
                    out.push((v + 0.1 * normal(rng)) as f32);
                }
                k
            }
        }
    }
}

impl FromStr for Toy {
    type Err = DataError;

    /// `moons`, `moons:0.05` (noise), `mvn`, `gmm`, `helix`, `helix:0.1`, `gmm3d`.
    fn from_str(s: &str) -> Result<Self, DataError> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let noise = |default: f64| -> Result<f64, DataError> {
            match arg {
                None => Ok(default),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|v| *v >= 0.0 && v.is_finite())
                    .ok_or_else(|| {
                        DataError::Invalid(format!(
                            "dataset `{s}`: noise `{a}` is not a non-negative number"
                        ))
                    }),
            }
        };
        let toy = match name {
            "moons" => Self::Moons { noise: noise(0.1)? },
            "helix" => Self::Helix {
                noise: noise(0.05)?,
            },
            "mvn" | "gmm" | "gmm3d" if arg.is_some() => {
                return Err(DataError::Invalid(format!(
                    "dataset `{name}` takes no parameter, got `{s}`"
                )));
            }
            "mvn" => Self::Mvn,
            "gmm" => Self::Gmm,
            "gmm3d" => Self::Gmm3d,
            _ => {
                return Err(DataError::Invalid(format!(
                    "unknown dataset `{name}`; the toy datasets are {}",
                    Self::NAMES
                )));
            }
        };
        Ok(toy)
    }
}

impl fmt::Display for Toy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Moons { noise } => write!(f, "moons:{noise}"),
            Self::Mvn => f.write_str("mvn"),
            Self::Gmm => f.write_str("gmm"),
            Self::Helix { noise } => write!(f, "helix:{noise}"),
            Self::Gmm3d => f.write_str("gmm3d"),
        }
    }
}

#[cfg(test)]
mod density_tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_moons_density_integrates_to_one_and_gives_the_roadmaps_entropy() {
        let moons = Toy::Moons { noise: 0.1 };
        // The integral over a box holding all but a negligible tail of the mass.
        let (h, mut mass) = (0.02, 0.0);
        for i in 0..200 {
            for j in 0..125 {
                let p = [-1.5 + (i as f64 + 0.5) * h, -1.0 + (j as f64 + 0.5) * h];
                mass += moons.log_density(&p).unwrap().exp() * h * h;
            }
        }
        assert!(
            (mass - 1.0).abs() < 1e-3,
            "the density integrates to {mass}"
        );
        // -E log p over samples is the entropy the roadmap estimated as 1.008.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 5_000;
        let pts = moons.sample(n, &mut rng);
        let nll: f64 = pts
            .chunks(2)
            .map(|p| -moons.log_density(&[p[0] as f64, p[1] as f64]).unwrap())
            .sum::<f64>()
            / n as f64;
        // 3 standard errors of the mean of -log p over 5000 points (its std is about 0.8).
        assert!((nll - 1.008).abs() < 0.035, "entropy estimate {nll}");
    }

    #[test]
    fn the_gaussian_density_is_the_closed_form() {
        let lp = Toy::Mvn.log_density(&[3.0, 5.0]).unwrap();
        assert!((lp + (2.0 * PI).ln()).abs() < 1e-12);
        assert_eq!(Toy::Gmm.log_density(&[0.0, 0.0]), None);
        assert_eq!(Toy::Mvn.log_density(&[0.0]), None);
    }
}
