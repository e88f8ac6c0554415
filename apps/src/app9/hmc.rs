//! The baseline every run is checked against: Hybrid Monte Carlo of the same action (leapfrog
//! trajectories with a Metropolis test), with a global `phi -> -phi` flip between trajectories
//! so that the chain crosses between the two vacua of the broken phase, which the action
//! leaves unchanged.

use anyhow::{Result, bail};
use flowcore::lattice::Phi4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// The `[hmc]` group.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmcConfig {
    /// Trajectories measured.
    pub trajectories: usize,
    /// Trajectories run before measuring.
    pub thermalisation: usize,
    /// Leapfrog steps per trajectory.
    pub leapfrog_steps: usize,
    /// Leapfrog step size (the trajectory length is `leapfrog_steps * step_size`).
    pub step_size: f64,
    /// Flip the field's sign with probability 1/2 after every trajectory.
    pub z2_flip: bool,
    /// Seed of the chain.
    pub seed: u64,
}

impl HmcConfig {
    /// Check values; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if self.trajectories < 2 {
            bail!(
                "hmc.trajectories must be at least 2, got {}",
                self.trajectories
            );
        }
        if self.leapfrog_steps == 0 {
            bail!("hmc.leapfrog_steps must be positive");
        }
        if !(self.step_size.is_finite() && self.step_size > 0.0) {
            bail!(
                "hmc.step_size must be a positive number, got {}",
                self.step_size
            );
        }
        Ok(())
    }
}

/// Run the chain, calling `measure` on the field after each measured trajectory; returns the
/// acceptance rate of the measured trajectories.
pub fn run(action: &Phi4, config: &HmcConfig, mut measure: impl FnMut(&[f64])) -> Result<f64> {
    config.validate()?;
    let v = action.sites();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut phi = vec![0.0; v];
    let mut s = action.action_host(&phi);
    let (mut trial, mut p, mut force) = (vec![0.0; v], vec![0.0; v], vec![0.0; v]);
    let eps = config.step_size;
    let mut accepted = 0usize;
    for traj in 0..config.thermalisation + config.trajectories {
        p.iter_mut()
            .for_each(|x| *x = StandardNormal.sample(&mut rng));
        let kinetic = |p: &[f64]| p.iter().map(|x| x * x).sum::<f64>() / 2.0;
        let h0 = kinetic(&p) + s;
        trial.copy_from_slice(&phi);
        action.gradient_host(&trial, &mut force);
        p.iter_mut()
            .zip(&force)
            .for_each(|(p, f)| *p -= eps / 2.0 * f);
        for step in 0..config.leapfrog_steps {
            trial.iter_mut().zip(&p).for_each(|(x, p)| *x += eps * p);
            action.gradient_host(&trial, &mut force);
            let scale = if step + 1 == config.leapfrog_steps {
                eps / 2.0
            } else {
                eps
            };
            p.iter_mut().zip(&force).for_each(|(p, f)| *p -= scale * f);
        }
        let s_trial = action.action_host(&trial);
        let h1 = kinetic(&p) + s_trial;
        let u: f64 = rng.random();
        let accept = h1.is_finite() && u.ln() < h0 - h1;
        if accept {
            std::mem::swap(&mut phi, &mut trial);
            s = s_trial;
        }
        if config.z2_flip && rng.random::<bool>() {
            phi.iter_mut().for_each(|x| *x = -*x);
        }
        if traj >= config.thermalisation {
            accepted += usize::from(accept);
            measure(&phi);
        }
    }
    Ok(accepted as f64 / config.trajectories as f64)
}
