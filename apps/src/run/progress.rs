//! A progress bar per epoch (loss, bits/dim for a likelihood, learning rate, samples/s), drawn only when stderr
//! is a terminal; otherwise one log line per epoch, which reads well in CI and AWS Batch logs.

use std::io::IsTerminal;

use flowcore::train::{EpochStats, Observer, StepStats};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws training progress.
pub struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
    interactive: bool,
}

impl Progress {
    /// Progress for a run of `epochs` epochs.
    pub fn new(epochs: usize) -> Self {
        Self {
            bar: None,
            epochs,
            interactive: std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for Progress {
    fn on_epoch_start(&mut self, epoch: usize, steps: usize) {
        if !self.interactive {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        self.bar = Some(bar);
    }

    fn on_step(&mut self, s: &StepStats) {
        if let Some(bar) = &self.bar {
            bar.set_position(s.step_in_epoch as u64);
            if s.step_in_epoch % 5 == 1 {
                let bpd = s
                    .bits_per_dim
                    .map_or_else(String::new, |b| format!(" | {b:.4} bits/dim"));
                bar.set_message(format!(
                    "loss {:.4}{bpd} | lr {:.2e} | {:.0} samples/s",
                    s.loss, s.learning_rate, s.samples_per_sec
                ));
            }
        }
    }

    fn on_epoch_end(&mut self, e: &EpochStats) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let bpd = e
            .val_bits_per_dim
            .map_or_else(String::new, |b| format!(" ({b:.4} bits/dim)"));
        let parts: String = e
            .val_parts
            .iter()
            .map(|(k, v)| format!(", {k} {v:.4}"))
            .collect();
        tracing::info!(
            "epoch {}/{}: train {} {:.4}, val {} {:.4}{bpd}{parts}, lr {:.2e}, {:.0} samples/s{}{}",
            e.epoch,
            self.epochs,
            e.loss,
            e.train_loss,
            e.loss,
            e.val_loss,
            e.learning_rate,
            e.samples_per_sec,
            e.ode_nfe_per_step
                .map(|n| format!(", {n:.1} NFE/step"))
                .unwrap_or_default(),
            if e.best { ", best" } else { "" }
        );
    }
}
