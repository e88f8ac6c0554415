//! Data-parallel training: what the engine needs from a collective-communication engine. Each
//! rank trains on its rows of every global batch; the loss and the gradients are averaged over
//! the ranks with an all-reduce, so every rank takes the same optimizer step and the run equals
//! one process with the global batch. The communication itself is MPI (in `flowapps`) or any
//! other implementation of [`Collective`]; one process is [`SingleProcess`]. Beside the trait,
//! what the engine sends between ranks: averaged gradients and rank 0's start state.

use std::path::Path;

use burn::module::{ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::TensorData;

use super::{TrainError, TrainState};
use crate::{Flow, FlowError};

/// The collectives data-parallel training uses, over a fixed group of ranks. Every rank must
/// make the same calls in the same order (the engine's loop does), or the group deadlocks.
pub trait Collective {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Ranks in the group.
    fn size(&self) -> usize;
    /// Elementwise sums over the ranks, in place on every rank.
    fn all_reduce_sum_f32(&self, values: &mut [f32]);
    /// Elementwise sums over the ranks, in place on every rank.
    fn all_reduce_sum_f64(&self, values: &mut [f64]);
    /// Rank `root`'s `bytes`, on every rank (any length).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize);

    /// Whether this is rank 0, the one that writes checkpoints and tracks the run.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// One process: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f32(&self, _values: &mut [f32]) {}
    fn all_reduce_sum_f64(&self, _values: &mut [f64]) {}
    fn broadcast_bytes(&self, _bytes: &mut Vec<u8>, _root: usize) {}
}

/// Rank `rank`'s share of `n` items split as evenly as possible over `size` ranks: the first
/// `n % size` ranks get one more.
pub fn shard(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// The origin named in errors about state received from rank 0.
pub(super) const BROADCAST_ORIGIN: &str = "<the start state broadcast by rank 0>";

/// `values` averaged over the ranks, in place.
pub(super) fn mean_over_ranks(ranks: &dyn Collective, values: &mut [f64]) {
    if ranks.size() > 1 {
        ranks.all_reduce_sum_f64(values);
        values.iter_mut().for_each(|v| *v /= ranks.size() as f64);
    }
}

/// Every parameter's gradient averaged over the ranks: one all-reduce of all of them, flat.
pub(super) fn average_gradients(
    flow: &Flow,
    grads: GradientsParams,
    ranks: &dyn Collective,
) -> GradientsParams {
    if ranks.size() == 1 {
        return grads;
    }
    struct Gather<'a> {
        grads: &'a GradientsParams,
        flat: Vec<f32>,
    }
    impl ModuleVisitor for Gather<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let values = g.into_data().convert::<f32>();
                self.flat
                    .extend_from_slice(values.as_slice::<f32>().expect("f32 values"));
            }
        }
    }
    struct Scatter {
        grads: GradientsParams,
        flat: Vec<f32>,
        at: usize,
    }
    impl ModuleVisitor for Scatter {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let (dims, device) = (g.dims(), g.device());
                let n = dims.iter().product::<usize>();
                let values = self.flat[self.at..self.at + n].to_vec();
                self.at += n;
                let mean = Tensor::<D>::from_data(TensorData::new(values, dims), &device);
                self.grads.register(param.id, mean);
            }
        }
    }
    let mut gather = Gather {
        grads: &grads,
        flat: Vec::new(),
    };
    flow.visit(&mut gather);
    let mut flat = gather.flat;
    ranks.all_reduce_sum_f32(&mut flat);
    let scale = 1.0 / ranks.size() as f32;
    flat.iter_mut().for_each(|v| *v *= scale);
    let mut scatter = Scatter { grads, flat, at: 0 };
    flow.visit(&mut scatter);
    scatter.grads
}

/// Rank 0's start state as one message: the model checkpoint, the optimizer record and the
/// trainer state, each after its length.
pub(super) fn encode_start(
    flow: &Flow,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<Vec<u8>, TrainError> {
    let origin = Path::new(BROADCAST_ORIGIN);
    let model = crate::checkpoint::flow_to_bytes(flow, origin, serde_json::Value::Null)?;
    let optimizer = optim
        .into_bytes()
        .map_err(|e| FlowError::checkpoint(origin, format!("the optimizer state: {e}")))?;
    let state = serde_json::to_vec(state)
        .map_err(|e| FlowError::checkpoint(origin, format!("the trainer state: {e}")))?;
    let mut blob = Vec::new();
    for part in [&model[..], &optimizer[..], &state[..]] {
        blob.extend_from_slice(&(part.len() as u64).to_le_bytes());
        blob.extend_from_slice(part);
    }
    Ok(blob)
}

pub(super) fn decode_start(
    blob: &[u8],
    architecture: &crate::ArchitectureConfig,
    device: &Device,
) -> Result<(Flow, burn::tensor::Bytes, TrainState), TrainError> {
    let origin = Path::new(BROADCAST_ORIGIN);
    let mut parts = Vec::new();
    let mut rest = blob;
    for _ in 0..3 {
        let truncated = || FlowError::checkpoint(origin, "the message is truncated");
        let len = rest
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or_else(truncated)?;
        let part = rest.get(8..8 + len).ok_or_else(truncated)?;
        parts.push(part);
        rest = &rest[8 + len..];
    }
    let (flow, header) = crate::checkpoint::flow_from_bytes(parts[0], origin, device)?;
    if &header.architecture != architecture {
        return Err(FlowError::checkpoint(origin, "rank 0 trains another architecture").into());
    }
    let state = serde_json::from_slice(parts[2])
        .map_err(|e| FlowError::checkpoint(origin, format!("the trainer state: {e}")))?;
    Ok((
        flow,
        burn::tensor::Bytes::from_bytes_vec(parts[1].to_vec()),
        state,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_item_once() {
        for n in [0, 1, 5, 8, 13] {
            for size in 1..5 {
                let ranges: Vec<_> = (0..size).map(|r| shard(n, r, size)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[size - 1].end, n);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }
    }
}
