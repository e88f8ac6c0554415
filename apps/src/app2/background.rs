//! The background model of the likelihood-ratio score: a second flow of the same architecture,
//! trained on the same images mirrored, rotated and scaled at random (and, as Ren et al. 2019
//! do, with a share of their pixels replaced by uniform noise, if asked). Seeing them at every
//! size, angle and side, it learns the local statistics (smooth regions, edges, dark
//! backgrounds) that make simple images likely under any image model, a general-domain model
//! in the sense of Schirrmeister et al. 2020, and little of the training data's layout.
//! `log p(x) - log p_background(x)` keeps the specific part. The two are saved together:
//! `background.safetensors` beside `model.safetensors`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use flowcore::checkpoint::save_flow;
use flowcore::train::{Batch, DataSource, TrainingConfig};
use flowcore::{ArchitectureConfig, Flow};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::shared::images::AugmentConfig;

/// The background model's file in a run directory.
pub const BACKGROUND_FILE: &str = "background.safetensors";

/// The `[background]` group.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackgroundGroup {
    /// Train the background model and add the `likelihood_ratio` score.
    pub enabled: bool,
    /// The share of pixels replaced by uniform noise in its training images (Ren et al.
    /// found 0.1-0.3 best without `augment`).
    pub noise_rate: f64,
    /// How its training images are mirrored, rotated and scaled (the keys of
    /// `run.augment`). Without it (the default of configs that predate it) the model learns
    /// the layout of the training images as the main model does, and the ratio of two such
    /// models separated nothing in our runs (AUROC 0.26 for clothes against digits).
    #[serde(default)]
    pub augment: AugmentConfig,
    /// Its epochs, as a share of the main model's: 0.5 keeps the run within 1.5x the cost.
    pub epochs_fraction: f64,
    /// For a Glow: its steps per level and hidden channels, when not the main model's. A
    /// smaller model learns local statistics and little else, which is what the ratio
    /// should divide out.
    #[serde(default)]
    pub steps_per_level: Option<usize>,
    /// See `steps_per_level`.
    #[serde(default)]
    pub hidden_channels: Option<usize>,
}

impl BackgroundGroup {
    /// Check values; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if !(self.noise_rate.is_finite() && (0.0..1.0).contains(&self.noise_rate)) {
            bail!(
                "background.noise_rate must lie in [0, 1), got {}",
                self.noise_rate
            );
        }
        self.augment.validate("background.augment")?;
        if self.steps_per_level == Some(0) || self.hidden_channels == Some(0) {
            bail!("background.steps_per_level and background.hidden_channels must be positive");
        }
        if !(self.epochs_fraction.is_finite() && self.epochs_fraction > 0.0) {
            bail!(
                "background.epochs_fraction must be positive, got {}",
                self.epochs_fraction
            );
        }
        Ok(())
    }

    /// The background model's architecture: the main one's, smaller where asked.
    pub fn model(&self, main: &ArchitectureConfig) -> ArchitectureConfig {
        match main {
            ArchitectureConfig::Glow(g) => ArchitectureConfig::Glow(flowcore::GlowConfig {
                steps_per_level: self.steps_per_level.unwrap_or(g.steps_per_level),
                hidden_channels: self.hidden_channels.unwrap_or(g.hidden_channels),
                ..g.clone()
            }),
            other => other.clone(),
        }
    }

    /// The background model's `[training]`: the main one's, for fewer epochs, from another
    /// seed, keeping its best epoch.
    pub fn training(&self, main: &TrainingConfig) -> TrainingConfig {
        TrainingConfig {
            epochs: ((main.epochs as f64 * self.epochs_fraction).round() as usize).max(1),
            seed: main.seed.wrapping_add(0xB6),
            restore_best: true,
            ..main.clone()
        }
    }
}

/// `inner`'s batches with each value replaced, with probability `rate`, by a uniform draw on
/// `[0, 1)`: a uniformly random 8-bit pixel, dequantised. Drawn from `(seed, step)`.
pub(super) struct Noised<'a> {
    inner: &'a mut dyn DataSource,
    rate: f64,
    seed: u64,
}

impl<'a> Noised<'a> {
    pub(super) fn new(inner: &'a mut dyn DataSource, rate: f64, seed: u64) -> Self {
        Self { inner, rate, seed }
    }

    fn noise(&self, mut batch: Batch, stream: u64) -> Batch {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        for v in &mut batch.x {
            if rng.random::<f64>() < self.rate {
                *v = rng.random::<f32>();
            }
        }
        batch
    }
}

impl DataSource for Noised<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let batch = self.inner.train_batch(step, batch_size)?;
        Ok(self.noise(batch, step + 1))
    }

    fn validation(&mut self) -> Result<Batch, String> {
        let batch = self.inner.validation()?;
        Ok(self.noise(batch, 0))
    }

    fn discretization_nats(&self) -> f64 {
        self.inner.discretization_nats()
    }
}

/// Train the background model into `run_dir` (its checkpoints under `background/`, resumed
/// from there after an interruption) and save it as [`BACKGROUND_FILE`].
pub(super) fn train(
    model: &ArchitectureConfig,
    group: &BackgroundGroup,
    main: &TrainingConfig,
    data: &mut dyn DataSource,
    run_dir: &Path,
) -> Result<Flow> {
    let config = group.training(main);
    let device = config.autodiff_device(&crate::run::device());
    let flow = Flow::seeded(group.model(model), config.seed, &device)
        .context("cannot build the background model from [model]")?;
    tracing::info!(
        "background model: {} x {} steps on images mirrored ({:?}), rotated by up to {} \
         degrees, scaled by up to {} either way, {:.0}% of pixels noised",
        config.epochs,
        config.steps_per_epoch,
        group.augment.flip,
        group.augment.rotate_degrees,
        group.augment.zoom,
        100.0 * group.noise_rate
    );
    let mut noised = Noised::new(data, group.noise_rate, config.seed);
    let mut progress = crate::run::progress::Progress::new(config.epochs);
    let outcome = flowcore::train::fit(
        flow,
        &mut noised,
        &config,
        &run_dir.join("background"),
        true,
        &device,
        &mut [&mut progress],
    )
    .context("training the background model stopped")?;
    let flow = outcome.flow.valid();
    save_flow(
        &flow,
        &run_dir.join(BACKGROUND_FILE),
        serde_json::json!({ "app": super::APP.name, "role": "background" }),
    )?;
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Constant;
    impl DataSource for Constant {
        fn dim(&self) -> usize {
            4
        }
        fn train_batch(&mut self, _step: u64, batch_size: usize) -> Result<Batch, String> {
            Ok(Batch::unlabelled(vec![0.5; 4 * batch_size]))
        }
        fn validation(&mut self) -> Result<Batch, String> {
            Ok(Batch::unlabelled(vec![0.5; 4 * 1000]))
        }
    }

    #[test]
    fn noise_replaces_about_the_rate_of_values_the_same_way_each_time() {
        let mut inner = Constant;
        let mut noised = Noised::new(&mut inner, 0.2, 7);
        let a = noised.train_batch(3, 2500).unwrap().x;
        let b = noised.train_batch(3, 2500).unwrap().x;
        let c = noised.train_batch(4, 2500).unwrap().x;
        assert_eq!(a, b);
        assert_ne!(a, c);
        let changed = a.iter().filter(|&&v| v != 0.5).count() as f64 / a.len() as f64;
        assert!((changed - 0.2).abs() < 0.02, "{changed}");
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
        let val = noised.validation().unwrap().x;
        assert_eq!(val, noised.validation().unwrap().x);
    }

    #[test]
    fn bad_groups_are_refused_with_the_key() {
        let good = BackgroundGroup {
            enabled: true,
            noise_rate: 0.2,
            epochs_fraction: 0.5,
            steps_per_level: None,
            hidden_channels: None,
            augment: AugmentConfig {
                rotate_degrees: 180.0,
                zoom: 0.9,
                ..AugmentConfig::default()
            },
        };
        good.validate().unwrap();
        for (bad, key) in [
            (
                BackgroundGroup {
                    noise_rate: 1.0,
                    ..good.clone()
                },
                "noise_rate",
            ),
            (
                BackgroundGroup {
                    epochs_fraction: 0.0,
                    ..good.clone()
                },
                "epochs_fraction",
            ),
            (
                BackgroundGroup {
                    augment: AugmentConfig {
                        zoom: 1.0,
                        ..good.augment
                    },
                    ..good.clone()
                },
                "background.augment.zoom",
            ),
            (
                BackgroundGroup {
                    augment: AugmentConfig {
                        rotate_degrees: f64::NAN,
                        ..good.augment
                    },
                    ..good.clone()
                },
                "background.augment.rotate_degrees",
            ),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let main = TrainingConfig {
            epochs: 20,
            ..TrainingConfig::default()
        };
        let t = good.training(&main);
        assert_eq!((t.epochs, t.restore_best), (10, true));
        assert_ne!(t.seed, main.seed);
    }
}
