//! Timing: training steps of a flow, and the image loader.

use std::time::Instant;

use anyhow::Result;
use burn::optim::GradientsParams;
use burn::prelude::*;
use flowcore::train::{Objective, TrainingConfig};
use flowcore::{ArchitectureConfig, Flow};

/// Training steps per second of `config` at `batch`, Adam, on inputs from `input`.
pub(super) fn time_training(
    config: ArchitectureConfig,
    steps: usize,
    input: &dyn Fn(u64) -> Tensor<2>,
) -> Result<f64> {
    time_conditional_training(config, steps, &|i| (input(i), None))
}

/// [`time_training`] of a flow that may take a condition: `input` gives `(x, c)`.
pub(super) fn time_conditional_training(
    config: ArchitectureConfig,
    steps: usize,
    input: &dyn Fn(u64) -> (Tensor<2>, Option<Tensor<2>>),
) -> Result<f64> {
    // As the apps train: with gradient checkpointing (TrainingConfig's default).
    let device = TrainingConfig::default().autodiff_device(&crate::run::device());
    let (x0, c0) = input(0);
    let flow = Flow::seeded(config, 0, &device)?.initialize(x0, c0.as_ref());
    let loss = |flow: &Flow, i: u64| {
        let (x, c) = input(i);
        flow.log_prob(x, c.as_ref()).mean().neg()
    };
    Ok(time_steps(flow, steps, 1e-4, &loss))
}

/// Training steps per second of `config` against `objective` (a loss of the flow's own
/// samples: reverse KL), `batch` base draws a step, Adam, without gradient checkpointing (as
/// application 9 trains).
pub(super) fn time_objective_training(
    config: ArchitectureConfig,
    objective: &dyn Objective,
    steps: usize,
    batch: usize,
) -> Result<f64> {
    let device = crate::run::device().autodiff();
    let flow = Flow::seeded(config, 0, &device)?;
    let sites = flow.dim();
    let loss = |flow: &Flow, i: u64| {
        let z = flowcore::standard_normal(batch, sites, i, &device);
        objective.loss(flow, z, None, 0, i).total
    };
    Ok(time_steps(flow, steps, 1e-3, &loss))
}

/// FFJORD (`ffjord-*`): training steps per second on the batches `input` draws, Adam,
/// without gradient checkpointing (as its reference back-propagates through the solver), and
/// the evaluations of the dynamics per training step (every solve of the step: the adjoint's
/// backward solve included).
pub(super) fn time_ffjord_training(
    config: ArchitectureConfig,
    steps: usize,
    input: &dyn Fn(u64, &Device) -> Tensor<2>,
) -> Result<(f64, f64)> {
    let device = crate::run::device().autodiff();
    let flow = Flow::seeded(config, 0, &device)?;
    let loss = |flow: &Flow, i: u64| flow.log_prob(input(i, &device), None).mean().neg();
    let before = flowcore::ode::OdeCounts::now();
    let s = time_steps(flow, steps, 1e-3, &loss);
    let c = flowcore::ode::OdeCounts::now().since(&before);
    // time_steps takes three steps of warm-up before the timed ones.
    Ok((s, c.nfe as f64 / (steps + 3) as f64))
}

/// `batch` moons points (noise 0.1) drawn from `seed`.
pub(super) fn moons(batch: usize, seed: u64, device: &Device) -> Tensor<2> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let values = flowdata::Toy::Moons { noise: 0.1 }.sample(batch, &mut rng);
    Tensor::from_data(burn::tensor::TensorData::new(values, [batch, 2]), device)
}

/// Adam steps per second (the engine's Adam) on `loss` (of the flow and the step), after three steps of warm-up.
fn time_steps(
    mut flow: Flow,
    steps: usize,
    lr: f64,
    loss: &dyn Fn(&Flow, u64) -> Tensor<1>,
) -> f64 {
    let mut optim = flowcore::train::TrainingConfig::default().optimizer();
    let mut step = |flow: Flow, i: u64| {
        let grads = GradientsParams::from_grads(loss(&flow, i).backward(), &flow);
        optim.step(lr, flow, grads)
    };
    for i in 0..3 {
        flow = step(flow, i);
    }
    let started = Instant::now();
    for i in 0..steps as u64 {
        flow = step(flow, 10 + i);
    }
    steps as f64 / started.elapsed().as_secs_f64()
}

/// Images per second: decoding a folder of 32x32 RGB PNGs, then drawing augmented,
/// dequantised batches of 32 from them (what the training loop's worker does).
pub(super) fn loader(batches: usize) -> Result<(f64, f64)> {
    use flowdata::images::{Augment, EMBEDDED, ImageSpec, OnBadImage, load_folder, train_batch};
    let dir = std::env::temp_dir().join(format!("flowmodels-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("all"))?;
    for (i, (_, bytes)) in EMBEDDED.iter().enumerate().take(1000) {
        std::fs::write(dir.join("all").join(format!("{i:04}.png")), bytes)?;
    }
    let spec = ImageSpec {
        channels: 3,
        height: 32,
        width: 32,
    };
    let started = Instant::now();
    let set = load_folder(&dir, spec, OnBadImage::Stop)?;
    let decode = set.len() as f64 / started.elapsed().as_secs_f64();
    let augment = Augment {
        flip: true,
        rotate_degrees: 10.0,
        zoom: 0.1,
    };
    let started = Instant::now();
    for step in 0..batches as u64 {
        std::hint::black_box(train_batch(&set, &augment, 0, step, 32));
    }
    let per_sec = (batches * 32) as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((decode, per_sec))
}

/// The HDF5 files of the `hdf5-reader` case: FlashSim-shaped tables (14 conditions, 17
/// targets), `HDF5_FILES` files of `HDF5_ROWS` rows each, chunks of 4096 rows, deflate level 1.
/// The reference (`benches/reference/hdf5_bench.py`) reads the same files.
pub fn hdf5_bench_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("flowmodels-bench-hdf5")
}

const HDF5_FILES: usize = 4;
const HDF5_ROWS: usize = 250_000;

/// Rows per second that training's shuffled, prefetched reader delivers in batches of 256
/// from the bench's HDF5 files (written first), reading `rows` rows.
pub(super) fn hdf5_reader(rows: usize) -> Result<(f64, String)> {
    use flowdata::{Hdf5Table, ShuffledRows, StreamOptions, batch_rng, write_hdf5_table};
    use rand_distr::{Distribution, StandardNormal};
    let dir = hdf5_bench_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let width = 31;
    let files: Vec<std::path::PathBuf> = (0..HDF5_FILES)
        .map(|f| dir.join(format!("table-{f}.h5")))
        .collect();
    for (f, path) in files.iter().enumerate() {
        let mut rng = batch_rng(7, f as u64);
        let values: Vec<f32> = (0..HDF5_ROWS * width)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        write_hdf5_table(path, "data", &values, width, 4096, Some(1))?;
    }
    let table = Hdf5Table::open(&files, "data", "0:14".parse()?, "14:31".parse()?)?;
    let blocks = table.blocks(4096);
    let mut stream = ShuffledRows::new(
        table,
        blocks,
        StreamOptions {
            window: 8,
            prefetch: 2,
            seed: 0,
        },
    );
    let batch = 256;
    let started = Instant::now();
    let mut read = 0;
    while read < rows {
        let (c, x) = stream.rows(read as u64, batch)?;
        std::hint::black_box((c, x));
        read += batch;
    }
    let per_sec = read as f64 / started.elapsed().as_secs_f64();
    Ok((
        per_sec,
        format!(
            "{read} rows of {HDF5_FILES} files x {HDF5_ROWS} x 31 f32 (deflate 1, chunks of \
             4096): blocks of 4096, 8 shuffled together, 2 read ahead; batches of 256"
        ),
    ))
}
