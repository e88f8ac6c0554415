//! Points from a CSV file, split into training and held-out validation rows.

use anyhow::{Result, bail};
use flowdata::batch_rng;
use rand::seq::SliceRandom;

/// The rows of the `n` points of `file` held out for validation and those trained on: a
/// seeded shuffle, of which `validation_size` rows (at most a fifth, at least one) are held
/// out. Fewer than 10 points are an error.
pub fn split_rows(
    file: &str,
    n: usize,
    validation_size: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if n < 10 {
        bail!("{file}: {n} points are too few to train on");
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut batch_rng(seed, u64::MAX));
    let n_val = validation_size.min(n / 5).max(1);
    let train = order.split_off(n_val);
    Ok((order, train))
}

/// The rows `rows` of `values` (`[n, dim]`), row-major.
pub fn take_rows(values: &[f32], dim: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&i| values[i * dim..(i + 1) * dim].iter().copied())
        .collect()
}
