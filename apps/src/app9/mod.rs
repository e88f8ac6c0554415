//! Application 9: sampling the phi^4 lattice field theory with a flow trained against its
//! action, without data (reverse Kullback-Leibler), made exact by an independence Metropolis
//! chain over the flow's proposals, and checked against a Hybrid Monte Carlo chain of the same
//! action. The run directory gets the model, the theory, the observables of the three samplers
//! side by side, and figures of the training, the magnetisation and the correlator.

mod cli;
mod hmc;
mod observables;
mod report;
mod sampler;
mod stats;
mod theory;

use std::path::Path;

use anyhow::{Context, Result, bail};
use flowcore::lattice::{ForwardKlTerm, Phi4Couplings, PriorSource, Proposal, ReverseKl};
use flowcore::train::{Collective, SingleProcess};
use flowcore::{ArchitectureConfig, BaseConfig, DataShape};
use serde::{Deserialize, Serialize};

pub use crate::run::TrainOptions;
use crate::run::{AppInfo, AppRun, ResolvedConfig, RunRecord, Training, load_model, train_app};
pub use cli::App9;
pub use hmc::HmcConfig;
pub use observables::{ChainSummary, Comparison, Estimate, Measure, compare, comparison_table};
pub use sampler::WeightSummary;
pub use theory::{Parametrisation, Theory};

/// Application 9 to the harness.
pub const APP: AppInfo = AppInfo {
    name: "train_flowmodels9",
    about: "Flow sampling of the phi^4 lattice field theory, trained against the action",
    default_config: include_str!("../../configs/app9.toml"),
    data_parallel: true,
};

/// The `[run]` keys of application 9 beside [`crate::run::RunHeader`]'s.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// Fixed base draws on which every epoch's ESS, log Z and acceptance are measured.
    pub validation_size: usize,
    /// Flow proposals of the report's Metropolis chain (and `mcmc`'s default).
    pub mcmc_samples: usize,
}

/// The `[objective]` group.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveGroup {
    /// Steps over which the action's weight rises from `anneal_from` to 1 (0: no annealing).
    pub anneal_steps: u64,
    /// The action's weight at the first step when annealing.
    pub anneal_from: f64,
    /// The path-gradient estimator (lower variance near convergence, one more flow pass).
    pub path_gradient: bool,
    /// The weight of a mode-covering term, `-log q` of fields from an HMC chain of the action
    /// (independent of the baseline's); 0 turns it off.
    #[serde(default)]
    pub forward_kl_weight: f64,
    /// Fields that chain keeps (one per trajectory, after the baseline's thermalisation).
    #[serde(default = "default_forward_kl_fields")]
    pub forward_kl_fields: usize,
    /// Of them, fields per training step.
    #[serde(default = "default_forward_kl_batch")]
    pub forward_kl_batch: usize,
}

fn default_forward_kl_fields() -> usize {
    20000
}

fn default_forward_kl_batch() -> usize {
    256
}

/// The `[proposal]` group: how the Metropolis chain's proposals are drawn ([`Proposal`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalGroup {
    /// Propose `phi` or `-phi` with equal probability (for flows without `z2`).
    #[serde(default)]
    pub symmetric: bool,
    /// The weight of the base's wide component, in [0, 1); 0: the flow's own N(0, 1).
    pub wide_fraction: f64,
    /// Its standard deviation per site (positive).
    pub wide_scale: f64,
}

impl Default for ProposalGroup {
    fn default() -> Self {
        Self {
            symmetric: false,
            wide_fraction: 0.0,
            wide_scale: 1.0,
        }
    }
}

impl ProposalGroup {
    /// The proposal it describes; the error names the keys.
    pub fn proposal(&self) -> Result<Proposal> {
        Proposal::new(self.wide_fraction, self.wide_scale, self.symmetric)
            .map_err(|e| anyhow::anyhow!("proposal.wide_fraction / proposal.wide_scale: {e}"))
    }
}

/// What the commands after `train` need of a run besides its model: `theory.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunTheory {
    /// The lattice.
    pub lattice: Vec<usize>,
    /// The couplings in the standard parametrisation.
    pub couplings: Phi4Couplings,
    /// The theory as configured.
    pub theory: Theory,
    /// The HMC baseline's settings.
    pub hmc: HmcConfig,
    /// Proposals of the Metropolis chain.
    pub mcmc_samples: usize,
    /// The base they are pushed from (runs written before it had none: the flow's own).
    #[serde(default)]
    pub proposal: ProposalGroup,
    /// The seed of the run.
    pub seed: u64,
}

impl RunTheory {
    /// The objective of this theory (the action, for weights).
    pub fn objective(&self) -> Result<ReverseKl> {
        Ok(ReverseKl::new(flowcore::lattice::Phi4::new(
            &self.lattice,
            self.couplings,
        )?))
    }

    /// Read `theory.json` of a run.
    pub fn load(run: &Path) -> Result<Self> {
        let path = run.join("theory.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is {} a finished {} run directory?",
                path.display(),
                run.display(),
                APP.name
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a theory", path.display()))
    }
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The lattice.
    pub lattice: Vec<usize>,
    /// The couplings in the standard parametrisation.
    pub couplings: Phi4Couplings,
    /// ESS, log Z and acceptance over the report's proposals.
    pub weights: WeightSummary,
    /// The plain flow samples' observables (biased by the flow's error).
    pub flow: ChainSummary,
    /// The flow + Metropolis chain's (exact).
    pub flow_metropolis: ChainSummary,
    /// The Hybrid Monte Carlo baseline's.
    pub hmc: ChainSummary,
    /// Flow + Metropolis against HMC, observable by observable.
    pub comparison: Vec<Comparison>,
    /// The largest |pull| of `|M|`, `chi`, `energy_density` and `G(0)`..`G(T/2)`.
    pub max_abs_pull: f64,
    /// How training went and where the outputs are.
    #[serde(flatten)]
    pub run: RunRecord,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

/// Train application 9 as configured; everything goes into the run directory and tracking.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::reenter_in_pool!(train(opts));
    train_ranked(opts, &SingleProcess)?.context("one process is rank 0")
}

/// [`train`] as one rank of a data-parallel run over `ranks`.
pub fn train_ranked(opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
    let mut resolved = ResolvedConfig::new(&APP, opts)?;
    let run: RunGroup = resolved.group("run")?;
    let mut theory: Theory = resolved.group("theory")?;
    theory.keep_given(&crate::run::config::user_table(opts)?, &mut resolved.table);
    let objective_group: ObjectiveGroup = resolved.group("objective")?;
    let hmc: HmcConfig = resolved.group("hmc")?;
    let proposal: ProposalGroup = resolved.group("proposal")?;
    resolved.finish()?;
    proposal.proposal()?;
    let action = theory.action()?;
    hmc.validate()?;
    for (key, n) in [
        ("run.validation_size", run.validation_size),
        ("run.mcmc_samples", run.mcmc_samples),
    ] {
        if n < 2 {
            bail!("{key} must be at least 2, got {n}");
        }
    }
    let objective_group = check_objective(objective_group)?;
    let mut model = resolved.model.clone();
    if let ArchitectureConfig::Lattice(c) = &mut model {
        if c.lattice.is_empty() {
            c.lattice = theory.lattice.clone();
        } else if c.lattice != theory.lattice {
            bail!(
                "model.lattice = {:?} but theory.lattice = {:?}: leave model.lattice out",
                c.lattice,
                theory.lattice
            );
        }
    }
    if let ArchitectureConfig::Lattice(c) = &model
        && !c.z2
        && !proposal.symmetric
    {
        tracing::warn!(
            "model.z2 = false and proposal.symmetric = false: a flow that is not Z2-equivariant \
             may learn one vacuum, and its Metropolis chain then stays there; set \
             proposal.symmetric = true"
        );
    }
    let model = model.with_data_shape(&DataShape::features(action.sites()));
    let run_theory = RunTheory {
        lattice: theory.lattice.clone(),
        couplings: action.couplings(),
        theory: theory.clone(),
        hmc: hmc.clone(),
        mcmc_samples: run.mcmc_samples,
        proposal,
        seed: resolved.training.seed,
    };
    let mut objective = ReverseKl::new(action);
    objective.anneal_steps = objective_group.anneal_steps;
    objective.anneal_from = objective_group.anneal_from;
    objective.path_gradient = objective_group.path_gradient;
    if objective_group.forward_kl_weight > 0.0 {
        objective.forward_kl = Some(reference_fields(
            objective.action(),
            &hmc,
            &objective_group,
            resolved.training.seed,
        )?);
    }
    let mut source = PriorSource::new(
        objective.action().sites(),
        resolved.training.seed,
        run.validation_size,
    );
    tracing::info!(
        "phi^4 on {:?}: kappa {}, m_sq {}, lambda {}",
        theory.lattice,
        run_theory.couplings.kappa,
        run_theory.couplings.m_sq,
        run_theory.couplings.lambda
    );
    let lattice_tag = theory
        .lattice
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("x");
    train_app(
        opts,
        ranks,
        AppRun {
            config: &resolved,
            tags: vec![("lattice".into(), lattice_tag)],
            files: vec![("theory.json", serde_json::to_string_pretty(&run_theory)?)],
        },
        Training {
            model: &model,
            base: BaseConfig::default(),
            objective: &objective,
            data: &mut source,
            config: &resolved.training,
        },
        |r, _| report::report(&run_theory, &objective, r),
    )
}

/// The mode-covering term's fields: an HMC chain of the action from a seed of its own, so the
/// baseline the report checks against stays independent of training.
fn reference_fields(
    action: &flowcore::lattice::Phi4,
    hmc: &HmcConfig,
    o: &ObjectiveGroup,
    seed: u64,
) -> Result<ForwardKlTerm> {
    let config = HmcConfig {
        trajectories: o.forward_kl_fields,
        seed: hmc.seed.wrapping_add(0x5EED).wrapping_add(seed),
        ..hmc.clone()
    };
    let mut fields = Vec::with_capacity(o.forward_kl_fields * action.sites());
    let acceptance = hmc::run(action, &config, |phi| {
        fields.extend(phi.iter().map(|&v| v as f32));
    })?;
    tracing::info!(
        "forward KL term: {} HMC fields (acceptance {acceptance:.3}), weight {}, {} per step",
        o.forward_kl_fields,
        o.forward_kl_weight,
        o.forward_kl_batch
    );
    ForwardKlTerm::new(
        fields,
        action.sites(),
        o.forward_kl_weight,
        o.forward_kl_batch,
        seed,
    )
    .map_err(anyhow::Error::msg)
}

fn check_objective(o: ObjectiveGroup) -> Result<ObjectiveGroup> {
    if !(o.forward_kl_weight.is_finite() && o.forward_kl_weight >= 0.0) {
        bail!(
            "objective.forward_kl_weight must be a number >= 0, got {}",
            o.forward_kl_weight
        );
    }
    if o.forward_kl_weight > 0.0 && (o.forward_kl_fields < 2 || o.forward_kl_batch == 0) {
        bail!(
            "objective.forward_kl_fields must be at least 2 and objective.forward_kl_batch \
             positive, got {} and {}",
            o.forward_kl_fields,
            o.forward_kl_batch
        );
    }
    if o.anneal_steps > 0 && !(o.anneal_from.is_finite() && (0.0..=1.0).contains(&o.anneal_from)) {
        bail!(
            "objective.anneal_from must lie in [0, 1], got {}",
            o.anneal_from
        );
    }
    Ok(o)
}

/// The flow + Metropolis chain of `n` proposals from the model of the run in `run`, drawn
/// from `seed` and pushed from `proposal` (the run's `[proposal]` when `None`): the weights'
/// summary and the plain and exact chains' observables.
pub fn mcmc(
    run: &Path,
    n: usize,
    seed: u64,
    proposal: Option<ProposalGroup>,
) -> Result<(WeightSummary, ChainSummary, ChainSummary)> {
    crate::run::reenter_in_pool!(mcmc(run, n, seed, proposal));
    if n < 2 {
        bail!("--n must be at least 2, got {n}");
    }
    let theory = RunTheory::load(run)?;
    let proposal = proposal.unwrap_or(theory.proposal).proposal()?;
    let flow = load_model(run, &APP)?;
    let objective = theory.objective()?;
    let measure = Measure::new(objective.action());
    let device = crate::run::device();
    let draws = sampler::draw(&flow, &objective, &proposal, &measure, n, seed, &device);
    let (plain, exact, weights) = draws.summaries(&measure, seed);
    Ok((weights, plain, exact))
}

/// The HMC baseline of the run in `run`'s theory, `trajectories` long (its config's when
/// `None`), from `seed` (its config's when `None`).
pub fn hmc(run: &Path, trajectories: Option<usize>, seed: Option<u64>) -> Result<ChainSummary> {
    crate::run::reenter_in_pool!(hmc(run, trajectories, seed));
    let theory = RunTheory::load(run)?;
    let objective = theory.objective()?;
    let measure = Measure::new(objective.action());
    let mut config = theory.hmc.clone();
    if let Some(n) = trajectories {
        if n < 2 {
            bail!("--n must be at least 2, got {n}");
        }
        config.trajectories = n;
    }
    if let Some(s) = seed {
        config.seed = s;
    }
    Ok(sampler::hmc_baseline(&objective, &measure, &config)?.0)
}
