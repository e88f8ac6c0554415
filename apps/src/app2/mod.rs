//! Application 2: image generation and anomaly detection. A Glow (or RealNVP) learns the
//! images of `ROOT/train/<class>/` by maximum likelihood on dequantised pixels; the run gets
//! bits/dim, samples at several temperatures, reconstructions, latent interpolations and
//! latent statistics, and the validation folders are scored for outliers: bits/dim, two
//! complexity-corrected scores, typicality, the latent norm and, for a multiscale Glow, the
//! ratio of its levels' likelihoods; the score that separates best flags images.

mod background;
mod cli;
mod data;
mod measures;
mod report;
mod score;

use anyhow::{Context, Result};
use flowcore::train::{Collective, MaximumLikelihood, SingleProcess};
use flowcore::{ArchitectureConfig, BaseConfig};
use serde::{Deserialize, Serialize};

pub use crate::run::TrainOptions;
use crate::run::{AppInfo, AppRun, ResolvedConfig, RunRecord, Training, train_app};
pub use crate::shared::csv::csv_field;
pub use crate::shared::images::{ImageRun, bits_per_dim_8bit};
pub use background::{BACKGROUND_FILE, BackgroundGroup};
pub use cli::App2;
use data::RunImages;
pub use measures::{COMMON_SCORES, LEVEL_RATIO, LIKELIHOOD_RATIO, Measured, Models, Scorer};
pub use score::{
    DEFAULT_SCORE, FolderStat, ImageScore, Reference, ScoreStat, ScoreSummary, format_table, score,
    score_set,
};

/// Application 2 to the harness.
pub const APP: AppInfo = AppInfo {
    name: "train_flowmodels2",
    about: "Image generation and anomaly detection with a normalizing flow",
    default_config: include_str!("../../configs/app2.toml"),
    data_parallel: true,
};

/// The `[run]` keys of application 2 beside [`crate::run::RunHeader`]'s and [`ImageRun`]'s.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// Temperatures of the sample grid.
    pub temperatures: Vec<f64>,
    /// Thresholds are this quantile of the training images' scores.
    pub score_quantile: f64,
    /// Images scored for the thresholds and the typicality reference: held-out images of the
    /// training classes when there are at least 50, else training images.
    pub reference_images: usize,
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The image root.
    pub images: String,
    /// Training images, and how many were skipped.
    pub train_images: usize,
    /// Unreadable training images skipped.
    pub train_skipped: usize,
    /// Validation images of the training classes.
    pub val_images: usize,
    /// Validation bits/dim (8-bit, all preprocessing log-dets included).
    pub val_bits_per_dim: f64,
    /// Largest |x - decode(encode(x))| over the reconstructed images, in [0, 1] units.
    pub reconstruction_max_abs_err: f64,
    /// Whether training images were mirrored (`run.augment.flip`, `"auto"` decided).
    #[serde(default)]
    pub flipped: bool,
    /// The scores of the validation folders.
    pub scores: ScoreSummary,
    /// How training went and where the outputs are.
    #[serde(flatten)]
    pub run: RunRecord,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

/// Train application 2 as configured, then report and score the validation folders.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::reenter_in_pool!(train(opts));
    train_ranked(opts, &SingleProcess)?.context("one process is rank 0")
}

/// [`train`] as one rank of a data-parallel run over `ranks`: every rank loads the image set and
/// makes (decodes, augments, dequantises) only its rows of each batch; rank 0 writes the run,
/// reports, scores and returns the summary, the others return `None`.
pub fn train_ranked(opts: &TrainOptions, ranks: &dyn Collective) -> Result<Option<TrainSummary>> {
    let mut resolved = ResolvedConfig::new(&APP, opts)?;
    let images: ImageRun = resolved.take("run")?;
    let run: RunGroup = resolved.group("run")?;
    let background: BackgroundGroup = resolved.group("background")?;
    resolved.finish()?;
    images.augment.validate("run.augment")?;
    background.validate()?;
    let model = resolved.model.clone().with_data_shape(&images.data_shape());
    let levels = match &model {
        ArchitectureConfig::Glow(glow) => glow.level_latents(),
        _ => Vec::new(),
    };
    let data = RunImages::load(&images)?;
    let mut source = data.source(&images, &resolved.training);
    train_app(
        opts,
        ranks,
        AppRun {
            config: &resolved,
            tags: vec![("images".into(), images.images.clone())],
            files: Vec::new(),
        },
        Training {
            model: &model,
            base: BaseConfig::default(),
            objective: &MaximumLikelihood,
            data: &mut source,
            config: &resolved.training,
        },
        |r, _| {
            let background_flow = if background.enabled {
                let augment = background
                    .augment
                    .resolve(&data.train, "background.augment");
                let mut images = data.source_with(&images, r.training, augment);
                let flow =
                    background::train(&model, &background, r.training, &mut images, r.run_dir)?;
                r.artifact(&r.path(BACKGROUND_FILE), None);
                Some(flow)
            } else {
                None
            };
            report::report(&images, &run, &data, levels, background_flow.as_ref(), r)
        },
    )
}
