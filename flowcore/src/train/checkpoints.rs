//! Checkpoints of a training run: `RUN_DIR/checkpoints/epoch-000004/` and `best/`, each with
//! the model (`model.safetensors`, the flowcore checkpoint format), the optimizer state
//! (`optimizer.bpk`, burn's record) and the trainer state (`state.json`). A checkpoint is
//! written into a hidden temporary directory and renamed into place, so a crash or a NaN
//! never leaves a broken checkpoint under a real name.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use super::{EpochStats, ScheduleState};
use crate::arch::ArchitectureConfig;
use crate::checkpoint::{load_flow_expecting, save_flow};
use crate::io::write_atomic;
use crate::{Flow, FlowError, Result};

pub(crate) const MODEL_FILE: &str = "model.safetensors";
pub(crate) const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub(crate) const STATE_FILE: &str = "state.json";

/// Everything besides weights and optimizer that a resumed run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// The learning-rate schedule's state.
    pub schedule: ScheduleState,
    /// Best validation NLL so far.
    #[serde(with = "super::schedule::infinity_as_null")]
    pub best_val: f64,
    /// Its epoch (0: none yet).
    pub best_epoch: usize,
    /// Epochs since the validation NLL last improved by the early-stopping margin.
    pub bad_epochs: usize,
    /// Every completed epoch.
    pub history: Vec<EpochStats>,
}

impl Default for TrainState {
    fn default() -> Self {
        Self {
            epochs_done: 0,
            step: 0,
            schedule: ScheduleState::default(),
            best_val: f64::INFINITY,
            best_epoch: 0,
            bad_epochs: 0,
            history: Vec::new(),
        }
    }
}

/// The checkpoint directory of a run.
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    root: PathBuf,
}

impl CheckpointDir {
    /// Checkpoints under `root` (created when the first is written).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FlowError + '_ {
        move |source| FlowError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The epoch checkpoints present, oldest first.
    pub fn epochs(&self) -> Vec<(usize, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut found: Vec<(usize, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let epoch = name.strip_prefix("epoch-")?.parse().ok()?;
                Some((epoch, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    /// The newest epoch checkpoint.
    pub fn latest(&self) -> Option<PathBuf> {
        self.epochs().pop().map(|(_, p)| p)
    }

    fn write(
        &self,
        name: &str,
        flow: &Flow,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root).map_err(Self::io(&self.root))?;
        let tmp = self.root.join(format!(".{name}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(Self::io(&tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(Self::io(&tmp))?;
        let written = (|| {
            save_flow(
                flow,
                &tmp.join(MODEL_FILE),
                serde_json::json!({ "epochs_done": state.epochs_done }),
            )?;
            let optimizer = optim
                .into_bytes()
                .map_err(|e| FlowError::checkpoint(tmp.join(OPTIMIZER_FILE), e.to_string()))?;
            write_atomic(&tmp.join(OPTIMIZER_FILE), &optimizer)?;
            let json = serde_json::to_vec_pretty(state)
                .map_err(|e| FlowError::checkpoint(tmp.join(STATE_FILE), e.to_string()))?;
            write_atomic(&tmp.join(STATE_FILE), &json)
        })();
        if written.is_err() {
            // A full disk: give back what the partial checkpoint took.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        written?;
        let dest = self.root.join(name);
        if dest.exists() {
            // Move the old one aside first: a crash between the two renames leaves it there.
            let old = self.root.join(format!(".{name}.old"));
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&dest, &old).map_err(Self::io(&dest))?;
            std::fs::rename(&tmp, &dest).map_err(Self::io(&dest))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, &dest).map_err(Self::io(&dest))?;
        }
        Ok(dest)
    }

    /// Clear what a process killed while writing a checkpoint left: its hidden temporary
    /// directory (removed), and a checkpoint moved aside to be replaced (put back when its
    /// replacement is missing, else removed). Returns how many were cleared. Call it only while
    /// no other process writes these checkpoints (a resumed run holds its folder's lock).
    pub fn recover(&self) -> Result<usize> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(0);
        };
        let mut cleared = 0;
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = entry.path();
            let hidden = name.strip_prefix('.');
            if let Some(real) = hidden.and_then(|n| n.strip_suffix(".old")) {
                let dest = self.root.join(real);
                if dest.exists() {
                    std::fs::remove_dir_all(&path).map_err(Self::io(&path))?;
                } else {
                    std::fs::rename(&path, &dest).map_err(Self::io(&dest))?;
                }
            } else if hidden.is_some_and(|n| n.ends_with(".tmp")) {
                std::fs::remove_dir_all(&path).map_err(Self::io(&path))?;
            } else {
                continue;
            }
            tracing::info!(path = %path.display(), "cleared what a killed checkpoint write left");
            cleared += 1;
        }
        Ok(cleared)
    }

    /// Save the checkpoint of a completed epoch.
    pub fn save_epoch(
        &self,
        epoch: usize,
        flow: &Flow,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<PathBuf> {
        self.write(&format!("epoch-{epoch:06}"), flow, optim, state)
    }

    /// Save (replace) the `best` checkpoint.
    pub fn save_best(
        &self,
        flow: &Flow,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<PathBuf> {
        self.write("best", flow, optim, state)
    }

    /// Delete all but the newest `keep` epoch checkpoints (`best` is kept apart).
    pub fn prune(&self, keep: usize) -> Result<()> {
        let epochs = self.epochs();
        let drop = epochs.len().saturating_sub(keep.max(1));
        for (_, dir) in epochs.into_iter().take(drop) {
            std::fs::remove_dir_all(&dir).map_err(Self::io(&dir))?;
        }
        Ok(())
    }

    /// Load a checkpoint directory: the flow (which must have `architecture`), the optimizer
    /// state and the trainer state.
    pub fn load(
        &self,
        dir: &Path,
        architecture: &ArchitectureConfig,
        device: &Device,
    ) -> Result<(Flow, Bytes, TrainState)> {
        let (flow, _) = load_flow_expecting(&dir.join(MODEL_FILE), architecture, device)?;
        let optimizer_path = dir.join(OPTIMIZER_FILE);
        let optimizer = std::fs::read(&optimizer_path).map_err(Self::io(&optimizer_path))?;
        let state_path = dir.join(STATE_FILE);
        let json = std::fs::read(&state_path).map_err(Self::io(&state_path))?;
        let state = serde_json::from_slice(&json)
            .map_err(|e| FlowError::checkpoint(&state_path, format!("does not parse: {e}")))?;
        Ok((flow, Bytes::from_bytes_vec(optimizer), state))
    }

    /// Load the `best` checkpoint, if there is one.
    pub fn load_best(
        &self,
        architecture: &ArchitectureConfig,
        device: &Device,
    ) -> Result<Option<(Flow, Bytes, TrainState)>> {
        let dir = self.root.join("best");
        if !dir.exists() {
            return Ok(None);
        }
        self.load(&dir, architecture, device).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_killed_write_left_is_cleared_and_a_moved_checkpoint_put_back() {
        let root = std::env::temp_dir().join(format!("flowcore-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dirs = CheckpointDir::new(root.clone());
        assert_eq!(
            dirs.recover().unwrap(),
            0,
            "a missing folder has nothing to clear"
        );
        // Killed between the two renames of `best`, in the write of epoch 3, and in a replaced
        // epoch checkpoint whose replacement had landed.
        for (dir, file) in [
            (".best.old", MODEL_FILE),
            (".best.tmp", "model.safetensors.tmp.77"),
            (".epoch-000003.tmp", STATE_FILE),
            (".epoch-000002.old", STATE_FILE),
            ("epoch-000002", STATE_FILE),
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join(file), dir).unwrap();
        }
        assert_eq!(dirs.recover().unwrap(), 4);
        let mut left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["best", "epoch-000002"]);
        let best = std::fs::read_to_string(root.join("best").join(MODEL_FILE)).unwrap();
        assert_eq!(best, ".best.old", "the old `best` was not the one put back");
        let epoch = std::fs::read_to_string(root.join("epoch-000002").join(STATE_FILE)).unwrap();
        assert_eq!(
            epoch, "epoch-000002",
            "the checkpoint in place was replaced"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
