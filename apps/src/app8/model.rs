//! A trained p(x | c) in the data's units: the flow of a run with its whitening undone.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use flowcore::Flow;

use super::APP;
use super::data::TableInfo;
use crate::run::load_model;
use crate::shared::infer::{rows, to_vec};

/// Rows per forward pass.
const CHUNK: usize = 4096;

/// The flow of a run and what it knows about its table.
pub struct ConditionalModel {
    /// The flow, on whitened values.
    pub flow: Flow,
    /// Columns, whitening, training range of `c`.
    pub info: TableInfo,
    run: std::path::PathBuf,
}

impl ConditionalModel {
    /// The model of the finished run in `run`.
    pub fn load(run: &Path) -> Result<Self> {
        let flow = load_model(run, &APP)?;
        let path = run.join("table.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: is it an application 8 run?", path.display()))?;
        let info: TableInfo =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        Ok(Self {
            flow,
            info,
            run: run.to_path_buf(),
        })
    }

    /// The same flow on `device` with autodiff, for gradients with respect to the condition.
    pub fn flow_with_gradients(&self, device: &Device) -> Result<Flow> {
        let path = self.run.join("model.safetensors");
        Ok(flowcore::checkpoint::load_flow(&path, &device.clone().autodiff())?.0)
    }

    /// Refuse conditions of the wrong width, naming `what` and the columns expected.
    pub fn check_condition(&self, c: &[f32], what: &str) -> Result<()> {
        let cd = self.info.cond_dim();
        if c.is_empty() || !c.len().is_multiple_of(cd) {
            bail!(
                "{what}: {} value(s), but the model's condition has {cd} ({})",
                c.len(),
                self.info.c_columns.join(", ")
            );
        }
        if let Some(v) = c.iter().find(|v| !v.is_finite()) {
            bail!("{what}: {v} is not a finite number");
        }
        Ok(())
    }

    /// log p(x | c) in nats of every row (conditions `[n, cond_dim]`, data `[n, dim]`).
    pub fn log_prob(&self, c: &[f32], x: &[f32], device: &Device) -> Vec<f32> {
        let (cd, d) = (self.info.cond_dim(), self.info.dim());
        let cw = self.info.c_whitening.apply(c);
        let xw = self.info.x_whitening.apply(x);
        let shift = self.info.x_whitening.log_det() as f32;
        let n = x.len() / d;
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(CHUNK) {
            let m = CHUNK.min(n - start);
            let ct = rows(&cw[start * cd..(start + m) * cd], cd, device);
            let xt = rows(&xw[start * d..(start + m) * d], d, device);
            out.extend(
                to_vec(self.flow.log_prob(xt, Some(&ct)).into_data())
                    .into_iter()
                    .map(|v| v + shift),
            );
        }
        out
    }

    /// One `x` per row of `c` (`[n, cond_dim]`), drawn from `seed`.
    pub fn sample_rows(&self, c: &[f32], seed: u64, device: &Device) -> Vec<f32> {
        let cd = self.info.cond_dim();
        let n = c.len() / cd;
        let cw = self.info.c_whitening.apply(c);
        let mut out = Vec::with_capacity(n * self.info.dim());
        for (k, start) in (0..n).step_by(CHUNK).enumerate() {
            let m = CHUNK.min(n - start);
            let ct = rows(&cw[start * cd..(start + m) * cd], cd, device);
            let x = self
                .flow
                .sample(m, 1.0, seed.wrapping_add(k as u64), Some(&ct), device);
            out.extend(self.info.x_whitening.undo(&to_vec(x.into_data())));
        }
        out
    }

    /// `n` draws of `x` at the one condition `c`.
    pub fn sample(&self, c: &[f32], n: usize, seed: u64, device: &Device) -> Vec<f32> {
        let repeated: Vec<f32> = (0..n).flat_map(|_| c.iter().copied()).collect();
        self.sample_rows(&repeated, seed, device)
    }
}
