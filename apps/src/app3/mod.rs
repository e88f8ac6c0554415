//! Application 3: generative classification of images. A Glow (or RealNVP) learns the
//! labelled folders `ROOT/train/<class>/` with a Gaussian per class in latent space (IB-INN) or
//! with the `[y | z]` split of Ardizzone et al.; the run gets accuracy and confusion on the
//! `val/` folders of the training classes, calibration, class-conditional samples per class,
//! and out-of-distribution detection of the `val/` folders of other classes by likelihood.

mod cli;
mod data;
mod report;

use std::path::Path;

use anyhow::{Context, Result};
use flowcore::ArchitectureConfig;
use flowcore::transform::{ScaleFn, Transform};
use flowdata::images::{load_any, to_unit};
use serde::{Deserialize, Serialize};

pub use crate::run::TrainOptions;
use crate::run::config::take;
use crate::run::{AppInfo, AppRun, ResolvedConfig, RunRecord, Training, load_model, train_app};
use crate::shared::classify::{ClassMetrics, ClassesFile, Classification, Mode, class_log_probs};
use crate::shared::images::{ImageRun, bits_per_dim_rows};
pub use cli::App3;
use data::RunImages;
pub use report::OodReport;

/// Application 3 to the harness.
pub const APP: AppInfo = AppInfo {
    name: "train_flowmodels3",
    about: "Generative classification of images with a normalizing flow",
    default_config: include_str!("../../configs/app3.toml"),
    data_parallel: false,
};

/// The `[run]` keys of application 3 beside [`crate::run::RunHeader`]'s and [`ImageRun`]'s.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// Class-conditional samples per class in the grid.
    pub samples_per_class: usize,
    /// Temperature of the class-conditional samples.
    pub temperature: f64,
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The images.
    pub images: String,
    /// `ib` or `inn`.
    pub mode: Mode,
    /// The training classes.
    pub classes: Vec<String>,
    /// Validation metrics.
    pub metrics: ClassMetrics,
    /// Out-of-distribution detection, when `val/` has folders of other classes.
    pub ood: Option<OodReport>,
    /// How training went and where the outputs are.
    #[serde(flatten)]
    pub run: RunRecord,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

/// Train application 3 as configured, then report on the validation folders.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::reenter_in_pool!(train(opts));
    let mut resolved = ResolvedConfig::new(&APP, opts)?;
    let images: ImageRun = resolved.take("run")?;
    let run: RunGroup = resolved.group("run")?;
    let classification = Classification::take(&mut resolved)?;
    resolved.finish()?;
    images.augment.validate("run.augment")?;
    let mode = classification.group.mode;
    let mut model = resolved.model.clone().with_data_shape(&images.data_shape());
    // The INN objective runs the network backwards on random z: Glow's sigmoid scale, whose
    // inverse is unbounded, overflowed within 50 steps in our runs, a soft-clamped one did
    // not. Unless the config names a transform, the INN mode gets the clamped one.
    if let ArchitectureConfig::Glow(glow) = &mut model
        && mode == Mode::Inn
        && !resolved.gives("model", "transform")
    {
        glow.transform = Transform::Affine {
            scale: ScaleFn::Atan { clamp: 1.0 },
        };
        tracing::info!("classifier.mode = \"inn\": Glow couplings with an atan-clamped scale");
    }
    let data = RunImages::load(&images, resolved.training.seed)?;
    let classes = &data.classes;
    let trained = classification.start(images.spec().len(), classes, false)?;
    tracing::info!(
        "{}: {} training images of {:?}, {} validation images, {}",
        images.images,
        data.train.len(),
        classes,
        data.val_labels.len(),
        mode.name()
    );
    let mut source = data.source(&images, &resolved.training);
    let summary = train_app(
        opts,
        &flowcore::train::SingleProcess,
        AppRun {
            config: &resolved,
            tags: vec![
                ("images".into(), images.images.clone()),
                classification.tag(),
            ],
            files: vec![trained.file.clone()],
        },
        Training {
            model: &model,
            base: classification.group.base(classes.len()),
            objective: trained.objective.as_ref(),
            data: &mut source,
            config: &resolved.training,
        },
        |r, _| report::report(&images, &run, mode, &data, &trained.classifier, r),
    )?;
    summary.context("one process is rank 0")
}

/// One image's prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// Where it came from.
    pub path: String,
    /// Its folder.
    pub folder: String,
    /// The most probable class.
    pub predicted: String,
    /// `p(class | image)`, in the order of the run's classes.
    pub probabilities: Vec<f32>,
    /// Its bits/dim under the model (high: unlike the training images).
    pub bits_per_dim: f64,
}

/// Class probabilities of the images at `images` (a folder of `<class>/` subfolders or images,
/// `embedded:<set>/val`, or `s3://...`) under the model of the run in `run`; and the run's
/// classes.
pub fn predict(run: &Path, images: &str) -> Result<(Vec<Prediction>, Vec<String>)> {
    crate::run::reenter_in_pool!(predict(run, images));
    let file = ClassesFile::load(run)?;
    let flow = load_model(run, &APP)?;
    let image_run: ImageRun = {
        let path = run.join("config.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut table: toml::Table = text.parse()?;
        take(&mut table, "run", &path.display().to_string())?
    };
    let spec = image_run.spec();
    let set = load_any(images, spec, image_run.on_bad_image)?;
    let classifier = file.classifier()?;
    let dim = spec.len();
    let device = crate::run::device();
    let x = to_unit(&set.pixels);
    let lp = class_log_probs(&classifier, &flow, &x, dim, &device);
    let bpd = bits_per_dim_rows(&flow, &set.pixels, spec, &device);
    let k = file.classes.len();
    let out = (0..set.len())
        .map(|i| {
            let probs: Vec<f32> = lp[i * k..(i + 1) * k].iter().map(|v| v.exp()).collect();
            let best = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(j, _)| j);
            Prediction {
                path: set.paths[i].clone(),
                folder: set.classes[i].clone(),
                predicted: file.classes[best].clone(),
                probabilities: probs,
                bits_per_dim: bpd[i],
            }
        })
        .collect();
    Ok((out, file.classes))
}
