//! The most likely condition for observed data, with the model frozen: over a finite set of
//! candidates (which class?), or continuous, by gradient ascent on `c` from several starts
//! within the training range. One estimate per observation, or one shared by all of them
//! (repeated measurements of one `c`), in which case their log-likelihoods add.

use anyhow::{Result, bail};
use burn::prelude::*;
use burn::tensor::TensorData;
use flowdata::batch_rng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::model::ConditionalModel;
use crate::shared::infer::{rows, to_vec};

/// The estimate for one observation, or for all of them when they share `c`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Estimate {
    /// The most likely condition, in the data's units.
    pub c: Vec<f64>,
    /// Its log-likelihood, summed over the observations it explains, nats.
    pub log_likelihood: f64,
    /// The candidate's index, when chosen from candidates.
    pub candidate: Option<usize>,
    /// The log-likelihood of every candidate (candidates only).
    pub candidate_log_likelihoods: Vec<f64>,
}

/// How the continuous search runs.
#[derive(Clone, Copy, Debug)]
pub struct Ascent {
    /// Starts: the centre of the training range and random points in it.
    pub starts: usize,
    /// Adam steps per start.
    pub steps: usize,
    /// Adam's rate, in whitened units of `c`.
    pub learning_rate: f64,
    /// The seed of the random starts.
    pub seed: u64,
}

impl Default for Ascent {
    fn default() -> Self {
        Self {
            starts: 8,
            steps: 300,
            learning_rate: 0.05,
            seed: 0,
        }
    }
}

fn check_data(model: &ConditionalModel, x: &[f32]) -> Result<usize> {
    let d = model.info.dim();
    if x.is_empty() || !x.len().is_multiple_of(d) {
        bail!(
            "the observations have {} value(s); the model's x has {d} columns ({})",
            x.len(),
            model.info.x_columns.join(", ")
        );
    }
    Ok(x.len() / d)
}

/// The most likely of `candidates` for each row of `x` (`[n, dim]`), or for all rows together
/// when `shared`.
pub fn over_candidates(
    model: &ConditionalModel,
    x: &[f32],
    candidates: &[Vec<f64>],
    shared: bool,
    device: &Device,
) -> Result<Vec<Estimate>> {
    let n = check_data(model, x)?;
    if candidates.is_empty() {
        bail!("no candidate conditions to choose from");
    }
    // lp[k][i] = log p(x_i | c_k)
    let mut lp = Vec::with_capacity(candidates.len());
    for (k, cand) in candidates.iter().enumerate() {
        let c: Vec<f32> = cand.iter().map(|&v| v as f32).collect();
        model.check_condition(&c, &format!("candidate {k}"))?;
        if c.len() != model.info.cond_dim() {
            bail!(
                "candidate {k} has {} values; the model's condition has {}",
                c.len(),
                model.info.cond_dim()
            );
        }
        let repeated: Vec<f32> = (0..n).flat_map(|_| c.iter().copied()).collect();
        lp.push(model.log_prob(&repeated, x, device));
    }
    let best = |scores: Vec<f64>| {
        let k = (0..scores.len())
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .expect("candidates");
        Estimate {
            c: candidates[k].clone(),
            log_likelihood: scores[k],
            candidate: Some(k),
            candidate_log_likelihoods: scores,
        }
    };
    Ok(if shared {
        vec![best(
            lp.iter()
                .map(|l| l.iter().map(|&v| f64::from(v)).sum())
                .collect(),
        )]
    } else {
        (0..n)
            .map(|i| best(lp.iter().map(|l| f64::from(l[i])).collect()))
            .collect()
    })
}

/// The most likely continuous `c` for each row of `x`, or for all rows together when
/// `shared`: Adam on `c` (whitened) from `ascent.starts` starts, kept within the training range
/// of every column; the best start wins.
pub fn by_gradient(
    model: &ConditionalModel,
    x: &[f32],
    shared: bool,
    ascent: Ascent,
    device: &Device,
) -> Result<Vec<Estimate>> {
    let n = check_data(model, x)?;
    let (cd, d) = (model.info.cond_dim(), model.info.dim());
    let flow = model.flow_with_gradients(device)?;
    let ad = device.clone().autodiff();
    let w = &model.info.c_whitening;
    let lo: Vec<f64> = (0..cd)
        .map(|j| (model.info.c_min[j] - w.mean[j]) / w.std[j])
        .collect();
    let hi: Vec<f64> = (0..cd)
        .map(|j| (model.info.c_max[j] - w.mean[j]) / w.std[j])
        .collect();
    let groups = if shared { 1 } else { n };
    let starts = ascent.starts.max(1);
    // theta[g * starts + s] is start s of group g; row r of the evaluation uses theta[owner[r]]
    // with observation obs[r].
    let mut owner = Vec::new();
    let mut obs = Vec::new();
    for g in 0..groups {
        for s in 0..starts {
            let members: Vec<usize> = if shared { (0..n).collect() } else { vec![g] };
            for i in members {
                owner.push(g * starts + s);
                obs.push(i);
            }
        }
    }
    let xw = model.info.x_whitening.apply(x);
    let x_rows: Vec<f32> = obs
        .iter()
        .flat_map(|&i| xw[i * d..(i + 1) * d].iter().copied())
        .collect();
    let x_t = rows(&x_rows, d, &ad);
    let owner_t = Tensor::<1, Int>::from_data(
        TensorData::new(owner.iter().map(|&o| o as i64).collect(), [owner.len()]),
        &ad,
    );
    let mut rng = batch_rng(ascent.seed, 0xE57);
    let mut theta: Vec<f64> = (0..groups * starts)
        .flat_map(|k| {
            let s = k % starts;
            (0..cd)
                .map(|j| {
                    let centre = 0.5 * (lo[j] + hi[j]);
                    if s == 0 || hi[j] <= lo[j] {
                        centre
                    } else {
                        rng.random_range(lo[j]..hi[j])
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let log_lik = |theta: &[f64], grad: bool| -> (Vec<f64>, Option<Vec<f64>>) {
        let t = Tensor::<2>::from_data(
            TensorData::new(
                theta.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
                [groups * starts, cd],
            ),
            &ad,
        );
        let t = if grad { t.require_grad() } else { t };
        let c = t.clone().select(0, owner_t.clone());
        let lp = flow.log_prob(x_t.clone(), Some(&c));
        let per_row = to_vec(lp.clone().into_data());
        let mut per_start = vec![0.0; groups * starts];
        for (r, &o) in owner.iter().enumerate() {
            per_start[o] += f64::from(per_row[r]);
        }
        let g = grad.then(|| {
            let grads = lp.sum().backward();
            t.grad(&grads)
                .map(|g| to_vec(g.into_data()).into_iter().map(f64::from).collect())
                .unwrap_or_else(|| vec![0.0; theta.len()])
        });
        (per_start, g)
    };
    // Adam, ascending.
    let (b1, b2, eps) = (0.9, 0.999, 1e-8);
    let mut m = vec![0.0; theta.len()];
    let mut v = vec![0.0; theta.len()];
    for step in 1..=ascent.steps {
        let (_, grad) = log_lik(&theta, true);
        let grad = grad.expect("asked for");
        for k in 0..theta.len() {
            if !grad[k].is_finite() {
                continue;
            }
            m[k] = b1 * m[k] + (1.0 - b1) * grad[k];
            v[k] = b2 * v[k] + (1.0 - b2) * grad[k] * grad[k];
            let mh = m[k] / (1.0 - b1.powi(step as i32));
            let vh = v[k] / (1.0 - b2.powi(step as i32));
            let j = k % cd;
            theta[k] =
                (theta[k] + ascent.learning_rate * mh / (vh.sqrt() + eps)).clamp(lo[j], hi[j]);
        }
    }
    let (final_ll, _) = log_lik(&theta, false);
    let shift = model.info.x_whitening.log_det();
    Ok((0..groups)
        .map(|g| {
            let best = (0..starts)
                .max_by(|&a, &b| final_ll[g * starts + a].total_cmp(&final_ll[g * starts + b]))
                .expect("starts");
            let k = g * starts + best;
            let observations = if shared { n } else { 1 };
            Estimate {
                c: (0..cd)
                    .map(|j| theta[k * cd + j] * w.std[j] + w.mean[j])
                    .collect(),
                log_likelihood: final_ll[k] + shift * observations as f64,
                candidate: None,
                candidate_log_likelihoods: Vec::new(),
            }
        })
        .collect())
}
