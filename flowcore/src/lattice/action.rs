//! The phi^4 action of a real scalar field on a periodic lattice of any shape.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::tensor_util::{indices, row_sum};
use crate::{FlowError, Result};

/// `S(phi) = sum_x [ kappa/2 sum_mu (phi(x+mu) - phi(x))^2 + m_sq/2 phi(x)^2 + lambda phi(x)^4 ]`
/// on a periodic lattice of shape `shape` (any number of dimensions; `[1]` is a single site).
/// Sites are numbered row-major, the last axis fastest, as a flattened `[batch, sites]` field.
#[derive(Clone, Debug)]
pub struct Phi4 {
    shape: Vec<usize>,
    couplings: Phi4Couplings,
    /// Per axis of length above 1, the site one step forward and one step back of every site.
    neighbours: Vec<(Vec<usize>, Vec<usize>)>,
}

/// The three couplings of [`Phi4`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phi4Couplings {
    /// Strength of the kinetic term.
    pub kappa: f64,
    /// Mass term (negative for a double well).
    pub m_sq: f64,
    /// Quartic coupling.
    pub lambda: f64,
}

impl Phi4Couplings {
    /// The couplings of the hopping parametrisation
    /// `S = sum_x [ -2 hopping sum_mu chi(x) chi(x+mu) + chi^2 + lambda_h (chi^2 - 1)^2 ]`
    /// in `d` dimensions, as the same theory in the field `phi = sqrt(2 hopping) chi`:
    /// `kappa = 1`, `m_sq = 2 ((1 - 2 lambda_h) / (2 hopping) - d)`,
    /// `lambda = lambda_h / (4 hopping^2)`. The two actions differ by the constant
    /// `lambda_h * sites`, which no expectation value sees.
    pub fn from_hopping(hopping: f64, lambda_h: f64, d: usize) -> Result<Self> {
        if !(hopping.is_finite() && hopping > 0.0) {
            return Err(FlowError::config(format!(
                "the hopping parameter must be a positive number, got {hopping}"
            )));
        }
        Ok(Self {
            kappa: 1.0,
            m_sq: 2.0 * ((1.0 - 2.0 * lambda_h) / (2.0 * hopping) - d as f64),
            lambda: lambda_h / (4.0 * hopping * hopping),
        })
    }
}

impl Phi4 {
    /// The action on a periodic lattice of `shape`; an error for an empty lattice, couplings
    /// that are not finite, or an action unbounded below (`lambda < 0`, or `lambda = 0` with a
    /// mass term that is not positive).
    pub fn new(shape: &[usize], couplings: Phi4Couplings) -> Result<Self> {
        if shape.is_empty() || shape.contains(&0) {
            return Err(FlowError::config(format!(
                "the lattice must have at least one axis and no empty one, got {shape:?}"
            )));
        }
        let Phi4Couplings {
            kappa,
            m_sq,
            lambda,
        } = couplings;
        for (key, v) in [("kappa", kappa), ("m_sq", m_sq), ("lambda", lambda)] {
            if !v.is_finite() {
                return Err(FlowError::config(format!(
                    "{key} must be a finite number, got {v}"
                )));
            }
        }
        if kappa < 0.0 {
            return Err(FlowError::config(format!(
                "kappa must not be negative (the kinetic term would favour rough fields), got {kappa}"
            )));
        }
        if lambda < 0.0 || (lambda == 0.0 && m_sq <= 0.0) {
            return Err(FlowError::config(format!(
                "the action is unbounded below with lambda = {lambda} and m_sq = {m_sq}: \
                 lambda must be positive, or zero with a positive m_sq"
            )));
        }
        let sites: usize = shape.iter().product();
        let mut neighbours = Vec::new();
        // Row-major strides: the last axis is the fastest.
        let mut stride = 1;
        let mut strides = vec![0; shape.len()];
        for (axis, &len) in shape.iter().enumerate().rev() {
            strides[axis] = stride;
            stride *= len;
        }
        for (axis, &len) in shape.iter().enumerate() {
            if len == 1 {
                continue;
            }
            let step = |x: usize, by: usize| {
                let coord = (x / strides[axis]) % len;
                x - coord * strides[axis] + ((coord + by) % len) * strides[axis]
            };
            let fwd = (0..sites).map(|x| step(x, 1)).collect();
            let back = (0..sites).map(|x| step(x, len - 1)).collect();
            neighbours.push((fwd, back));
        }
        Ok(Self {
            shape: shape.to_vec(),
            couplings,
            neighbours,
        })
    }

    /// The lattice shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The couplings.
    pub fn couplings(&self) -> Phi4Couplings {
        self.couplings
    }

    /// Number of sites.
    pub fn sites(&self) -> usize {
        self.shape.iter().product()
    }

    /// For every axis longer than one site, the site one step forward of each site.
    pub fn forward_neighbours(&self) -> impl Iterator<Item = &[usize]> {
        self.neighbours.iter().map(|(f, _)| f.as_slice())
    }

    /// The action of every field of a `[batch, sites]` batch.
    pub fn action(&self, phi: Tensor<2>) -> Tensor<1> {
        let Phi4Couplings {
            kappa,
            m_sq,
            lambda,
        } = self.couplings;
        let phi2 = phi.clone().powi_scalar(2);
        let mut density =
            phi2.clone().mul_scalar(m_sq / 2.0) + phi2.powi_scalar(2).mul_scalar(lambda);
        if kappa != 0.0 {
            for (fwd, _) in &self.neighbours {
                let shifted = phi.clone().select(1, indices(fwd, &phi));
                density = density
                    + (shifted - phi.clone())
                        .powi_scalar(2)
                        .mul_scalar(kappa / 2.0);
            }
        }
        row_sum(density)
    }

    /// The action of one field, in f64.
    pub fn action_host(&self, phi: &[f64]) -> f64 {
        let Phi4Couplings {
            kappa,
            m_sq,
            lambda,
        } = self.couplings;
        let mut s = 0.0;
        for (x, &p) in phi.iter().enumerate() {
            let p2 = p * p;
            s += m_sq / 2.0 * p2 + lambda * p2 * p2;
            for (fwd, _) in &self.neighbours {
                let d = phi[fwd[x]] - p;
                s += kappa / 2.0 * d * d;
            }
        }
        s
    }

    /// `dS/dphi` of one field (the force of Hybrid Monte Carlo is its negative), in f64.
    pub fn gradient_host(&self, phi: &[f64], out: &mut [f64]) {
        let Phi4Couplings {
            kappa,
            m_sq,
            lambda,
        } = self.couplings;
        for (x, &p) in phi.iter().enumerate() {
            let mut g = m_sq * p + 4.0 * lambda * p * p * p;
            for (fwd, back) in &self.neighbours {
                g += kappa * (2.0 * p - phi[fwd[x]] - phi[back[x]]);
            }
            out[x] = g;
        }
    }
}
