//! Application 8: conditional generation. A conditional flow learns p(x | c) from rows of
//! `(c, x)` (a generator, a CSV, or HDF5 files streamed in shuffled blocks), then samples x
//! for a given c, scores rows, estimates the most likely c for observed x (over candidates or
//! by gradient ascent) and generates at conditions it never saw (`interpolate`).

mod cli;
pub mod data;
pub mod estimate;
pub mod interpolate;
pub mod model;
mod report;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flowcore::train::{DataSource, MaximumLikelihood, SingleProcess};
use flowcore::{BaseConfig, DataShape};
use flowdata::{Conditional, batch_rng, read_points_csv, write_hdf5_table};
use serde::{Deserialize, Serialize};

pub use crate::run::TrainOptions;
use crate::run::{AppInfo, AppRun, ResolvedConfig, RunRecord, Training, train_app};
pub use cli::App8;
use data::Rows;
use estimate::{Ascent, Estimate};
use interpolate::HeldOutComparison;
use model::ConditionalModel;
pub use report::EstimateCheck;

/// Application 8 to the harness.
pub const APP: AppInfo = AppInfo {
    name: "train_flowmodels8",
    about: "Conditional generation p(x | c): sampling, estimating c, interpolating conditions",
    default_config: include_str!("../../configs/app8.toml"),
    data_parallel: false,
};

/// The `[run]` keys of application 8 beside [`crate::run::RunHeader`]'s.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// The generator, when `[data]` names no file.
    pub dataset: String,
    /// Held-out rows.
    pub validation_size: usize,
    /// Points per figure panel.
    pub plot_points: usize,
    /// Conditions kept out of training.
    #[serde(default)]
    pub held_out: Vec<Vec<f64>>,
}

/// The `[data]` group: a CSV, ROOT or HDF5 files, and how they are read.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataGroup {
    /// A CSV with a header ("" for none).
    pub csv: String,
    /// The condition columns of a CSV or ROOT table.
    pub c_columns: Vec<String>,
    /// Its data columns (none: all but the conditions).
    pub x_columns: Vec<String>,
    /// ROOT files or folders of them.
    pub root: Vec<String>,
    /// The TTree in each ROOT file ("": the file's only one).
    pub tree: String,
    /// HDF5 files or folders of them.
    pub hdf5: Vec<String>,
    /// The 2-D dataset in each HDF5 file.
    pub dataset: String,
    /// The condition's columns, `START:END`.
    pub c: String,
    /// The data's columns, `START:END`.
    pub x: String,
    /// Rows per HDF5 read.
    pub block_rows: usize,
    /// Blocks whose rows are shuffled together.
    pub window_blocks: usize,
    /// Windows read ahead.
    pub prefetch: usize,
    /// Whiten x and c.
    pub whiten: bool,
    /// Rows the whitening statistics come from.
    pub whiten_rows: usize,
    /// The generator that wrote the files, when known.
    pub truth: String,
}

/// The outcome of a training run, also written as `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The generator or the files.
    pub source: String,
    /// Values of x per row.
    pub dim: usize,
    /// Values of c per row.
    pub cond_dim: usize,
    /// Held-out -log p(x | c), nats per row, in the data's units.
    pub val_nll: f64,
    /// The same per dimension of x.
    pub val_nll_per_dim: f64,
    /// The true -log p(x | c) of the same rows, when the generator is known.
    pub true_nll: Option<f64>,
    /// The true conditional entropy H(x | c) at the held-out rows' conditions (closed form):
    /// the best held-out NLL a model can reach.
    pub conditional_entropy: Option<f64>,
    /// `(val_nll - conditional_entropy) / dim`.
    pub gap_per_dim: Option<f64>,
    /// `(val_nll - true_nll) / dim`: the model's KL divergence from the truth per dimension,
    /// estimated on the same rows (less noisy than the gap to the entropy).
    pub kl_per_dim: Option<f64>,
    /// How well the condition of held-out rows is estimated.
    pub estimate: EstimateCheck,
    /// Generation at the held-out conditions against the truth there.
    pub interpolation: Vec<HeldOutComparison>,
    /// How training went and where the outputs are.
    #[serde(flatten)]
    pub run: RunRecord,
}

/// The result of [`train`].
pub type TrainSummary = crate::run::TrainSummary<Report>;

/// Train application 8 as configured; everything goes into the run directory and tracking.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    crate::run::reenter_in_pool!(train(opts));
    let mut resolved = ResolvedConfig::new(&APP, opts)?;
    let run: RunGroup = resolved.take("run")?;
    let data: DataGroup = resolved.group("data")?;
    resolved.finish()?;
    let mut rows = Rows::open(&run, &data, resolved.training.seed)?;
    let info = rows.info().clone();
    let model = resolved
        .model
        .clone()
        .with_data_shape(&DataShape::features(rows.dim()).with_cond_dim(rows.y_dim()));
    if model.cond_dim() != rows.y_dim() {
        bail!(
            "model.cond_dim = {} but the data's condition has {} columns",
            model.cond_dim(),
            rows.y_dim()
        );
    }
    tracing::info!(
        "{}: x has {} columns, c has {}",
        info.source,
        info.dim(),
        info.cond_dim()
    );
    let summary = train_app(
        opts,
        &SingleProcess,
        AppRun {
            config: &resolved,
            tags: vec![("dataset".into(), info.source.clone())],
            files: vec![("table.json", serde_json::to_string_pretty(&info)?)],
        },
        Training {
            model: &model,
            base: BaseConfig::default(),
            objective: &MaximumLikelihood,
            data: &mut rows,
            config: &resolved.training,
        },
        |r, rows| report::report(&run, rows, r),
    )?;
    summary.context("one process is rank 0")
}

/// Parse conditions written as `a,b,...` (one) or `a,b;c,d` (several), in the data's units.
pub fn parse_conditions(text: &str) -> Result<Vec<Vec<f64>>> {
    text.split(';')
        .map(|row| {
            row.split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .with_context(|| format!("`{}` is not a number (in `{text}`)", v.trim()))
                })
                .collect()
        })
        .collect()
}

/// `n` samples of x at the condition `c` from the model of the run in `run`; with the model's
/// column names.
pub fn sample(run: &Path, c: &[f64], n: usize, seed: u64) -> Result<(Vec<f32>, Vec<String>)> {
    crate::run::reenter_in_pool!(sample(run, c, n, seed));
    if n == 0 {
        bail!("--n must be at least 1");
    }
    let model = ConditionalModel::load(run)?;
    let c: Vec<f32> = c.iter().map(|&v| v as f32).collect();
    model.check_condition(&c, "--c")?;
    if c.len() != model.info.cond_dim() {
        bail!(
            "--c: {} values, but the model's condition has {} ({})",
            c.len(),
            model.info.cond_dim(),
            model.info.c_columns.join(", ")
        );
    }
    let x = model.sample(&c, n, seed, &crate::run::device());
    Ok((x, model.info.x_columns.clone()))
}

/// The columns `wanted` of a points file: by name when its header has them all, else all of
/// its columns in order when there are as many; an error naming the file otherwise.
fn columns_of(path: &Path, wanted: &[String]) -> Result<(Vec<f32>, usize)> {
    let pts = read_points_csv(path)?;
    let idx: Option<Vec<usize>> = wanted
        .iter()
        .map(|w| pts.columns.iter().position(|c| c == w))
        .collect();
    let idx = match idx {
        Some(idx) => idx,
        None if pts.dim == wanted.len() => (0..pts.dim).collect(),
        None => bail!(
            "{}: expected the columns {} (by name in the header, or exactly {} columns in \
             that order), found {}",
            path.display(),
            wanted.join(", "),
            wanted.len(),
            pts.columns.join(", ")
        ),
    };
    let values = pts
        .values
        .chunks(pts.dim)
        .flat_map(|r| idx.iter().map(|&j| r[j]).collect::<Vec<_>>())
        .collect();
    Ok((values, pts.n))
}

/// log p(x | c) of every row of the CSV `points` (its c and x columns) under the model of
/// the run in `run`: the rows (c then x), their columns and the log-densities.
pub fn logprob(run: &Path, points: &Path) -> Result<(Vec<f32>, Vec<String>, Vec<f32>)> {
    crate::run::reenter_in_pool!(logprob(run, points));
    let model = ConditionalModel::load(run)?;
    let info = &model.info;
    let columns: Vec<String> = info
        .c_columns
        .iter()
        .chain(&info.x_columns)
        .cloned()
        .collect();
    let (values, n) = columns_of(points, &columns)?;
    let (cd, d) = (info.cond_dim(), info.dim());
    let (mut c, mut x) = (Vec::with_capacity(n * cd), Vec::with_capacity(n * d));
    for r in values.chunks(cd + d) {
        c.extend_from_slice(&r[..cd]);
        x.extend_from_slice(&r[cd..]);
    }
    let lp = model.log_prob(&c, &x, &crate::run::device());
    Ok((values, columns, lp))
}

/// What `estimate` is asked.
#[derive(Clone, Debug, Default)]
pub struct EstimateRequest {
    /// Choose among these conditions; none: the run's discrete conditions if it has them, else
    /// search continuously.
    pub candidates: Vec<Vec<f64>>,
    /// Search continuously even when the run's conditions are discrete.
    pub continuous: bool,
    /// One condition shared by all the observations.
    pub shared: bool,
    /// The continuous search.
    pub ascent: Ascent,
}

/// The most likely condition for the x of every row of the CSV `points` (or one for all rows
/// when `request.shared`), under the model of the run in `run`; with the model's condition
/// columns.
pub fn estimate(
    run: &Path,
    points: &Path,
    request: &EstimateRequest,
) -> Result<(Vec<Estimate>, Vec<String>)> {
    crate::run::reenter_in_pool!(estimate(run, points, request));
    let model = ConditionalModel::load(run)?;
    let (x, _) = columns_of(points, &model.info.x_columns)?;
    let device = crate::run::device();
    let candidates = if request.candidates.is_empty() && !request.continuous {
        model.info.discrete_conditions.clone().unwrap_or_default()
    } else {
        request.candidates.clone()
    };
    let est = if candidates.is_empty() {
        estimate::by_gradient(&model, &x, request.shared, request.ascent, &device)?
    } else {
        estimate::over_candidates(&model, &x, &candidates, request.shared, &device)?
    };
    Ok((est, model.info.c_columns.clone()))
}

/// Generate at the held-out conditions of the run in `run` (or at `labels`) and compare with
/// true samples: drawn from the run's generator, or the run's CSV rows held out there.
pub fn interpolate(
    run: &Path,
    labels: &[Vec<f64>],
    n: usize,
    seed: u64,
) -> Result<Vec<HeldOutComparison>> {
    crate::run::reenter_in_pool!(interpolate(run, labels, n, seed));
    let model = ConditionalModel::load(run)?;
    let labels = if labels.is_empty() {
        model.info.held_out.clone()
    } else {
        labels.to_vec()
    };
    if labels.is_empty() {
        bail!(
            "{} held no condition out; give --c, or train with run.held_out",
            run.display()
        );
    }
    let generator = model.info.generator()?;
    let rows = if generator.is_none() {
        // The CSV's held-out rows, as the run read them.
        let config = std::fs::read_to_string(run.join("config.toml"))
            .with_context(|| format!("{}: no config.toml", run.display()))?;
        let table: toml::Table = toml::from_str(&config)?;
        let group = |g: &str| -> Result<toml::Value> {
            let mut v = table
                .get(g)
                .cloned()
                .with_context(|| format!("config.toml: no [{g}]"))?;
            if let (Some(t), "run") = (v.as_table_mut(), g) {
                for k in [
                    "name",
                    "output_dir",
                    "tracking_dir",
                    "experiment",
                    "log_every",
                ] {
                    t.remove(k);
                }
            }
            Ok(v)
        };
        let mut run_group: RunGroup = group("run")?.try_into()?;
        run_group.held_out = labels.clone();
        let data: DataGroup = group("data")?.try_into()?;
        Some(Rows::open(&run_group, &data, 0)?)
    } else {
        None
    };
    let device = crate::run::device();
    let mut out = Vec::new();
    for (k, label) in labels.iter().enumerate() {
        let c: Vec<f32> = label.iter().map(|&v| v as f32).collect();
        model.check_condition(&c, "--c")?;
        let truth = match (&generator, &rows) {
            (Some(g), _) => {
                let mut rng = batch_rng(seed ^ 0x7A3E, k as u64);
                (0..n)
                    .flat_map(|_| g.sample_given(label, &mut rng))
                    .map(|v| v as f32)
                    .collect()
            }
            (None, Some(rows)) => report::true_samples(None, rows, label, n, 0)?,
            (None, None) => unreachable!("rows are read when there is no generator"),
        };
        if truth.is_empty() {
            bail!("no true samples at {label:?} to compare with");
        }
        out.push(interpolate::compare(&model, label, &truth, seed, &device).0);
    }
    Ok(out)
}

/// Write `rows` rows of `generator` into `files` HDF5 files `DIR/NAME-000.h5`, ... (dataset
/// `data`, c then x columns), chunked by `chunk_rows` and deflated at `deflate`; the files
/// written and the `[data]` settings that read them. Refuses to overwrite a file.
pub fn simulate(
    generator: &str,
    rows: usize,
    files: usize,
    dir: &Path,
    chunk_rows: usize,
    deflate: Option<u32>,
    seed: u64,
) -> Result<(Vec<PathBuf>, String)> {
    let g: Conditional = generator.parse()?;
    if rows == 0 || files == 0 || files > rows {
        bail!("--rows must be at least 1 and --files between 1 and --rows");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = generator.split(':').next().unwrap_or("table");
    let paths: Vec<PathBuf> = (0..files)
        .map(|f| dir.join(format!("{name}-{f:03}.h5")))
        .collect();
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        bail!("{} exists: choose another --out folder", p.display());
    }
    let (cd, d) = (g.cond_dim(), g.dim());
    for (f, path) in paths.iter().enumerate() {
        let n = rows / files + usize::from(f < rows % files);
        let (c, x) = g.sample(n, &mut batch_rng(seed, f as u64));
        let values: Vec<f32> = c
            .chunks(cd)
            .zip(x.chunks(d))
            .flat_map(|(c, x)| c.iter().chain(x).copied().collect::<Vec<_>>())
            .collect();
        write_hdf5_table(path, "data", &values, cd + d, chunk_rows, deflate)?;
    }
    let settings = format!(
        "--set 'data.hdf5=[\"{}\"]' --set data.c=0:{cd} --set data.x={cd}:{} --set \
         data.truth={g}",
        dir.display(),
        cd + d
    );
    Ok((paths, settings))
}
