//! Errors of Markov-chain estimates: the integrated autocorrelation time with automatic
//! windowing, and the blocked jackknife.

/// The integrated autocorrelation time `tau = 1/2 + sum_t rho(t)` of a chain's series, summed
/// up to the first window `W >= 5 tau(W)` (the automatic windowing of Madras and Sokal). 0.5
/// for uncorrelated samples (and for a constant series); an independence Metropolis chain that
/// accepts a fraction `a` of its proposals has about `1/a - 1/2`.
pub fn tau_int(series: &[f64]) -> f64 {
    let n = series.len();
    if n < 4 {
        return 0.5;
    }
    let mean = series.iter().sum::<f64>() / n as f64;
    let centred: Vec<f64> = series.iter().map(|x| x - mean).collect();
    let c0 = centred.iter().map(|x| x * x).sum::<f64>() / n as f64;
    if c0 <= 0.0 || !c0.is_finite() {
        return 0.5;
    }
    let mut tau = 0.5;
    for t in 1..n / 2 {
        let ct = centred[..n - t]
            .iter()
            .zip(&centred[t..])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / (n - t) as f64;
        tau += ct / c0;
        if t as f64 >= 5.0 * tau {
            break;
        }
    }
    tau.max(0.5)
}

/// The estimate `f(mean of the rows)` and its blocked-jackknife error: the chain's rows
/// (one vector of primary quantities per sample, in chain order) are cut into `blocks` blocks
/// of consecutive rows, long against the autocorrelation time, and `f` is recomputed with each
/// block left out. Rows beyond a whole number of blocks are left out of the errors only.
pub fn jackknife(rows: &[Vec<f64>], blocks: usize, f: &dyn Fn(&[f64]) -> f64) -> (f64, f64) {
    let n = rows.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let k = rows[0].len();
    let mut total = vec![0.0; k];
    for r in rows {
        total.iter_mut().zip(r).for_each(|(t, v)| *t += v);
    }
    let mean: Vec<f64> = total.iter().map(|t| t / n as f64).collect();
    let value = f(&mean);
    let nb = blocks.clamp(2, n.max(2));
    let len = n / nb;
    if len == 0 {
        return (value, f64::NAN);
    }
    let used = len * nb;
    let mut used_total = vec![0.0; k];
    for r in &rows[..used] {
        used_total.iter_mut().zip(r).for_each(|(t, v)| *t += v);
    }
    let mut leave_out = Vec::with_capacity(nb);
    for b in 0..nb {
        let mut sum = used_total.clone();
        for r in &rows[b * len..(b + 1) * len] {
            sum.iter_mut().zip(r).for_each(|(t, v)| *t -= v);
        }
        let m: Vec<f64> = sum.iter().map(|s| s / (used - len) as f64).collect();
        leave_out.push(f(&m));
    }
    let avg = leave_out.iter().sum::<f64>() / nb as f64;
    let var =
        leave_out.iter().map(|x| (x - avg).powi(2)).sum::<f64>() * (nb - 1) as f64 / nb as f64;
    (value, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// An AR(1) chain x_t = a x_{t-1} + e_t has tau = (1 + a) / (2 (1 - a)) and the variance
    /// of its mean 2 tau var(x) / n.
    #[test]
    fn ar1_chain_has_its_known_tau_and_error() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let a = 0.8f64;
        let n = 200_000;
        let mut x = 0.0;
        let series: Vec<f64> = (0..n)
            .map(|_| {
                let e: f64 = rng.random::<f64>() - 0.5;
                x = a * x + e;
                x
            })
            .collect();
        let exact = (1.0 + a) / (2.0 * (1.0 - a));
        let tau = tau_int(&series);
        assert!(
            (tau - exact).abs() < 0.1 * exact,
            "tau {tau}, exact {exact}"
        );
        let rows: Vec<Vec<f64>> = series.iter().map(|&v| vec![v]).collect();
        let (_, err) = jackknife(&rows, 50, &|m| m[0]);
        let var_x = (1.0 / 12.0) / (1.0 - a * a);
        let expected = (2.0 * exact * var_x / n as f64).sqrt();
        assert!(
            (err - expected).abs() < 0.3 * expected,
            "jackknife error {err}, expected {expected}"
        );
        assert_eq!(tau_int(&[1.0; 100]), 0.5);
    }
}
