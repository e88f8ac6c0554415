//! The bijector abstraction and its two combinators.
//!
//! Direction convention, everywhere in flowmodels: `forward` maps data `x` to latent `z` (the
//! normalizing direction, used to evaluate densities), `inverse` maps `z` to `x` (used to
//! sample). Both return the per-sample `log |det J|` of the map they compute, shape `[batch]`.
//!
//! Every bijector acts on flattened `[batch, dim]` tensors; image layers know their `(C, H, W)`
//! and reshape inside, so any layer composes with any other of the same `dim`.

use burn::module::Module;
use burn::prelude::*;

/// An invertible map with a tractable Jacobian determinant: the two maps and their size.
pub trait Bijector {
    /// Data to latent: `(z, log|det dz/dx|)`. `cond` is an optional `[batch, cond_dim]`
    /// condition, ignored by layers that take none.
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>);

    /// Latent to data: `(x, log|det dx/dz|)`.
    fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>);

    /// Latent to data without the log-det, for sampling. A layer whose log-det costs more than
    /// its map (a continuous flow integrates the trace of its Jacobian beside z) skips it here;
    /// for the others it is `inverse(z, cond).0`.
    fn inverse_without_logdet(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        self.inverse(z, cond).0
    }

    /// The number of features it maps.
    fn dim(&self) -> usize;
}

/// Data-dependent initialisation (ActNorm): a layer whose first values come from a first batch
/// of data. Every layer implements it; the defaults are those of a layer with nothing to
/// initialise, so most implementations are empty.
pub trait DataInit: Bijector + Sized {
    /// Initialise from a first batch: returns the initialised bijector and `forward(x)` of it,
    /// so that a chain can pass the batch on.
    fn initialize(self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Self, Tensor<2>) {
        let z = self.forward(x, cond).0;
        (self, z)
    }

    /// Appends, in a fixed traversal order, whether each data-initialised layer has been
    /// initialised. Saved in checkpoints so a loaded model is not initialised again.
    fn init_flags(&self, _flags: &mut Vec<bool>) {}

    /// Restores flags written by [`DataInit::init_flags`], in the same order.
    fn set_init_flags(&mut self, _flags: &mut dyn Iterator<Item = bool>) {}
}

/// Layers applied one after another: `forward` runs them first to last, `inverse` last to
/// first, and the log-dets add up.
#[derive(Module, Debug)]
pub struct Chain<T: Module> {
    /// The layers, in the forward (data to latent) order.
    pub layers: Vec<T>,
}

impl<T: Module> Chain<T> {
    /// A chain of the given layers.
    pub fn new(layers: Vec<T>) -> Self {
        Self { layers }
    }
}

impl<T: Module + Bijector> Chain<T> {
    /// `forward` through a run of layers (a part of a chain), without a condition.
    pub fn run_forward(layers: &[T], x: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        forward_all(layers, x, None)
    }
}

fn forward_all<T: Bijector>(
    layers: &[T],
    mut x: Tensor<2>,
    cond: Option<&Tensor<2>>,
) -> (Tensor<2>, Tensor<1>) {
    let mut total: Option<Tensor<1>> = None;
    for layer in layers {
        let (z, ld) = layer.forward(x, cond);
        x = z;
        total = Some(match total {
            Some(t) => t + ld,
            None => ld,
        });
    }
    let total = total.unwrap_or_else(|| crate::tensor_util::zero_logdet(&x));
    (x, total)
}

impl<T: Module + Bijector> Bijector for Chain<T> {
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        forward_all(&self.layers, x, cond)
    }

    fn inverse(&self, mut z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let mut total: Option<Tensor<1>> = None;
        for layer in self.layers.iter().rev() {
            let (x, ld) = layer.inverse(z, cond);
            z = x;
            total = Some(match total {
                Some(t) => t + ld,
                None => ld,
            });
        }
        let total = total.unwrap_or_else(|| crate::tensor_util::zero_logdet(&z));
        (z, total)
    }

    fn inverse_without_logdet(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> Tensor<2> {
        self.layers
            .iter()
            .rev()
            .fold(z, |z, layer| layer.inverse_without_logdet(z, cond))
    }

    fn dim(&self) -> usize {
        self.layers.first().map_or(0, Bijector::dim)
    }
}

impl<T: Module + DataInit> DataInit for Chain<T> {
    fn initialize(self, mut x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Self, Tensor<2>) {
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in self.layers {
            let (layer, z) = layer.initialize(x, cond);
            layers.push(layer);
            x = z;
        }
        (Self { layers }, x)
    }

    fn init_flags(&self, flags: &mut Vec<bool>) {
        self.layers.iter().for_each(|l| l.init_flags(flags));
    }

    fn set_init_flags(&mut self, flags: &mut dyn Iterator<Item = bool>) {
        self.layers.iter_mut().for_each(|l| l.set_init_flags(flags));
    }
}

/// A bijector run backwards: its `forward` is the inner `inverse` and vice versa.
#[derive(Module, Debug)]
pub struct Invert<T: Module> {
    /// The bijector being inverted.
    pub inner: T,
}

impl<T: Module + Bijector> Bijector for Invert<T> {
    fn forward(&self, x: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.inner.inverse(x, cond)
    }

    fn inverse(&self, z: Tensor<2>, cond: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.inner.forward(z, cond)
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }
}

// Data-dependent initialisation is defined for the forward direction of a layer; an inverted
// one keeps its parameters, so the default (no initialisation) applies, but the flags still
// travel with checkpoints.
impl<T: Module + DataInit> DataInit for Invert<T> {
    fn init_flags(&self, flags: &mut Vec<bool>) {
        self.inner.init_flags(flags);
    }

    fn set_init_flags(&mut self, flags: &mut dyn Iterator<Item = bool>) {
        self.inner.set_init_flags(flags);
    }
}
