//! Application 8's rows of `(c, x)`: a generator drawn fresh for every batch, a CSV or ROOT
//! trees held in memory, or HDF5 files streamed in shuffled blocks; all whitened with statistics of the
//! training rows, which the run keeps ([`TableInfo`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flowcore::train::{Batch, DataSource};
use flowdata::{
    Block, ColumnRange, Conditional, Hdf5Table, Points, ShuffledRows, StreamOptions, batch_rng,
    read_points_csv, read_root_table,
};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{DataGroup, RunGroup};
use crate::shared::points::take_rows;

/// Per-column shift and scale: `(v - mean) / std`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Whitening {
    /// Column means.
    pub mean: Vec<f64>,
    /// Column standard deviations (1 where a column is constant).
    pub std: Vec<f64>,
}

impl Whitening {
    /// The statistics of `values` (`[n, dim]`), or the identity when `enabled` is false.
    fn of(values: &[f32], dim: usize, enabled: bool) -> Self {
        let n = (values.len() / dim.max(1)).max(1) as f64;
        let mut mean = vec![0.0; dim];
        let mut std = vec![1.0; dim];
        if enabled {
            for row in values.chunks(dim) {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += f64::from(v) / n;
                }
            }
            let mut var = vec![0.0; dim];
            for row in values.chunks(dim) {
                for j in 0..dim {
                    var[j] += (f64::from(row[j]) - mean[j]).powi(2) / n;
                }
            }
            std = var
                .iter()
                .map(|v| if *v > 1e-24 { v.sqrt() } else { 1.0 })
                .collect();
        }
        Self { mean, std }
    }

    /// `values` whitened.
    pub fn apply(&self, values: &[f32]) -> Vec<f32> {
        let d = self.mean.len();
        values
            .iter()
            .enumerate()
            .map(|(k, &v)| ((f64::from(v) - self.mean[k % d]) / self.std[k % d]) as f32)
            .collect()
    }

    /// `values` back in the data's units.
    pub fn undo(&self, values: &[f32]) -> Vec<f32> {
        let d = self.mean.len();
        values
            .iter()
            .enumerate()
            .map(|(k, &v)| (f64::from(v) * self.std[k % d] + self.mean[k % d]) as f32)
            .collect()
    }

    /// log |det| of the whitening map, per row: what converts densities of whitened values
    /// to the data's.
    pub fn log_det(&self) -> f64 {
        -self.std.iter().map(|s| s.ln()).sum::<f64>()
    }
}

/// What a run knows about its table besides the model: `table.json` in the run directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableInfo {
    /// The generator or the file(s).
    pub source: String,
    /// The generator the rows come from, when known: the report compares with its density.
    pub truth: Option<String>,
    /// Names of the condition's columns.
    pub c_columns: Vec<String>,
    /// Names of the data's columns.
    pub x_columns: Vec<String>,
    /// Whitening of `c`.
    pub c_whitening: Whitening,
    /// Whitening of `x`.
    pub x_whitening: Whitening,
    /// The smallest value of each condition column in the training rows seen.
    pub c_min: Vec<f64>,
    /// The largest.
    pub c_max: Vec<f64>,
    /// Conditions kept out of training.
    pub held_out: Vec<Vec<f64>>,
    /// The distinct conditions of the training rows when there are at most 64 (a discrete
    /// condition): `estimate` chooses among them unless given candidates.
    pub discrete_conditions: Option<Vec<Vec<f64>>>,
}

impl TableInfo {
    /// Values of `c` per row.
    pub fn cond_dim(&self) -> usize {
        self.c_columns.len()
    }

    /// Values of `x` per row.
    pub fn dim(&self) -> usize {
        self.x_columns.len()
    }

    /// The generator of the rows, when known.
    pub fn generator(&self) -> Result<Option<Conditional>> {
        let Some(t) = &self.truth else {
            return Ok(None);
        };
        let g: Conditional = t.parse()?;
        Ok(Some(g.holding_out(&self.held_out)?))
    }
}

enum Source {
    Generator(Conditional),
    Memory { c: Vec<f32>, x: Vec<f32> },
    Hdf5(Box<ShuffledRows>),
}

/// The rows of a run, whitened for training.
pub struct Rows {
    source: Source,
    info: TableInfo,
    /// Held-out rows, raw: conditions and data.
    validation: (Vec<f32>, Vec<f32>),
    /// Rows of a CSV whose condition is held out, raw.
    held_out_rows: (Vec<f32>, Vec<f32>),
    seed: u64,
}

/// `true` when `c` equals one of `labels` (to 1e-6).
pub fn is_held_out(c: &[f32], labels: &[Vec<f64>]) -> bool {
    labels.iter().any(|l| {
        l.len() == c.len()
            && l.iter()
                .zip(c)
                .all(|(a, &b)| (a - f64::from(b)).abs() < 1e-6)
    })
}

impl Rows {
    /// The rows `run` and `data` name, drawn or shuffled from `seed`. Every file is checked
    /// before anything else happens.
    pub fn open(run: &RunGroup, data: &DataGroup, seed: u64) -> Result<Self> {
        let given: Vec<&str> = [
            ("data.csv", !data.csv.is_empty()),
            ("data.root", !data.root.is_empty()),
            ("data.hdf5", !data.hdf5.is_empty()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if given.len() > 1 {
            bail!("{} are all given: choose one", given.join(" and "));
        }
        let truth = (!data.truth.is_empty()).then(|| data.truth.clone());
        if let Some(t) = &truth {
            t.parse::<Conditional>().context("data.truth")?;
        }
        if !data.csv.is_empty() {
            csv_rows(run, data, truth, seed)
        } else if !data.root.is_empty() {
            root_rows(run, data, truth, seed)
        } else if !data.hdf5.is_empty() {
            hdf5_rows(run, data, truth, seed)
        } else {
            let g: Conditional = run.dataset.parse().context("run.dataset")?;
            let g = g.holding_out(&run.held_out).context("run.held_out")?;
            let (vc, vx) = g.sample(run.validation_size.max(1), &mut batch_rng(seed, u64::MAX));
            let (wc, wx) = g.sample(data.whiten_rows.max(2), &mut batch_rng(seed, u64::MAX - 2));
            let info = info(
                g.to_string(),
                Some(g.to_string()),
                crate::shared::csv::axis_names(g.cond_dim(), "c"),
                crate::shared::csv::axis_names(g.dim(), "x"),
                (&wc, &wx),
                data.whiten,
                run.held_out.clone(),
            );
            Ok(Self {
                source: Source::Generator(g),
                info,
                validation: (vc, vx),
                held_out_rows: (Vec::new(), Vec::new()),
                seed,
            })
        }
    }

    /// What the run keeps about its table.
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    /// The held-out rows, raw: conditions and data.
    pub fn raw_validation(&self) -> &(Vec<f32>, Vec<f32>) {
        &self.validation
    }

    /// A CSV's rows whose condition is held out, raw.
    pub fn held_out_rows(&self) -> &(Vec<f32>, Vec<f32>) {
        &self.held_out_rows
    }

    fn whitened(&self, c: &[f32], x: &[f32]) -> Batch {
        Batch {
            x: self.info.x_whitening.apply(x),
            y: self.info.c_whitening.apply(c),
        }
    }
}

impl DataSource for Rows {
    fn dim(&self) -> usize {
        self.info.dim()
    }

    fn y_dim(&self) -> usize {
        self.info.cond_dim()
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let (c, x) = match &mut self.source {
            Source::Generator(g) => g.sample(batch_size, &mut batch_rng(self.seed, step)),
            Source::Memory { c, x } => {
                let (cd, d) = (self.info.cond_dim(), self.info.dim());
                let n = x.len() / d;
                let mut rng = batch_rng(self.seed, step);
                let picks: Vec<usize> = (0..batch_size).map(|_| rng.random_range(0..n)).collect();
                (take_rows(c, cd, &picks), take_rows(x, d, &picks))
            }
            Source::Hdf5(stream) => stream
                .rows(step * batch_size as u64, batch_size)
                .map_err(|e| e.to_string())?,
        };
        Ok(self.whitened(&c, &x))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        let (c, x) = &self.validation;
        Ok(self.whitened(c, x))
    }
}

/// The run's description of a table of `(c, x)` rows, its statistics from `sample`.
fn info(
    source: String,
    truth: Option<String>,
    c_columns: Vec<String>,
    x_columns: Vec<String>,
    sample: (&[f32], &[f32]),
    whiten: bool,
    held_out: Vec<Vec<f64>>,
) -> TableInfo {
    let cd = c_columns.len();
    let (c, x) = sample;
    let column = |j: usize| c.iter().skip(j).step_by(cd).map(|&v| f64::from(v));
    let mut distinct: Vec<Vec<f64>> = Vec::new();
    for row in c.chunks(cd) {
        let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        if !distinct.contains(&row) {
            distinct.push(row);
            if distinct.len() > 64 {
                break;
            }
        }
    }
    TableInfo {
        source,
        truth,
        c_whitening: Whitening::of(c, cd, whiten),
        x_whitening: Whitening::of(x, x_columns.len(), whiten),
        c_min: (0..cd)
            .map(|j| column(j).fold(f64::INFINITY, f64::min))
            .collect(),
        c_max: (0..cd)
            .map(|j| column(j).fold(f64::NEG_INFINITY, f64::max))
            .collect(),
        c_columns,
        x_columns,
        held_out,
        discrete_conditions: (distinct.len() <= 64).then_some(distinct),
    }
}

fn csv_rows(run: &RunGroup, data: &DataGroup, truth: Option<String>, seed: u64) -> Result<Rows> {
    let pts = read_points_csv(Path::new(&data.csv)).context("data.csv")?;
    pts.check_outliers(&data.csv).context("data.csv")?;
    table_rows(run, data, &data.csv, &pts, truth, seed)
}

fn root_rows(run: &RunGroup, data: &DataGroup, truth: Option<String>, seed: u64) -> Result<Rows> {
    let files = files_in("data.root", &data.root, &["root"])?;
    let tree = (!data.tree.is_empty()).then_some(data.tree.as_str());
    let pts = read_root_table(&files, tree).context("data.root")?;
    let name = format!("{} ROOT file(s): {}", files.len(), data.root.join(", "));
    pts.check_outliers(&name).context("data.root")?;
    table_rows(run, data, &name, &pts, truth, seed)
}

/// The rows of a table held in memory (a CSV or ROOT trees), split by the named columns.
fn table_rows(
    run: &RunGroup,
    data: &DataGroup,
    name: &str,
    pts: &Points,
    truth: Option<String>,
    seed: u64,
) -> Result<Rows> {
    if data.c_columns.is_empty() {
        bail!(
            "data.c_columns: name the condition's columns of {name} (it has: {})",
            pts.columns.join(", ")
        );
    }
    let find = |col: &String, key: &str| {
        pts.columns.iter().position(|c| c == col).with_context(|| {
            format!(
                "data.{key}: {name} has no column `{col}` (it has: {})",
                pts.columns.join(", ")
            )
        })
    };
    let c_idx: Vec<usize> = data
        .c_columns
        .iter()
        .map(|n| find(n, "c_columns"))
        .collect::<Result<_>>()?;
    let x_idx: Vec<usize> = if data.x_columns.is_empty() {
        (0..pts.dim).filter(|j| !c_idx.contains(j)).collect()
    } else {
        data.x_columns
            .iter()
            .map(|n| find(n, "x_columns"))
            .collect::<Result<_>>()?
    };
    if x_idx.is_empty() {
        bail!("{name}: every column is a condition; no x is left");
    }
    let (mut c, mut x) = (Vec::new(), Vec::new());
    let (mut hc, mut hx) = (Vec::new(), Vec::new());
    for row in pts.values.chunks(pts.dim) {
        let rc: Vec<f32> = c_idx.iter().map(|&j| row[j]).collect();
        let rx = x_idx.iter().map(|&j| row[j]);
        if is_held_out(&rc, &run.held_out) {
            hc.extend(rc);
            hx.extend(rx);
        } else {
            c.extend(rc);
            x.extend(rx);
        }
    }
    if !run.held_out.is_empty() && hc.is_empty() {
        bail!(
            "run.held_out: no row of {name} has the condition {:?}",
            run.held_out
        );
    }
    let (cd, d) = (c_idx.len(), x_idx.len());
    let n = x.len() / d;
    if n < 10 {
        bail!("{name}: {n} rows are too few to train on");
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut batch_rng(seed, u64::MAX));
    let n_val = run.validation_size.min(n / 5).max(1);
    let (val, train) = order.split_at(n_val);
    let (tc, tx) = (take_rows(&c, cd, train), take_rows(&x, d, train));
    let columns = |idx: &[usize]| idx.iter().map(|&j| pts.columns[j].clone()).collect();
    let info = info(
        name.to_string(),
        truth,
        columns(&c_idx),
        columns(&x_idx),
        (&tc, &tx),
        data.whiten,
        run.held_out.clone(),
    );
    Ok(Rows {
        validation: (take_rows(&c, cd, val), take_rows(&x, d, val)),
        source: Source::Memory { c: tc, x: tx },
        info,
        held_out_rows: (hc, hx),
        seed,
    })
}

/// The files a `key` (data.hdf5, data.root) names: files as given, folders as their files with
/// one of `extensions`.
pub fn files_in(key: &str, entries: &[String], extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in entries {
        let p = PathBuf::from(e);
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| format!("{key}: cannot list {e}"))?
                .filter_map(|d| d.ok().map(|d| d.path()))
                .filter(|f| {
                    f.extension()
                        .is_some_and(|x| extensions.iter().any(|&w| x == w))
                })
                .collect();
            if inside.is_empty() {
                bail!(
                    "{key}: the folder {e} holds no .{} file",
                    extensions.join(" or .")
                );
            }
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p);
        }
    }
    Ok(files)
}

fn hdf5_rows(run: &RunGroup, data: &DataGroup, truth: Option<String>, seed: u64) -> Result<Rows> {
    if !run.held_out.is_empty() {
        bail!("run.held_out works with generators, CSV and ROOT tables, not with data.hdf5");
    }
    let range = |key: &str, v: &str| -> Result<ColumnRange> {
        if v.is_empty() {
            bail!("data.{key}: give the column range of {key} in the HDF5 dataset, e.g. \"0:14\"");
        }
        v.parse().with_context(|| format!("data.{key}"))
    };
    let (c, x) = (range("c", &data.c)?, range("x", &data.x)?);
    let files = files_in("data.hdf5", &data.hdf5, &["h5", "hdf5"])?;
    let table = Hdf5Table::open(&files, &data.dataset, c, x).context("data.hdf5")?;
    // Validation: the last rows of every file, the same share of each.
    let total = table.total_rows();
    let wanted = (run.validation_size as u64).min(total / 5).max(1);
    let per_file = wanted.div_ceil(files.len() as u64);
    let mut train_blocks = Vec::new();
    let mut val_blocks = Vec::new();
    for (file, &n) in table.rows().iter().enumerate() {
        let v = per_file.min(n / 5);
        let mut start = 0;
        while start < n - v {
            let rows = (data.block_rows.max(1) as u64).min(n - v - start);
            train_blocks.push(Block { file, start, rows });
            start += rows;
        }
        if v > 0 {
            val_blocks.push(Block {
                file,
                start: n - v,
                rows: v,
            });
        }
    }
    if train_blocks.is_empty() {
        bail!("data.hdf5: the files hold {total} rows, too few to train on");
    }
    let mut reader = table.reader();
    let (mut vc, mut vx) = (Vec::new(), Vec::new());
    for b in &val_blocks {
        let (bc, bx) = reader.read(b).context("data.hdf5 (validation rows)")?;
        vc.extend(bc);
        vx.extend(bx);
    }
    let mut stream = ShuffledRows::new(
        table.clone(),
        train_blocks,
        StreamOptions {
            window: data.window_blocks,
            prefetch: data.prefetch,
            seed,
        },
    );
    let sample_rows = (data.whiten_rows.max(2) as u64).min(stream.rows_per_pass()) as usize;
    let (wc, wx) = stream
        .rows(0, sample_rows)
        .context("data.hdf5 (whitening rows)")?;
    let name = |r: ColumnRange, p: &str| (r.start..r.end).map(|j| format!("{p}{j}")).collect();
    let info = info(
        format!("{} HDF5 file(s): {}", files.len(), data.hdf5.join(", ")),
        truth,
        name(c, "col"),
        name(x, "col"),
        (&wc, &wx),
        data.whiten,
        Vec::new(),
    );
    tracing::info!(
        "{} rows in {} file(s): {} for training, {} held out",
        total,
        files.len(),
        stream.rows_per_pass(),
        vx.len() / x.len()
    );
    Ok(Rows {
        source: Source::Hdf5(Box::new(stream)),
        info,
        validation: (vc, vx),
        held_out_rows: (Vec::new(), Vec::new()),
        seed,
    })
}
