//! Importance weights of flow samples against the target `exp(-S) / Z`: the effective sample
//! size, the estimate of `log Z`, and the independence Metropolis sampler that makes the flow's
//! samples exact.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `log mean exp(v)`, stable for any range of `v`; `-inf` for an empty slice.
pub fn log_mean_exp(v: &[f64]) -> f64 {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = v.iter().map(|x| (x - max).exp()).sum();
    max + (sum / v.len() as f64).ln()
}

/// The normalised effective sample size `(sum w)^2 / (N sum w^2)` of log-weights `log w`,
/// in `(0, 1]`; 1 when the flow is the target. 0 for no samples or non-finite weights.
pub fn effective_sample_size(log_w: &[f64]) -> f64 {
    if log_w.is_empty() || log_w.iter().any(|x| x.is_nan() || *x == f64::INFINITY) {
        return 0.0;
    }
    let doubled: Vec<f64> = log_w.iter().map(|x| 2.0 * x).collect();
    (2.0 * log_mean_exp(log_w) - log_mean_exp(&doubled)).exp()
}

/// The estimate of `log Z = log E_q[w]` from log-weights, with its standard error (the delta
/// method: the relative error of the mean weight, `sqrt((1/ESS - 1) / N)`).
pub fn log_partition(log_w: &[f64]) -> (f64, f64) {
    let n = log_w.len() as f64;
    let ess = effective_sample_size(log_w);
    let err = if ess > 0.0 {
        ((1.0 / ess - 1.0).max(0.0) / n).sqrt()
    } else {
        f64::INFINITY
    };
    (log_mean_exp(log_w), err)
}

/// An independence Metropolis chain over proposals with log-weights `log_w`, in order: each
/// proposal is accepted with probability `min(1, w' / w)`, so the chain samples the target
/// exactly whatever the flow. Returns, for each step, the index of the proposal the chain is
/// at, and the acceptance rate. The first proposal starts the chain.
pub fn independence_metropolis(log_w: &[f64], seed: u64) -> (Vec<usize>, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chain = Vec::with_capacity(log_w.len());
    let mut current = 0;
    let mut accepted = 0usize;
    for (i, &lw) in log_w.iter().enumerate() {
        if i > 0 {
            let u: f64 = rng.random();
            // A non-finite current weight (a proposal the action gives no mass) is always left.
            if !log_w[current].is_finite() || u.ln() < lw - log_w[current] {
                current = i;
                accepted += 1;
            }
        }
        chain.push(current);
    }
    let rate = if log_w.len() > 1 {
        accepted as f64 / (log_w.len() - 1) as f64
    } else {
        0.0
    };
    (chain, rate)
}
