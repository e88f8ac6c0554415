//! Fixed permutations of the features, placed between couplings so every feature is
//! transformed.

use burn::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::layer::{BuildLayer, positive};
use crate::tensor_util::{indices, zero_logdet};
use crate::{Bijector, DataInit, Result};

/// How the permutation is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermutationKind {
    /// `i -> dim - 1 - i`.
    #[default]
    Reverse,
    /// A uniformly random permutation drawn from the seed.
    Random,
    /// `i -> (i + by) mod dim`: the last `dim - by` features move to the front, so that two
    /// blocks `[a | b]` become `[b | a]`.
    Rotate(usize),
}

/// A fixed permutation of `dim` features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermuteSpec {
    /// Features.
    pub dim: usize,
    /// Reverse or random.
    #[serde(default)]
    pub permutation: PermutationKind,
    /// Seed of a random permutation.
    #[serde(default)]
    pub seed: u64,
}

impl BuildLayer for PermuteSpec {
    type Layer = Permute;

    fn build(&self, _device: &Device) -> Result<Permute> {
        positive("permute dim", self.dim)?;
        if let PermutationKind::Rotate(by) = self.permutation
            && by >= self.dim
        {
            return Err(crate::FlowError::config(format!(
                "a rotation of {} features must move by less than that, got {by}",
                self.dim
            )));
        }
        Ok(Permute::new(self.dim, self.permutation, self.seed))
    }
}

/// A permutation of the features; `forward` computes `z[i] = x[perm[i]]`. Volume preserving.
#[derive(Module, Debug)]
pub struct Permute {
    #[module(skip)]
    perm: Vec<usize>,
    #[module(skip)]
    inverse_perm: Vec<usize>,
}

impl Permute {
    /// The permutation of `dim` features of the given kind; `seed` is used by `Random` only.
    /// The same seed gives the same permutation on every machine and every build: the
    /// shuffle uses ChaCha8, whose output stream is fixed by its specification.
    pub fn new(dim: usize, kind: PermutationKind, seed: u64) -> Self {
        let perm: Vec<usize> = match kind {
            PermutationKind::Reverse => (0..dim).rev().collect(),
            PermutationKind::Rotate(by) => (0..dim).map(|i| (i + by) % dim).collect(),
            PermutationKind::Random => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut p: Vec<usize> = (0..dim).collect();
                // Fisher-Yates written out, rather than `SliceRandom::shuffle`, whose draw
                // sequence `rand` may change between versions: saved models must keep theirs.
                for i in (1..dim).rev() {
                    let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                    p.swap(i, j);
                }
                p
            }
        };
        Self::from_indices(perm)
    }

    /// A permutation from explicit indices (`perm` must be a permutation of `0..len`).
    pub fn from_indices(perm: Vec<usize>) -> Self {
        let mut inverse_perm = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse_perm[p] = i;
        }
        Self { perm, inverse_perm }
    }

    /// `z[i] = x[perm[i]]`.
    pub fn indices(&self) -> &[usize] {
        &self.perm
    }
}

impl Bijector for Permute {
    fn forward(&self, x: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let ld = zero_logdet(&x);
        (x.clone().select(1, indices(&self.perm, &x)), ld)
    }

    fn inverse(&self, z: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let ld = zero_logdet(&z);
        (z.clone().select(1, indices(&self.inverse_perm, &z)), ld)
    }

    fn dim(&self) -> usize {
        self.perm.len()
    }
}

impl DataInit for Permute {}
