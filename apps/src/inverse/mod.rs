//! Applications 5, 6 and 7: inverse problems with an invertible network. A forward simulator
//! (robot arm, glacier gravity, seismic traces) gives endless `(x, y)` pairs; an INN on a
//! latent [`flowcore::Partition`] (Ardizzone et al. 2019) or a conditional flow `p(x | y)` (cINN) learns
//! the posterior, and the run is judged against reference posteriors from rejection sampling:
//! posterior MMD, re-simulation error and calibration.
//!
//! `train_flowmodelsN [train] [--method inn|cinn]`, `train_flowmodelsN posterior --run RUN_DIR
//! --y VALUES --n N`, and `train_flowmodelsN compare`, which trains both methods and prints a
//! table.
//!
//! [`data`]: the standardisation and the simulated pairs; [`posterior`]: sampling a trained
//! posterior; [`evaluation`]: the judgement and the report; [`figures`]; [`cli`].

pub mod cli;
pub mod data;
pub mod evaluation;
pub mod figures;
pub mod posterior;

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::prelude::Device;
use flowcore::arch::Mixing;
use flowcore::inn::{ConditionalObjective, InnLossConfig, InnObjective};
use flowcore::train::{Objective, SingleProcess};
use flowcore::{ArchitectureConfig, BaseConfig, DataShape, Flow, Partition, Role, Side};
use flowdata::inverse::{Glacier, JointSample, RobotArm, Seismic, Simulator};
use serde::{Deserialize, Serialize};

pub use crate::run::TrainOptions;
use crate::run::{AppInfo, AppRun, ResolvedConfig, RunRecord, Training, train_app};
pub use cli::InverseApp;
use data::{Normalization, Simulated};
pub use evaluation::{Evaluation, PosteriorCheck};
use posterior::parse_partition;
pub use posterior::{Posterior, ProblemFile, posterior};

/// Which inverse problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Application 5: the robot arm (parameter estimation, ill-conditioned).
    RobotArm,
    /// Application 6: glacier bedrock from surface gravity (ill-posed, no noise).
    Glacier,
    /// Application 7: layered velocities from a noisy seismogram (ill-posed, with noise).
    Seismic,
}

/// Application 5 to the harness.
pub const APP5: AppInfo = AppInfo {
    name: "train_flowmodels5",
    about: "Parameter estimation (the robot arm) with an invertible network",
    default_config: include_str!("../../configs/app5.toml"),
    data_parallel: false,
};

/// Application 6 to the harness.
pub const APP6: AppInfo = AppInfo {
    name: "train_flowmodels6",
    about: "An ill-posed inverse problem without noise (glacier bedrock from gravity)",
    default_config: include_str!("../../configs/app6.toml"),
    data_parallel: false,
};

/// Application 7 to the harness.
pub const APP7: AppInfo = AppInfo {
    name: "train_flowmodels7",
    about: "An ill-posed inverse problem with noise (layered earth from a seismogram)",
    default_config: include_str!("../../configs/app7.toml"),
    data_parallel: false,
};

impl Problem {
    /// Its application, to the harness.
    pub fn info(self) -> &'static AppInfo {
        match self {
            Self::RobotArm => &APP5,
            Self::Glacier => &APP6,
            Self::Seismic => &APP7,
        }
    }

    /// The binary, used as the `app` tag.
    pub fn app(self) -> &'static str {
        self.info().name
    }

    /// Its forward simulator.
    pub fn simulator(self) -> Box<dyn Simulator> {
        match self {
            Self::RobotArm => Box::new(RobotArm),
            Self::Glacier => Box::new(Glacier::default()),
            Self::Seismic => Box::new(Seismic::default()),
        }
    }

    /// A title for figures.
    pub fn title(self) -> &'static str {
        match self {
            Self::RobotArm => "robot arm",
            Self::Glacier => "glacier bedrock from gravity",
            Self::Seismic => "layered earth from a noisy seismogram",
        }
    }
}

/// INN or cINN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The INN on the partition, trained with the objective of Ardizzone et al.
    Inn,
    /// A flow over `x` conditioned on `y`, trained by maximum likelihood.
    Cinn,
}

impl Method {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Inn => "INN",
            Self::Cinn => "cINN",
        }
    }
}

/// The `[run]` keys of applications 5 to 7 (beside [`crate::run::RunHeader`]'s).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// `inn` or `cinn`.
    pub method: Method,
    /// The INN's two sides, e.g. `[x:4 | pad:2] -> [y:2 | z:2 | pad:2]`; the data and
    /// observation blocks must match the simulator.
    pub partition: String,
    /// Validation pairs (drawn once).
    pub validation_size: usize,
    /// Prior draws that set the standardisation of `x` and `y`.
    pub normalization_draws: usize,
    /// Test observations whose posteriors are compared with the reference.
    pub test_observations: usize,
    /// Posterior samples per test observation.
    pub posterior_samples: usize,
    /// Joint draws the reference posteriors are selected from.
    pub reference_draws: usize,
    /// Reference samples kept per observation.
    pub reference_keep: usize,
    /// `(x, y)` pairs of the calibration check.
    pub calibration_pairs: usize,
    /// Posterior samples per calibration pair.
    pub calibration_samples: usize,
    /// The INN's `real_nvp_dense` in two blocks, the data columns and the rest
    /// (`model.permutation = "blocks"`, split after the data): its first coupling makes `y`
    /// from the noise given `x` alone, the others turn `x` into `z` given `y`. The cINN, which
    /// has no second block, keeps `[model]`'s mixing.
    #[serde(default)]
    pub inn_blocks: bool,
}

/// `model` as the two blocks of [`RunGroup::inn_blocks`].
fn inn_blocks(
    model: ArchitectureConfig,
    partition: &Partition,
) -> Result<ArchitectureConfig, String> {
    let ArchitectureConfig::RealNvpDense(mut c) = model else {
        return Err(format!(
            "needs model.kind = \"real_nvp_dense\", got \"{}\"",
            model.kind()
        ));
    };
    let data: Vec<usize> = partition
        .ranges(Side::Input, Role::Data)
        .into_iter()
        .flatten()
        .collect();
    if data.iter().enumerate().any(|(i, &d)| i != d) {
        return Err(format!(
            "needs the data columns first on the input side of the partition, got {partition}"
        ));
    }
    c.permutation = Mixing::Blocks;
    c.split_at = data.len();
    Ok(ArchitectureConfig::RealNvpDense(c))
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The problem.
    pub problem: Problem,
    /// INN or cINN.
    pub method: Method,
    /// The INN's partition.
    pub partition: String,
    /// The final validation loss.
    pub val_loss: f64,
    /// Its name.
    pub loss: String,
    /// The posteriors against the reference.
    pub evaluation: Evaluation,
    /// How training went and where the outputs are.
    #[serde(flatten)]
    pub run: RunRecord,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

/// Train one method on one problem as configured; everything goes into the run directory and
/// tracking.
pub fn train(problem: Problem, opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::reenter_in_pool!(train(problem, opts));
    let mut resolved = ResolvedConfig::new(problem.info(), opts)?;
    let run: RunGroup = resolved.group("run")?;
    let inn_config: InnLossConfig = resolved.group("inn")?;
    resolved.finish()?;
    inn_config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: inn.{e}", resolved.origin))?;
    let sim = problem.simulator();
    let partition = parse_partition(&run.partition, sim.as_ref())?;
    let shape = match run.method {
        Method::Inn => DataShape::features(partition.dim()),
        Method::Cinn => DataShape::features(sim.x_dim()).with_cond_dim(sim.y_dim()),
    };
    let mut model = resolved.model.clone().with_data_shape(&shape);
    if run.method == Method::Inn && run.inn_blocks {
        model = inn_blocks(model, &partition)
            .map_err(|e| anyhow::anyhow!("{}: run.inn_blocks {e}", resolved.origin))?;
    }
    let seed = resolved.training.seed;
    let norm = Normalization::from_joint(&JointSample::draw(
        sim.as_ref(),
        run.normalization_draws.max(2),
        seed ^ 0x4E4F_524D,
    ));
    let file = ProblemFile {
        problem,
        method: run.method,
        partition: partition.to_string(),
        x_names: sim.x_names(),
        y_names: sim.y_names(),
        normalization: norm.clone(),
    };
    tracing::info!(
        "{} ({}): {} on {partition}",
        problem.title(),
        problem.app(),
        run.method.name(),
    );
    let mut data = Simulated {
        sim: sim.as_ref(),
        norm: &norm,
        seed,
        validation_size: run.validation_size.max(2),
    };
    let inn = InnObjective {
        partition: partition.clone(),
        config: inn_config,
    };
    if run.method == Method::Inn {
        let flow = Flow::new(model.clone(), &Device::flex())
            .with_context(|| "cannot build the model from [model]")?;
        inn.check_network(&flow).map_err(|e| {
            anyhow::anyhow!("{}: inn.{e}; here: run.inn_blocks = true", resolved.origin)
        })?;
    }
    let cinn = ConditionalObjective {
        x_dim: inn.x_dim(),
        noise_dim: inn.noise_dim(),
    };
    let objective: &dyn Objective = match run.method {
        Method::Inn => &inn,
        Method::Cinn => &cinn,
    };
    let summary = train_app(
        opts,
        &SingleProcess,
        AppRun {
            config: &resolved,
            tags: vec![
                ("method".into(), run.method.name().into()),
                ("partition".into(), partition.to_string()),
            ],
            files: vec![("problem.json", serde_json::to_string_pretty(&file)?)],
        },
        Training {
            model: &model,
            base: BaseConfig::default(),
            objective,
            data: &mut data,
            config: &resolved.training,
        },
        |r, _| {
            let posterior = Posterior::new(r.flow.clone(), &file, partition.clone());
            evaluation::report(problem, &run, &posterior, r)
        },
    )?;
    summary.context("one process is rank 0")
}

/// One row of the comparison table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComparisonRow {
    /// INN or cINN.
    pub method: Method,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Its evaluation.
    pub evaluation: Evaluation,
    /// Training time, seconds.
    pub train_seconds: f64,
    /// Optimizer steps per second.
    pub steps_per_sec: f64,
}

impl ComparisonRow {
    /// The row of a trained run.
    pub fn of(s: TrainSummary) -> Self {
        Self {
            method: s.report.method,
            run_dir: s.run_dir,
            evaluation: s.report.evaluation,
            train_seconds: s.report.run.train_seconds,
            steps_per_sec: s.report.run.steps_per_sec,
        }
    }
}

/// Train both methods with the same settings (the `--set`s apply to both) and compare them.
pub fn compare(problem: Problem, opts: &TrainOptions) -> Result<Vec<ComparisonRow>> {
    let mut rows = Vec::new();
    for method in [Method::Inn, Method::Cinn] {
        let mut o = opts.clone();
        o.sets.push(format!(
            "run.method={}",
            toml::Value::String(
                match method {
                    Method::Inn => "inn",
                    Method::Cinn => "cinn",
                }
                .into()
            )
        ));
        if let Some(dir) = &opts.run_dir {
            o.run_dir = Some(dir.join(method.name().to_lowercase()));
        }
        rows.push(ComparisonRow::of(train(problem, &o)?));
    }
    Ok(rows)
}

/// The comparison as a Markdown table.
pub fn format_comparison(problem: Problem, rows: &[ComparisonRow]) -> String {
    let mut out = format!(
        "{} ({})\n\n| method | posterior MMD | prior MMD | ratio | re-simulation error | \
         noise floor | calibration error | train s | steps/s |\n|---|---|---|---|---|---|---|---|---|\n",
        problem.title(),
        problem.app()
    );
    for r in rows {
        let e = &r.evaluation;
        out.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.3} | {:.4} | {:.4} | {:.4} | {:.0} | {:.1} |\n",
            r.method.name(),
            e.mmd,
            e.prior_mmd,
            e.mmd_ratio,
            e.resimulation_error,
            e.noise_floor,
            e.calibration_error,
            r.train_seconds,
            r.steps_per_sec
        ));
    }
    out
}
