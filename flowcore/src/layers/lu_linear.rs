//! A dense linear layer with a bias in the LU parametrisation, `z = W x + b` with
//! `W = L (U + diag(s))`: the learnt mixing between the couplings of neural spline flows
//! (Durkan et al. 2019; nflows' `LULinear`), where a fixed permutation would mix less. It
//! starts as the identity.

use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::lu::{lu_inverse, lu_matrix};
use crate::layer::{BuildLayer, positive};
use crate::tensor_util::broadcast_logdet;
use crate::{Bijector, DataInit, Result};

/// An LU-parametrised linear map of `dim` features with a bias.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuLinearSpec {
    /// Features.
    pub dim: usize,
}

impl BuildLayer for LuLinearSpec {
    type Layer = LuLinear;

    fn build(&self, device: &Device) -> Result<LuLinear> {
        positive("lu_linear dim", self.dim)?;
        let d = self.dim;
        Ok(LuLinear {
            lower: Param::from_tensor(Tensor::zeros([d, d], device)),
            upper: Param::from_tensor(Tensor::zeros([d, d], device)),
            log_s: Param::from_tensor(Tensor::zeros([d], device)),
            bias: Param::from_tensor(Tensor::zeros([d], device)),
            dim: d,
        })
    }
}

/// `z = W x + b`, `log|det| = sum(log_s)` for every sample.
#[derive(Module, Debug)]
pub struct LuLinear {
    lower: Param<Tensor<2>>,
    upper: Param<Tensor<2>>,
    log_s: Param<Tensor<1>>,
    bias: Param<Tensor<1>>,
    #[module(skip)]
    dim: usize,
}

impl LuLinear {
    fn logdet(&self, batch: usize) -> Tensor<1> {
        broadcast_logdet(self.log_s.val().sum(), batch)
    }

    fn bias(&self) -> Tensor<2> {
        self.bias.val().reshape([1, self.dim])
    }
}

impl Bijector for LuLinear {
    fn forward(&self, x: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let w = lu_matrix(self.lower.val(), self.upper.val(), self.log_s.val());
        let batch = x.dims()[0];
        (x.matmul(w.transpose()) + self.bias(), self.logdet(batch))
    }

    fn inverse(&self, z: Tensor<2>, _cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let w_inv = lu_inverse(self.lower.val(), self.upper.val(), self.log_s.val());
        let batch = z.dims()[0];
        (
            (z - self.bias()).matmul(w_inv.transpose()),
            self.logdet(batch).neg(),
        )
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

impl DataInit for LuLinear {}
