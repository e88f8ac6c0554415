//! Conditional generators: rows of a condition `c` and data `x` drawn from a known p(x | c), so
//! that a conditional flow can be checked against the truth (its density, the Bayes-optimal
//! guess of `c`, the conditional entropy).
//!
//! - `two_gaussians`: `c` is 0 or 1 (equal odds); `x ~ N((2c - 1, 0), I)` in 2-D.
//! - `gaussian_mean`: `c ~ U[-2, 2]^2`; `x ~ N(c, 0.5^2 I)`.
//! - `grid`, `grid:N:WIDTH`: `c` one of the N x N labels `{0..N-1}^2` (default 5 x 5), `x ~
//!   N(c, WIDTH^2 I)` (default 0.3); labels can be held out.
//! - `smearing`, `smearing:D`: a detector-like response. `c` has D generator-level values (10 by
//!   default), `x = mu(c) + sigma(c) * t` with `mu_i = c_i + 0.5 tanh(c_{i+1})`, a resolution
//!   `sigma_i = 0.2 + 0.1 |c_i|` and `t` multivariate Student-t (4 degrees of freedom, heavy
//!   tails) with neighbour correlation 0.5 (`R_ij = 0.5^|i-j|`), so log p(x | c) and the
//!   conditional entropy are closed forms.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{ChiSquared, Distribution, Normal, StandardNormal};

use crate::DataError;

/// Degrees of freedom of the smearing's Student-t noise.
const SMEARING_NU: f64 = 4.0;
/// Correlation of neighbouring components of the smearing noise.
const SMEARING_RHO: f64 = 0.5;
const GAUSSIAN_MEAN_SIGMA: f64 = 0.5;

/// A conditional generator.
#[derive(Clone, Debug, PartialEq)]
pub enum Conditional {
    /// Two unit Gaussians at `(-1, 0)` and `(1, 0)`, `c` the component.
    TwoGaussians,
    /// A 2-D Gaussian whose mean is the condition.
    GaussianMean,
    /// Labelled Gaussians on an `n x n` grid; `held_out` labels are never drawn.
    Grid {
        /// Labels per axis.
        n: usize,
        /// Standard deviation around each label.
        width: f64,
        /// Labels not drawn.
        held_out: Vec<[f64; 2]>,
    },
    /// The detector-smearing simulator with `dim` conditions and `dim` targets.
    Smearing {
        /// Conditions = targets.
        dim: usize,
    },
}

impl FromStr for Conditional {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        let bad = |why: &str| DataError::Invalid(format!("`{s}`: {why}"));
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let number = |i: usize, default: f64| -> Result<f64, DataError> {
            args.get(i).map_or(Ok(default), |a| {
                a.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| bad(&format!("`{a}` is not a positive number")))
            })
        };
        let generator = match name {
            "two_gaussians" if args.is_empty() => Self::TwoGaussians,
            "gaussian_mean" if args.is_empty() => Self::GaussianMean,
            "grid" if args.len() <= 2 => {
                let n = number(0, 5.0)?;
                if n.fract() != 0.0 || !(2.0..=100.0).contains(&n) {
                    return Err(bad("the grid needs 2 to 100 labels per axis"));
                }
                Self::Grid {
                    n: n as usize,
                    width: number(1, 0.3)?,
                    held_out: Vec::new(),
                }
            }
            "smearing" if args.len() <= 1 => {
                let d = number(0, 10.0)?;
                if d.fract() != 0.0 || !(2.0..=64.0).contains(&d) {
                    return Err(bad("the smearing simulator takes 2 to 64 dimensions"));
                }
                Self::Smearing { dim: d as usize }
            }
            _ => {
                return Err(bad(
                    "unknown generator; use two_gaussians, gaussian_mean, grid, grid:N:WIDTH, \
                     smearing or smearing:D",
                ));
            }
        };
        Ok(generator)
    }
}

impl fmt::Display for Conditional {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::TwoGaussians => write!(f, "two_gaussians"),
            Self::GaussianMean => write!(f, "gaussian_mean"),
            Self::Grid { n, width, .. } => write!(f, "grid:{n}:{width}"),
            Self::Smearing { dim } => write!(f, "smearing:{dim}"),
        }
    }
}

impl Conditional {
    /// Values of `c` per row.
    pub fn cond_dim(&self) -> usize {
        match self {
            Self::TwoGaussians => 1,
            Self::GaussianMean | Self::Grid { .. } => 2,
            Self::Smearing { dim } => *dim,
        }
    }

    /// Values of `x` per row.
    pub fn dim(&self) -> usize {
        match self {
            Self::TwoGaussians | Self::GaussianMean | Self::Grid { .. } => 2,
            Self::Smearing { dim } => *dim,
        }
    }

    /// The same grid with `labels` held out; an error for a label not on the grid or for
    /// another generator.
    pub fn holding_out(self, labels: &[Vec<f64>]) -> Result<Self, DataError> {
        if labels.is_empty() {
            return Ok(self);
        }
        let Self::Grid { n, width, .. } = self else {
            return Err(DataError::Invalid(format!(
                "`{self}` has no labels to hold out; held-out labels are for the grid"
            )));
        };
        let mut held_out = Vec::new();
        for l in labels {
            let on_grid = l.len() == 2
                && l.iter()
                    .all(|v| v.fract() == 0.0 && (0.0..n as f64).contains(v));
            if !on_grid {
                return Err(DataError::Invalid(format!(
                    "held-out label {l:?} is not one of the grid's labels (two integers from 0 \
                     to {})",
                    n - 1
                )));
            }
            held_out.push([l[0], l[1]]);
        }
        if held_out.len() >= n * n {
            return Err(DataError::Invalid(
                "every label of the grid is held out".into(),
            ));
        }
        Ok(Self::Grid { n, width, held_out })
    }

    /// The labels a discrete condition takes (`two_gaussians`: 0 and 1; the grid's labels,
    /// held-out ones included); `None` for a continuous one.
    pub fn candidates(&self) -> Option<Vec<Vec<f64>>> {
        match self {
            Self::TwoGaussians => Some(vec![vec![0.0], vec![1.0]]),
            Self::Grid { n, .. } => Some(
                (0..n * n)
                    .map(|k| vec![(k / n) as f64, (k % n) as f64])
                    .collect(),
            ),
            _ => None,
        }
    }

    /// `n` rows: conditions `[n, cond_dim]` and data `[n, dim]`, row-major.
    pub fn sample<R: Rng>(&self, n: usize, rng: &mut R) -> (Vec<f32>, Vec<f32>) {
        let mut c = Vec::with_capacity(n * self.cond_dim());
        let mut x = Vec::with_capacity(n * self.dim());
        for _ in 0..n {
            let row_c = self.draw_condition(rng);
            x.extend(self.sample_given(&row_c, rng).iter().map(|&v| v as f32));
            c.extend(row_c.iter().map(|&v| v as f32));
        }
        (c, x)
    }

    /// One condition from the generator's own distribution of them.
    fn draw_condition<R: Rng>(&self, rng: &mut R) -> Vec<f64> {
        match self {
            Self::TwoGaussians => vec![f64::from(rng.random_bool(0.5) as u8)],
            Self::GaussianMean => vec![rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0)],
            Self::Grid { n, held_out, .. } => loop {
                let label = [
                    rng.random_range(0..*n) as f64,
                    rng.random_range(0..*n) as f64,
                ];
                if !held_out.contains(&label) {
                    return label.to_vec();
                }
            },
            // Generator-level quantities of different kinds: signed (angles, positions) and
            // positive with a long tail (energies).
            Self::Smearing { dim } => (0..*dim)
                .map(|i| {
                    let g: f64 = rng.sample(StandardNormal);
                    if i % 2 == 0 { g } else { (0.5 * g).exp() }
                })
                .collect(),
        }
    }

    /// One `x` drawn from p(x | c).
    pub fn sample_given<R: Rng>(&self, c: &[f64], rng: &mut R) -> Vec<f64> {
        let gauss = |rng: &mut R, mean: f64, sd: f64| {
            Normal::new(mean, sd).expect("a finite sd").sample(rng)
        };
        match self {
            Self::TwoGaussians => vec![gauss(rng, 2.0 * c[0] - 1.0, 1.0), gauss(rng, 0.0, 1.0)],
            Self::GaussianMean => c
                .iter()
                .map(|&m| gauss(rng, m, GAUSSIAN_MEAN_SIGMA))
                .collect(),
            Self::Grid { width, .. } => c.iter().map(|&m| gauss(rng, m, *width)).collect(),
            Self::Smearing { dim } => {
                let chi = ChiSquared::new(SMEARING_NU).expect("positive degrees of freedom");
                let scale = (SMEARING_NU / chi.sample(rng)).sqrt();
                let rho = SMEARING_RHO;
                let mut t = 0.0;
                (0..*dim)
                    .map(|i| {
                        let g: f64 = rng.sample(StandardNormal);
                        t = if i == 0 {
                            g
                        } else {
                            rho * t + (1.0 - rho * rho).sqrt() * g
                        };
                        let (mu, sigma) = smearing_response(c, i);
                        mu + sigma * scale * t
                    })
                    .collect()
            }
        }
    }

    /// The true log p(x | c) in nats.
    pub fn log_density(&self, c: &[f64], x: &[f64]) -> f64 {
        let normal = |v: f64, mean: f64, sd: f64| {
            let u = (v - mean) / sd;
            -0.5 * u * u - sd.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
        };
        match self {
            Self::TwoGaussians => normal(x[0], 2.0 * c[0] - 1.0, 1.0) + normal(x[1], 0.0, 1.0),
            Self::GaussianMean => (0..2)
                .map(|i| normal(x[i], c[i], GAUSSIAN_MEAN_SIGMA))
                .sum(),
            Self::Grid { width, .. } => (0..2).map(|i| normal(x[i], c[i], *width)).sum(),
            Self::Smearing { dim } => {
                let d = *dim as f64;
                let rho = SMEARING_RHO;
                let mut log_sigma = 0.0;
                let mut quad = 0.0;
                let mut prev = 0.0;
                for (i, &xi) in x.iter().enumerate().take(*dim) {
                    let (mu, sigma) = smearing_response(c, i);
                    log_sigma += sigma.ln();
                    let t = (xi - mu) / sigma;
                    // The AR(1) correlation's inverse as a sum of innovations.
                    quad += if i == 0 {
                        t * t
                    } else {
                        (t - rho * prev).powi(2) / (1.0 - rho * rho)
                    };
                    prev = t;
                }
                student_t_log_normaliser(d)
                    - 0.5 * (d + SMEARING_NU) * (1.0 + quad / SMEARING_NU).ln()
                    - log_sigma
            }
        }
    }

    /// The entropy of p(x | c) in nats at condition `c`, where it has a closed form (every
    /// generator here): averaged over the conditions of held-out rows, it is the best NLL a
    /// model can reach on them.
    pub fn conditional_entropy(&self, c: &[f64]) -> f64 {
        let gaussian = |d: f64, log_sd_sum: f64| {
            0.5 * d * (1.0 + (2.0 * std::f64::consts::PI).ln()) + log_sd_sum
        };
        match self {
            Self::TwoGaussians => gaussian(2.0, 0.0),
            Self::GaussianMean => gaussian(2.0, 2.0 * GAUSSIAN_MEAN_SIGMA.ln()),
            Self::Grid { width, .. } => gaussian(2.0, 2.0 * width.ln()),
            Self::Smearing { dim } => {
                let d = *dim as f64;
                let nu = SMEARING_NU;
                let log_sigma: f64 = (0..*dim).map(|i| smearing_response(c, i).1.ln()).sum();
                // Entropy of a multivariate t with scale matrix R: -log normaliser plus
                // (nu + d)/2 E[log(1 + q/nu)], the latter (nu+d)/2 (psi((nu+d)/2) - psi(nu/2)).
                -student_t_log_normaliser(d)
                    + 0.5 * (nu + d) * (digamma(0.5 * (nu + d)) - digamma(0.5 * nu))
                    + log_sigma
            }
        }
    }
}

/// The mean and resolution of target `i` of the smearing simulator at condition `c`.
fn smearing_response(c: &[f64], i: usize) -> (f64, f64) {
    let next = c[(i + 1) % c.len()];
    (c[i] + 0.5 * next.tanh(), 0.2 + 0.1 * c[i].abs())
}

/// log of the normalising constant of the smearing's `d`-dimensional Student-t with scale
/// matrix `R` (its log-determinant included).
fn student_t_log_normaliser(d: f64) -> f64 {
    let nu = SMEARING_NU;
    let log_det_r = (d - 1.0) * (1.0 - SMEARING_RHO * SMEARING_RHO).ln();
    ln_gamma(0.5 * (nu + d))
        - ln_gamma(0.5 * nu)
        - 0.5 * d * (nu * std::f64::consts::PI).ln()
        - 0.5 * log_det_r
}

/// log Gamma(x) for x > 0 (Lanczos, g = 7; about 1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let series = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |acc, (k, g)| acc + g / (x + k as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// The digamma function psi(x) for x > 0: the recurrence up to 10, then the asymptotic series.
pub fn digamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let inv2 = 1.0 / (x * x);
    acc + x.ln()
        - 0.5 / x
        - inv2 * (1.0 / 12.0 - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 / 240.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_rng;

    #[test]
    fn special_functions_match_known_values() {
        // Gamma(5) = 24, Gamma(1/2) = sqrt(pi); psi(1) = -Euler's gamma, psi(1/2) = -gamma - 2 ln 2.
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-10);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-10);
    }

    /// The closed-form entropy is the mean of -log p(x | c) over draws at that c, within
    /// sampling error: the density and the entropy agree, and the density is normalised (a
    /// wrong constant would shift the mean).
    #[test]
    fn entropy_is_the_mean_negative_log_density() {
        for generator in [
            "two_gaussians",
            "gaussian_mean",
            "grid",
            "smearing",
            "smearing:3",
        ] {
            let g: Conditional = generator.parse().unwrap();
            let mut rng = batch_rng(7, 0);
            let c = g.draw_condition(&mut rng);
            let n = 200_000;
            let nll: Vec<f64> = (0..n)
                .map(|_| -g.log_density(&c, &g.sample_given(&c, &mut rng)))
                .collect();
            let mean = nll.iter().sum::<f64>() / n as f64;
            let sd = (nll.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            let h = g.conditional_entropy(&c);
            assert!(
                (mean - h).abs() < 4.0 * sd / (n as f64).sqrt() + 1e-3,
                "{generator}: mean NLL {mean:.4} against entropy {h:.4}"
            );
        }
    }

    #[test]
    fn a_two_dimensional_smearing_density_integrates_to_one() {
        let g: Conditional = "smearing:2".parse().unwrap();
        let c = [0.3, 1.2];
        let (h, span) = (0.01, 8.0);
        let mut total = 0.0;
        let steps = (2.0 * span / h) as usize;
        for i in 0..steps {
            for j in 0..steps {
                let x = [-span + (i as f64 + 0.5) * h, -span + (j as f64 + 0.5) * h];
                total += g.log_density(&c, &x).exp() * h * h;
            }
        }
        // The t tails beyond +-8 hold a little mass.
        assert!((total - 1.0).abs() < 2e-3, "integral {total}");
    }

    #[test]
    fn names_parse_and_bad_ones_say_why() {
        assert_eq!(
            "grid:3:0.2".parse::<Conditional>().unwrap(),
            Conditional::Grid {
                n: 3,
                width: 0.2,
                held_out: Vec::new()
            }
        );
        let e = "grid:3:-1".parse::<Conditional>().unwrap_err().to_string();
        assert!(e.contains("-1"), "{e}");
        let e = "smearing:1".parse::<Conditional>().unwrap_err().to_string();
        assert!(e.contains("2 to 64"), "{e}");
        let grid: Conditional = "grid".parse().unwrap();
        let e = grid.holding_out(&[vec![2.0, 7.0]]).unwrap_err().to_string();
        assert!(e.contains("[2.0, 7.0]"), "{e}");
    }
}
