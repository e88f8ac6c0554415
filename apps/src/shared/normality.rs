//! Whether encoding data gives a standard normal: the Kolmogorov-Smirnov statistic of every
//! latent coordinate against N(0, 1), judged at 5% with a Bonferroni correction over the
//! coordinates, beside the sample's mean and covariance.

use serde::{Deserialize, Serialize};

/// The test of one latent sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normality {
    /// Points tested.
    pub points: usize,
    /// The largest KS statistic over the coordinates.
    pub ks_max: f64,
    /// The statistic's critical value at 5% over all coordinates (asymptotic).
    pub ks_critical: f64,
    /// `ks_max <= ks_critical`: no evidence against N(0, I) at 5%.
    pub consistent: bool,
    /// The largest |mean| over the coordinates.
    pub max_abs_mean: f64,
    /// The largest |covariance - identity| entry.
    pub max_abs_cov_error: f64,
}

/// The test on `z`, row-major with `dim` columns.
pub fn normality(z: &[f32], dim: usize) -> Normality {
    let n = z.len() / dim.max(1);
    let column = |j: usize| -> Vec<f64> { (0..n).map(|i| f64::from(z[i * dim + j])).collect() };
    let mut ks_max = 0.0f64;
    let mut means = Vec::with_capacity(dim);
    for j in 0..dim {
        let mut c = column(j);
        means.push(c.iter().sum::<f64>() / n as f64);
        c.sort_by(f64::total_cmp);
        for (i, v) in c.iter().enumerate() {
            let f = normal_cdf(*v);
            ks_max = ks_max
                .max((i + 1) as f64 / n as f64 - f)
                .max(f - i as f64 / n as f64);
        }
    }
    let mut cov_err = 0.0f64;
    for a in 0..dim {
        for b in 0..=a {
            let cov = (0..n)
                .map(|i| {
                    (f64::from(z[i * dim + a]) - means[a]) * (f64::from(z[i * dim + b]) - means[b])
                })
                .sum::<f64>()
                / (n.max(2) - 1) as f64;
            let target = if a == b { 1.0 } else { 0.0 };
            cov_err = cov_err.max((cov - target).abs());
        }
    }
    let alpha = 0.05 / dim.max(1) as f64;
    let ks_critical = (-(alpha / 2.0).ln() / 2.0).sqrt() / (n.max(1) as f64).sqrt();
    Normality {
        points: n,
        ks_max,
        ks_critical,
        consistent: ks_max <= ks_critical,
        max_abs_mean: means.iter().fold(0.0, |m, v| m.max(v.abs())),
        max_abs_cov_error: cov_err,
    }
}

/// The standard normal CDF, through erfc (Numerical Recipes' Chebyshev fit, error < 1.2e-7).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn the_cdf_has_its_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }

    #[test]
    fn a_normal_sample_passes_and_a_shifted_or_squeezed_one_fails() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let z: Vec<f32> = (0..2 * 4000)
            .map(|_| {
                let v: f64 = StandardNormal.sample(&mut rng);
                v as f32
            })
            .collect();
        let ok = normality(&z, 2);
        assert!(ok.consistent && ok.max_abs_cov_error < 0.1, "{ok:?}");
        let shifted: Vec<f32> = z.iter().map(|v| v + 0.15).collect();
        assert!(!normality(&shifted, 2).consistent);
        let squeezed: Vec<f32> = z.iter().map(|v| v * 0.85).collect();
        let s = normality(&squeezed, 2);
        assert!(!s.consistent && s.max_abs_cov_error > 0.2, "{s:?}");
    }
}
