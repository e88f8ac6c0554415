//! A trained posterior: what a run saves to sample it ([`ProblemFile`]), and sampling
//! `p(x | y)` with the INN or the cINN.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use flowcore::inn::{ConditionalObjective, InnLossConfig, InnObjective};
use flowcore::{Flow, Partition};
use flowdata::inverse::Simulator;
use serde::{Deserialize, Serialize};

use super::data::{Normalization, noise_dim};
use super::{Method, Problem};
use crate::shared::infer::to_vec;

/// What a run saves besides its model, so that `posterior` can use it alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProblemFile {
    /// The problem.
    pub problem: Problem,
    /// INN or cINN.
    pub method: Method,
    /// The INN's partition.
    pub partition: String,
    /// Parameter names.
    pub x_names: Vec<String>,
    /// Observation names.
    pub y_names: Vec<String>,
    /// The standardisation.
    pub normalization: Normalization,
}

/// A trained posterior: the flow and what it needs to sample.
pub struct Posterior {
    flow: Flow,
    method: Method,
    inn: InnObjective,
    cinn: ConditionalObjective,
    pub(super) norm: Normalization,
    device: Device,
}

impl Posterior {
    pub(super) fn new(flow: Flow, file: &ProblemFile, partition: Partition) -> Self {
        let inn = InnObjective {
            partition,
            config: InnLossConfig::default(),
        };
        let cinn = ConditionalObjective {
            x_dim: inn.x_dim(),
            noise_dim: inn.noise_dim(),
        };
        Self {
            flow,
            method: file.method,
            inn,
            cinn,
            norm: file.normalization.clone(),
            device: crate::run::device(),
        }
    }

    /// `n` samples of `p(x | y)` in the problem's units, row-major.
    pub fn sample(&self, y: &[f64], n: usize, seed: u64) -> Vec<f64> {
        let y_unit = self.norm.y_to_unit(y);
        let x = match self.method {
            Method::Inn => self
                .inn
                .posterior(&self.flow, &y_unit, n, seed, &self.device),
            Method::Cinn => self
                .cinn
                .posterior(&self.flow, &y_unit, n, seed, &self.device),
        };
        self.norm.x_from_unit(&to_vec(x.into_data()))
    }
}

pub(super) fn parse_partition(text: &str, sim: &dyn Simulator) -> Result<Partition> {
    use flowcore::{Role, Side};
    let p: Partition = text
        .parse()
        .map_err(|e| anyhow::anyhow!("run.partition: {e}"))?;
    let (dx, dy, de) = (sim.x_dim(), sim.y_dim(), noise_dim(sim));
    let (px, py, pe) = (
        p.role_size(Side::Input, Role::Data),
        p.role_size(Side::Output, Role::Observation),
        p.role_size(Side::Input, Role::Noise),
    );
    if (px, py, pe) != (dx, dy, de) {
        bail!(
            "run.partition `{p}` has {px} data, {pe} noise and {py} observation dimensions, but \
             this problem has {dx} parameters, {de} noise values and {dy} observations"
        );
    }
    Ok(p)
}

/// `n` samples of `p(x | y)` from the model of the run of `problem` in `run`, in the problem's
/// units, row-major; and the parameter names.
pub fn posterior(
    problem: Problem,
    run: &Path,
    y: &[f64],
    n: usize,
    seed: u64,
) -> Result<(Vec<f64>, Vec<String>)> {
    crate::run::reenter_in_pool!(posterior(problem, run, y, n, seed));
    if n == 0 {
        bail!("--n must be at least 1");
    }
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        bail!("--y: value {} is {v}, not a finite number", i + 1);
    }
    let file_path = run.join("problem.json");
    let text = std::fs::read_to_string(&file_path).with_context(|| {
        format!(
            "{} is missing: is {} a finished run of applications 5-7?",
            file_path.display(),
            run.display()
        )
    })?;
    let file: ProblemFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a problem file", file_path.display()))?;
    if file.problem != problem {
        bail!(
            "{} is a run of {}, not of {}",
            run.display(),
            file.problem.app(),
            problem.app()
        );
    }
    if y.len() != file.y_names.len() {
        bail!(
            "--y has {} values but the model takes {} ({})",
            y.len(),
            file.y_names.len(),
            file.y_names.join(", ")
        );
    }
    let flow = crate::run::load_model(run, problem.info())?;
    let sim = file.problem.simulator();
    let partition = parse_partition(&file.partition, sim.as_ref())?;
    let post = Posterior::new(flow, &file, partition);
    Ok((post.sample(y, n, seed), file.x_names.clone()))
}
