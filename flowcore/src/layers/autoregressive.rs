//! The masked autoregressive layer (MAF, Papamakarios et al. 2017): each feature transformed by
//! an elementwise transform whose parameters a MADE computes from the features before it (and
//! the condition). `forward`, the density direction, is one pass; `inverse`, sampling, takes
//! one pass per feature. Inverted ([`crate::Invert`]) it is the inverse autoregressive flow
//! (IAF): fast sampling, slow densities.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layer::{BuildLayer, positive};
use crate::nets::{Made, MadeSpec};
use crate::tensor_util::{row_sum, zero_logdet};
use crate::transform::Transform;
use crate::{Bijector, DataInit, Result};

/// An autoregressive layer on `dim` features in their natural order (a permutation before it
/// chooses another).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoregressiveSpec {
    /// Features.
    pub dim: usize,
    /// The elementwise transform.
    #[serde(default)]
    pub transform: Transform,
    /// The MADE that computes its parameters.
    pub made: MadeSpec,
    /// Size of the optional condition `c` (0: unconditional).
    #[serde(default)]
    pub cond_dim: usize,
}

impl BuildLayer for AutoregressiveSpec {
    type Layer = Autoregressive;

    fn build(&self, device: &Device) -> Result<Autoregressive> {
        positive("autoregressive dim", self.dim)?;
        self.transform.validate()?;
        let made = self
            .made
            .build(self.dim, self.cond_dim, self.transform.num_params(), device)?;
        Ok(Autoregressive {
            made,
            transform: self.transform,
            dim: self.dim,
        })
    }

    fn cond_dim(&self) -> usize {
        self.cond_dim
    }
}

/// `z_i = T(x_i; made(x_<i, c)_i)`.
#[derive(Module, Debug)]
pub struct Autoregressive {
    made: Made,
    #[module(skip)]
    transform: Transform,
    #[module(skip)]
    dim: usize,
}

impl Autoregressive {
    fn params(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<3> {
        let batch = x.dims()[0];
        let k = self.transform.num_params();
        self.made.forward(x, cond).reshape([batch, k, self.dim])
    }

    fn logdet(ld: Option<Tensor<2>>, like: &Tensor<2>) -> Tensor<1> {
        ld.map_or_else(|| zero_logdet(like), row_sum)
    }
}

impl Bijector for Autoregressive {
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let params = self.params(x.clone(), cond);
        let (z, ld) = self.transform.forward(x, params);
        let ld = Self::logdet(ld, &z);
        (z, ld)
    }

    fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        // Pass t makes features 1..=t exact from those before them: after `dim` passes all are,
        // and the last pass's log-det is that of the exact parameters.
        let mut x = z.zeros_like();
        let mut ld = None;
        for _ in 0..self.dim {
            let params = self.params(x, cond);
            (x, ld) = self.transform.inverse(z.clone(), params);
        }
        let ld = Self::logdet(ld, &x);
        (x, ld)
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

impl DataInit for Autoregressive {}
