//! The training engine: exact resume, the NaN guard, early stopping, clipping, schedules.

use std::path::PathBuf;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use flowcore::train::{
    Batch, CheckpointDir, DataSource, Divergence, EpochStats, Schedule, ScheduleState, TrainError,
    TrainingConfig, clip_global_norm, fit, mean_nll,
};
use flowcore::{ArchitectureConfig, Flow, RealNvpConfig};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Correlated 2-D Gaussian batches, drawn by step; optionally NaN at one step, or drifting
/// away from the validation distribution as steps go on.
struct Gaussian {
    seed: u64,
    nan_at: Option<u64>,
    drift_per_step: f32,
}

impl Gaussian {
    fn draw(&self, stream: u64, n: usize, shift: f32) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        let mut out = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let (a, b): (f32, f32) = (rng.random::<f32>() - 0.5, rng.random::<f32>() - 0.5);
            out.push(3.0 * a + shift);
            out.push(2.0 * a + b);
        }
        out
    }
}

impl DataSource for Gaussian {
    fn dim(&self) -> usize {
        2
    }
    fn train_batch(&mut self, step: u64, batch_size: usize) -> Result<Batch, String> {
        let mut v = self.draw(step + 1, batch_size, self.drift_per_step * step as f32);
        if self.nan_at == Some(step) {
            v[3] = f32::NAN;
        }
        Ok(Batch::unlabelled(v))
    }
    fn validation(&mut self) -> Result<Batch, String> {
        Ok(Batch::unlabelled(self.draw(0, 1024, 0.0)))
    }
}

fn run_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flowcore-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn new_flow(device: &Device) -> Flow {
    let cfg = RealNvpConfig {
        num_layers: 3,
        hidden_units: vec![16, 16],
        ..RealNvpConfig::new(2)
    };
    Flow::seeded(ArchitectureConfig::RealNvpDense(cfg), 5, device).unwrap()
}

fn config(epochs: usize) -> TrainingConfig {
    TrainingConfig {
        epochs,
        steps_per_epoch: 20,
        batch_size: 64,
        schedule: Schedule::CosineWarmRestarts {
            period: 30,
            period_mult: 2.0,
            min_lr: 1e-5,
        },
        ..TrainingConfig::default()
    }
}

fn weights(flow: &Flow) -> Vec<f32> {
    struct All(Vec<f32>);
    impl ModuleVisitor for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.extend(
                p.val()
                    .to_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap(),
            );
        }
    }
    let mut all = All(Vec::new());
    flow.visit(&mut all);
    all.0
}

#[test]
fn resuming_continues_the_same_curve() {
    let device = Device::flex().autodiff();
    let data = || Gaussian {
        seed: 1,
        nan_at: None,
        drift_per_step: 0.0,
    };
    let straight_dir = run_dir("straight");
    let straight = fit(
        new_flow(&device),
        &mut data(),
        &config(4),
        &straight_dir,
        false,
        &device,
        &mut [],
    )
    .unwrap();

    let split_dir = run_dir("split");
    fit(
        new_flow(&device),
        &mut data(),
        &config(2),
        &split_dir,
        false,
        &device,
        &mut [],
    )
    .unwrap();
    let resumed = fit(
        new_flow(&device),
        &mut data(),
        &config(4),
        &split_dir,
        true,
        &device,
        &mut [],
    )
    .unwrap();

    assert_eq!(resumed.history.len(), 4);
    let (a, b) = (weights(&straight.flow), weights(&resumed.flow));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert_eq!(
        diff, 0.0,
        "resumed weights differ from an uninterrupted run by {diff}"
    );
    for (a, b) in straight.history.iter().zip(&resumed.history) {
        assert_eq!(
            (a.epoch, a.train_loss, a.val_loss),
            (b.epoch, b.train_loss, b.val_loss)
        );
        assert!((a.learning_rate - b.learning_rate).abs() < 1e-15);
    }
}

#[test]
fn a_nan_stops_training_and_keeps_the_last_checkpoint() {
    let device = Device::flex().autodiff();
    let cfg = config(5);
    let nan_step = 2 * cfg.steps_per_epoch as u64 + 7; // in epoch 3
    let dir = run_dir("nan");
    let mut data = Gaussian {
        seed: 2,
        nan_at: Some(nan_step),
        drift_per_step: 0.0,
    };
    let err = fit(
        new_flow(&device),
        &mut data,
        &cfg,
        &dir,
        false,
        &device,
        &mut [],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TrainError::NonFinite { epoch: 3, .. }),
        "{msg}"
    );
    assert!(msg.contains("loss is NaN at epoch 3"), "{msg}");
    assert!(msg.contains("epoch-000002"), "{msg}");
    let ckpts = CheckpointDir::new(dir.join("checkpoints"));
    let epochs: Vec<usize> = ckpts.epochs().into_iter().map(|(e, _)| e).collect();
    assert_eq!(epochs, vec![1, 2]);
    let (flow, _, state) = ckpts
        .load(
            &ckpts.latest().unwrap(),
            new_flow(&device).config(),
            &device,
        )
        .unwrap();
    assert_eq!(state.epochs_done, 2);
    let nll = mean_nll(
        &flow.valid(),
        &data.validation().unwrap().x,
        2,
        &Device::flex(),
    );
    assert!(nll.is_finite());
}

#[test]
fn early_stopping_restores_the_best_weights() {
    let device = Device::flex().autodiff();
    let cfg = TrainingConfig {
        epochs: 30,
        early_stopping_patience: 2,
        ..config(30)
    };
    // Training data drift away from the validation data: validation gets worse after a while.
    let mut data = Gaussian {
        seed: 3,
        nan_at: None,
        drift_per_step: 0.02,
    };
    let dir = run_dir("early");
    let out = fit(
        new_flow(&device),
        &mut data,
        &cfg,
        &dir,
        false,
        &device,
        &mut [],
    )
    .unwrap();
    assert!(out.stopped_early, "ran all {} epochs", out.history.len());
    assert!(out.history.len() < 30);
    let (best_nll, best_epoch) = out.best;
    assert!(best_epoch < out.history.len());
    let nll = mean_nll(
        &out.flow.valid(),
        &data.validation().unwrap().x,
        2,
        &Device::flex(),
    );
    assert!(
        (nll - best_nll).abs() < 1e-5,
        "returned model has {nll}, best was {best_nll}"
    );
    let last = out.history.last().unwrap().val_loss;
    assert!(
        last > best_nll,
        "the last epoch ({last}) should be worse than the best ({best_nll})"
    );
}

#[test]
fn restore_best_keeps_the_best_weights_without_stopping() {
    let device = Device::flex().autodiff();
    let data = || Gaussian {
        seed: 3,
        nan_at: None,
        drift_per_step: 0.02,
    };
    let run = |restore_best: bool, name: &str| {
        let cfg = TrainingConfig {
            restore_best,
            ..config(12)
        };
        let out = fit(
            new_flow(&device),
            &mut data(),
            &cfg,
            &run_dir(name),
            false,
            &device,
            &mut [],
        )
        .unwrap();
        let nll = mean_nll(
            &out.flow.valid(),
            &data().validation().unwrap().x,
            2,
            &Device::flex(),
        );
        (out, nll)
    };
    let (kept, kept_nll) = run(true, "restore");
    let (last, last_nll) = run(false, "last");
    assert!(!kept.stopped_early && kept.history.len() == 12);
    let (best_nll, best_epoch) = kept.best;
    assert!(best_epoch < 12, "the drift never made validation worse");
    assert!(kept.restored_best && !last.restored_best);
    assert!(
        (kept_nll - best_nll).abs() < 1e-5,
        "{kept_nll} against {best_nll}"
    );
    let final_nll = last.history.last().unwrap().val_loss;
    assert!(
        (last_nll - final_nll).abs() < 1e-5,
        "{last_nll} against {final_nll}"
    );
    assert!(last_nll > kept_nll);

    // The drift is what a small training set does: validation diverges from training.
    let d = Divergence::find(&kept.history).expect("no divergence found");
    assert_eq!(d.best.0, best_epoch);
    assert!(d.message(true).contains(&format!("epoch {best_epoch}'s")));
    assert!(d.message(false).contains("restore_best"));
}

#[test]
fn divergence_needs_a_real_rise_two_epochs_on_with_training_still_falling() {
    let epoch = |epoch: usize, train_loss: f64, val_loss: f64| EpochStats {
        ode_nfe_per_step: None,
        epoch,
        loss: "nll".into(),
        train_loss,
        val_loss,
        val_bits_per_dim: None,
        val_parts: Vec::new(),
        learning_rate: 1e-3,
        samples_per_sec: 1.0,
        best: false,
    };
    let rising = [
        epoch(1, 10.0, 10.0),
        epoch(2, 8.0, 8.0),
        epoch(3, 7.0, 8.5),
        epoch(4, 6.0, 9.0),
    ];
    let d = Divergence::find(&rising).unwrap();
    assert_eq!((d.best, d.last, d.train), ((2, 8.0), (4, 9.0), (8.0, 6.0)));
    // One epoch after the best: noise, not yet a trend.
    assert!(Divergence::find(&rising[..3]).is_none());
    // A rise within 2% of the best.
    let small = [
        rising[0].clone(),
        rising[1].clone(),
        epoch(3, 7.0, 8.05),
        epoch(4, 6.0, 8.1),
    ];
    assert!(Divergence::find(&small).is_none());
    // Validation and training rising together: not memorisation.
    let both = [
        rising[0].clone(),
        rising[1].clone(),
        epoch(3, 8.5, 8.5),
        epoch(4, 9.0, 9.0),
    ];
    assert!(Divergence::find(&both).is_none());
    assert!(Divergence::find(&[]).is_none());
}

#[test]
fn clipping_scales_all_gradients_to_the_max_norm() {
    let device = Device::flex().autodiff();
    let flow = flowcore::testing::perturb_params(new_flow(&device), 0.3, 1);
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![30.0f32, -20.0, 5.0, 8.0], [2, 2]),
        &device,
    );
    let loss = flow.log_prob(x.clone(), None).mean().neg();
    let grads = GradientsParams::from_grads(loss.backward(), &flow);
    let (grads, before, after) = clip_global_norm(&flow, grads, Some(0.5));
    assert!(before > 0.5, "test needs a large gradient, got {before}");
    assert!((after - 0.5).abs() < 1e-4, "{after}");
    let (_, measured, _) = clip_global_norm(&flow, grads, None);
    assert!(
        (measured - 0.5).abs() < 1e-4,
        "clipped gradients have norm {measured}"
    );
}

#[test]
fn schedules_follow_their_formulas() {
    let s = ScheduleState::default();
    let exp = Schedule::ExponentialDecay {
        decay_rate: 0.5,
        decay_steps: 10,
        staircase: true,
    };
    assert_eq!(exp.rate(1.0, 9, &s), 1.0);
    assert_eq!(exp.rate(1.0, 10, &s), 0.5);
    assert_eq!(exp.rate(1.0, 25, &s), 0.25);
    let smooth = Schedule::ExponentialDecay {
        decay_rate: 0.5,
        decay_steps: 10,
        staircase: false,
    };
    assert!((smooth.rate(1.0, 5, &s) - 0.5f64.sqrt()).abs() < 1e-12);

    let cos = Schedule::CosineWarmRestarts {
        period: 10,
        period_mult: 2.0,
        min_lr: 0.0,
    };
    assert_eq!(cos.rate(1.0, 0, &s), 1.0);
    assert!((cos.rate(1.0, 5, &s) - 0.5).abs() < 1e-12);
    assert_eq!(cos.rate(1.0, 10, &s), 1.0, "restart after the first period");
    assert!(
        (cos.rate(1.0, 20, &s) - 0.5).abs() < 1e-12,
        "second period is 20 steps long"
    );

    let plateau = Schedule::ReduceOnPlateau {
        factor: 0.1,
        patience: 1,
        threshold: 0.0,
        min_lr: 1e-3,
    };
    let mut st = ScheduleState::default();
    for v in [1.0, 0.9, 0.95, 0.95] {
        plateau.on_epoch_end(v, &mut st);
    }
    assert!((plateau.rate(1.0, 0, &st) - 0.1).abs() < 1e-12);
    for _ in 0..10 {
        plateau.on_epoch_end(2.0, &mut st);
    }
    assert_eq!(plateau.rate(1.0, 0, &st), 1e-3, "never below min_lr");
}

#[test]
fn bad_training_values_name_the_key() {
    let device = Device::flex().autodiff();
    let mut data = Gaussian {
        seed: 1,
        nan_at: None,
        drift_per_step: 0.0,
    };
    let cfg = TrainingConfig {
        batch_size: 0,
        ..TrainingConfig::default()
    };
    let e = fit(
        new_flow(&device),
        &mut data,
        &cfg,
        &run_dir("bad"),
        false,
        &device,
        &mut [],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("training.batch_size must be at least 1"),
        "{e}"
    );
}

/// A group of ranks that are threads of this process, for testing the data-parallel engine
/// without MPI: every collective meets at a barrier and sums in rank order.
struct ThreadRanks {
    rank: usize,
    size: usize,
    shared: std::sync::Arc<(std::sync::Barrier, std::sync::Mutex<Vec<Vec<f64>>>)>,
}

impl ThreadRanks {
    fn group(size: usize) -> Vec<Self> {
        let shared = std::sync::Arc::new((
            std::sync::Barrier::new(size),
            std::sync::Mutex::new(vec![Vec::new(); size]),
        ));
        (0..size)
            .map(|rank| Self {
                rank,
                size,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank's `values`, in rank order.
    fn exchange(&self, values: Vec<f64>) -> Vec<Vec<f64>> {
        let (barrier, slots) = &*self.shared;
        slots.lock().unwrap()[self.rank] = values;
        barrier.wait();
        let all = slots.lock().unwrap().clone();
        // Nobody writes the next call's values before everyone has read these.
        barrier.wait();
        all
    }

    fn sum(&self, values: &[f64]) -> Vec<f64> {
        let all = self.exchange(values.to_vec());
        (0..values.len())
            .map(|i| all.iter().map(|v| v[i]).sum())
            .collect()
    }
}

impl flowcore::train::Collective for ThreadRanks {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        let sums = self.sum(&values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
        for (v, s) in values.iter_mut().zip(sums) {
            *v = s as f32;
        }
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        let sums = self.sum(values);
        values.copy_from_slice(&sums);
    }
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) {
        let all = self.exchange(bytes.iter().map(|&b| f64::from(b)).collect());
        *bytes = all[root].iter().map(|&b| b as u8).collect();
    }
}

#[test]
fn two_ranks_take_the_steps_of_one_process_with_twice_the_batch() {
    let data = || Gaussian {
        seed: 3,
        nan_at: None,
        drift_per_step: 0.0,
    };
    let flow = |device: &Device| {
        let cfg = RealNvpConfig {
            num_layers: 3,
            hidden_units: vec![16, 16],
            actnorm: true,
            ..RealNvpConfig::new(2)
        };
        Flow::seeded(ArchitectureConfig::RealNvpDense(cfg), 5, device).unwrap()
    };
    let one_process = TrainingConfig {
        steps_per_epoch: 5,
        ..config(2)
    };
    let device = Device::flex().autodiff();
    let one = fit(
        flow(&device),
        &mut data(),
        &one_process,
        &run_dir("one-of-64"),
        false,
        &device,
        &mut [],
    )
    .unwrap();
    let per_rank = TrainingConfig {
        batch_size: one_process.batch_size / 2,
        ..one_process.clone()
    };
    let dirs = [run_dir("rank-0"), run_dir("rank-1")];
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = ThreadRanks::group(2)
            .into_iter()
            .zip(&dirs)
            .map(|(ranks, dir)| {
                let per_rank = &per_rank;
                s.spawn(move || {
                    let device = Device::flex().autodiff();
                    flowcore::train::fit_data_parallel(
                        flow(&device),
                        &flowcore::train::MaximumLikelihood,
                        &mut data(),
                        per_rank,
                        dir,
                        false,
                        &device,
                        &mut [],
                        &ranks,
                    )
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let reference = weights(&one.flow);
    for (rank, outcome) in outcomes.iter().enumerate() {
        let w = weights(&outcome.flow);
        let diff = reference
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= 1e-5,
            "rank {rank} differs from one process by {diff}"
        );
        assert_eq!(outcome.ranks, 2);
        // The same validation NLL, from each rank's half of the validation set.
        let (a, b) = (one.history[1].val_loss, outcome.history[1].val_loss);
        assert!((a - b).abs() < 1e-5, "validation {a} vs {b}");
    }
    // Rank 0 alone writes checkpoints.
    assert!(
        CheckpointDir::new(dirs[0].join("checkpoints"))
            .latest()
            .is_some()
    );
    assert!(!dirs[1].exists());
    // Not vacuous: half the batch in one process ends elsewhere.
    let half = fit(
        flow(&device),
        &mut data(),
        &per_rank,
        &run_dir("one-of-32"),
        false,
        &device,
        &mut [],
    )
    .unwrap();
    let control = reference
        .iter()
        .zip(weights(&half.flow))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(control > 1e-4, "batch 32 alone is within {control}");
}
