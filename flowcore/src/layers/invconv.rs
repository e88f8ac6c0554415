//! Glow's invertible 1x1 convolution in the LU parametrisation `W = P L (U + diag(s))`:
//! `P` a fixed permutation, `L` unit lower triangular, `U` strictly upper triangular and
//! `s = exp(log_s)`, so `log|det W| = sum(log_s)` costs nothing and `W` can never be singular.

use burn::module::Param;
use burn::prelude::*;

use serde::{Deserialize, Serialize};

use super::lu::{lu_inverse, lu_matrix};
use super::{PermutationKind, Permute};
use crate::layer::{BuildLayer, positive};
use crate::tensor_util::{broadcast_logdet, indices};
use crate::{Bijector, DataInit, Result};

/// Invertible 1x1 convolution, LU-parametrised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvConvSpec {
    /// Channels.
    pub channels: usize,
    /// Pixels per channel.
    pub spatial: usize,
    /// Seed of the fixed permutation `P`.
    #[serde(default)]
    pub seed: u64,
}

impl BuildLayer for InvConvSpec {
    type Layer = InvConv1x1;

    fn build(&self, device: &Device) -> Result<InvConv1x1> {
        positive("inv_conv channels", self.channels)?;
        positive("inv_conv spatial", self.spatial)?;
        Ok(InvConv1x1::new(
            self.channels,
            self.spatial,
            self.seed,
            device,
        ))
    }
}

/// An invertible 1x1 convolution over `channels` channels of `spatial` pixels.
#[derive(Module, Debug)]
pub struct InvConv1x1 {
    lower: Param<Tensor<2>>,
    upper: Param<Tensor<2>>,
    log_s: Param<Tensor<1>>,
    #[module(skip)]
    perm: Vec<usize>,
    #[module(skip)]
    channels: usize,
    #[module(skip)]
    spatial: usize,
}

impl InvConv1x1 {
    /// Starts as the seeded random channel permutation `P` (an orthogonal matrix, as Glow's
    /// random rotation, with `L = I`, `U = 0`, `s = 1`).
    pub fn new(channels: usize, spatial: usize, seed: u64, device: &Device) -> Self {
        let perm = Permute::new(channels, PermutationKind::Random, seed)
            .indices()
            .to_vec();
        Self {
            lower: Param::from_tensor(Tensor::zeros([channels, channels], device)),
            upper: Param::from_tensor(Tensor::zeros([channels, channels], device)),
            log_s: Param::from_tensor(Tensor::zeros([channels], device)),
            perm,
            channels,
            spatial,
        }
    }

    /// `W = P L (U + diag(s))`.
    pub fn weight(&self) -> Tensor<2> {
        let w = lu_matrix(self.lower.val(), self.upper.val(), self.log_s.val());
        let perm = indices(&self.perm, &w);
        w.select(0, perm)
    }

    /// `W^-1 = (U + diag(s))^-1 L^-1 P^T`, computed with differentiable operations.
    pub fn inverse_weight(&self) -> Tensor<2> {
        let w = lu_inverse(self.lower.val(), self.upper.val(), self.log_s.val());
        let perm = indices(&self.perm, &w);
        w.select(1, perm)
    }

    fn apply(&self, w: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        let [batch, dim] = x.dims();
        let x = x.reshape([batch, self.channels, self.spatial]);
        w.unsqueeze::<3>().matmul(x).reshape([batch, dim])
    }

    fn logdet(&self, batch: usize) -> Tensor<1> {
        let ld = self.log_s.val().sum().mul_scalar(self.spatial as f64);
        broadcast_logdet(ld, batch)
    }
}

impl Bijector for InvConv1x1 {
    fn forward(&self, x: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let batch = x.dims()[0];
        (self.apply(self.weight(), x), self.logdet(batch))
    }

    fn inverse(&self, z: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let batch = z.dims()[0];
        (
            self.apply(self.inverse_weight(), z),
            self.logdet(batch).neg(),
        )
    }

    fn dim(&self) -> usize {
        self.channels * self.spatial
    }
}

impl DataInit for InvConv1x1 {}
