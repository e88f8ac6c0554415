//! The observables of the phi^4 theory, measured on each field of a chain and estimated with
//! blocked-jackknife errors: magnetisation, its absolute value, the susceptibility, the energy
//! (action) density, the zero-momentum two-point correlator `G(t)` and its effective mass.

use flowcore::lattice::Phi4;
use serde::{Deserialize, Serialize};

use super::stats::{jackknife, tau_int};

/// Jackknife blocks of every estimate.
pub const BLOCKS: usize = 40;

/// What is measured on each field: `[M, |M|, M^2, S / V, g(0), ..., g(T - 1)]` with the
/// magnetisation per site `M = sum_x phi(x) / V` and, along the first axis longer than one
/// site (the "time" axis of length `T`), `g(t) = sum_t0 s(t0) s(t0 + t) / V` of the sums `s` of
/// the field over time slices.
pub struct Measure {
    action: Phi4,
    /// For each site, its time slice.
    slice: Vec<usize>,
    time: usize,
}

impl Measure {
    /// Measurements of fields of `action`'s lattice.
    pub fn new(action: &Phi4) -> Self {
        let shape = action.shape();
        let axis = shape.iter().position(|&l| l > 1);
        let sites = action.sites();
        let (slice, time) = match axis {
            Some(a) => {
                let stride: usize = shape[a + 1..].iter().product();
                (
                    (0..sites).map(|x| (x / stride) % shape[a]).collect(),
                    shape[a],
                )
            }
            None => (vec![0; sites], 1),
        };
        Self {
            action: action.clone(),
            slice,
            time,
        }
    }

    /// Length of the time axis (1 for a single site).
    pub fn time(&self) -> usize {
        self.time
    }

    /// The primary quantities of one field.
    pub fn measure(&self, phi: &[f64]) -> Vec<f64> {
        let v = phi.len() as f64;
        let m = phi.iter().sum::<f64>() / v;
        let mut row = vec![m, m.abs(), m * m, self.action.action_host(phi) / v];
        let mut slices = vec![0.0; self.time];
        for (x, &p) in phi.iter().enumerate() {
            slices[self.slice[x]] += p;
        }
        for t in 0..self.time {
            let g: f64 = (0..self.time)
                .map(|t0| slices[t0] * slices[(t0 + t) % self.time])
                .sum();
            row.push(g / v);
        }
        row
    }

    /// Every estimate from a chain's rows (in chain order).
    pub fn estimates(&self, rows: &[Vec<f64>]) -> Vec<Estimate> {
        let v = self.action.sites() as f64;
        let spatial = v / self.time as f64;
        let mut out = Vec::new();
        let mut add = |name: String, f: &dyn Fn(&[f64]) -> f64| {
            let (value, error) = jackknife(rows, BLOCKS, f);
            out.push(Estimate { name, value, error });
        };
        add("M".into(), &|m| m[0]);
        add("|M|".into(), &|m| m[1]);
        add("chi".into(), &|m| v * (m[2] - m[0] * m[0]));
        add("energy_density".into(), &|m| m[3]);
        let g = move |m: &[f64], t: usize| m[4 + t] - spatial * m[0] * m[0];
        if self.time > 1 {
            let half = self.time / 2;
            for t in 0..=half {
                add(format!("G({t})"), &move |m| g(m, t));
            }
            for t in 1..half {
                let time = self.time;
                add(format!("m_eff({t})"), &move |m| {
                    let ratio = (g(m, t - 1) + g(m, (t + 1) % time)) / (2.0 * g(m, t));
                    ratio.acosh()
                });
            }
        }
        out
    }

    /// The integrated autocorrelation times of `|M|`, `M^2` and the action density.
    pub fn autocorrelation(&self, rows: &[Vec<f64>]) -> Vec<(String, f64)> {
        [("|M|", 1), ("M^2", 2), ("energy_density", 3)]
            .into_iter()
            .map(|(name, i)| {
                let series: Vec<f64> = rows.iter().map(|r| r[i]).collect();
                (name.to_string(), tau_int(&series))
            })
            .collect()
    }
}

/// An observable's estimate and its standard error.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Estimate {
    /// Its name: `M`, `|M|`, `chi`, `energy_density`, `G(t)`, `m_eff(t)`.
    pub name: String,
    /// The estimate.
    pub value: f64,
    /// Its standard error.
    pub error: f64,
}

/// The estimates of a chain with what says how far to trust them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChainSummary {
    /// Which sampler: `flow`, `flow+metropolis`, `hmc`.
    pub sampler: String,
    /// Samples in the chain.
    pub samples: usize,
    /// Acceptance rate (1 for plain flow samples).
    pub acceptance: f64,
    /// Integrated autocorrelation times.
    pub tau_int: Vec<(String, f64)>,
    /// The observables.
    pub estimates: Vec<Estimate>,
}

/// One observable from two samplers, and how many combined standard errors apart they are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// The observable.
    pub name: String,
    /// The first sampler's estimate and error.
    pub a: (f64, f64),
    /// The second's.
    pub b: (f64, f64),
    /// `(a - b) / sqrt(err_a^2 + err_b^2)`.
    pub pull: f64,
}

/// Compare the observables both chains have.
pub fn compare(a: &ChainSummary, b: &ChainSummary) -> Vec<Comparison> {
    a.estimates
        .iter()
        .filter_map(|ea| {
            let eb = b.estimates.iter().find(|e| e.name == ea.name)?;
            let pull = (ea.value - eb.value) / (ea.error.powi(2) + eb.error.powi(2)).sqrt();
            Some(Comparison {
                name: ea.name.clone(),
                a: (ea.value, ea.error),
                b: (eb.value, eb.error),
                pull,
            })
        })
        .collect()
}

/// A Markdown table of comparisons.
pub fn comparison_table(rows: &[Comparison], a: &str, b: &str) -> String {
    let mut out = format!("| observable | {a} | {b} | pull |\n|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.5} +- {:.5} | {:.5} +- {:.5} | {:+.2} |\n",
            r.name, r.a.0, r.a.1, r.b.0, r.b.1, r.pull
        ));
    }
    out
}
