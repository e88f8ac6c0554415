//! Data-parallel training: what the engine needs from a collective-communication engine. Each
//! rank trains on its rows of every global batch; the loss and the gradients are averaged over
//! the ranks with an all-reduce, so every rank takes the same optimizer step and the run equals
//! one process with the global batch. The engine itself is MPI (crate `flowdist`); one process
//! is [`SingleProcess`].

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
