//! Penalties a layer adds to the training loss beside the likelihood: RNODE's kinetic-energy
//! and Jacobian-norm terms of a continuous flow, say. A [`Bijector`](crate::Bijector) returns
//! only its output and log-det, so a layer hands its penalty to the loss through [`add`],
//! and the objective that wants penalties gathers them with [`collect`] around its forward
//! pass. Outside [`collect`] (densities, sampling, estimating a condition by gradient ascent)
//! nothing is gathered and layers skip the work ([`is_collecting`]).

use std::cell::RefCell;

use burn::prelude::*;

thread_local! {
    static ACTIVE: RefCell<Option<Vec<Tensor<1>>>> = const { RefCell::new(None) };
}

/// Run `pass` and gather the penalties its layers add on this thread: the result and their
/// sum (shape `[1]`), `None` when no layer added one.
pub fn collect<T>(pass: impl FnOnce() -> T) -> (T, Option<Tensor<1>>) {
    let outer = ACTIVE.with(|a| a.borrow_mut().replace(Vec::new()));
    let value = pass();
    let gathered = ACTIVE.with(|a| std::mem::replace(&mut *a.borrow_mut(), outer));
    let total = gathered
        .unwrap_or_default()
        .into_iter()
        .reduce(|a, b| a + b);
    (value, total)
}

/// Whether a [`collect`] on this thread wants penalties now.
pub fn is_collecting() -> bool {
    ACTIVE.with(|a| a.borrow().is_some())
}

/// Add `penalty` (shape `[1]`) to the loss being gathered; nothing when none is.
pub fn add(penalty: Tensor<1>) {
    ACTIVE.with(|a| {
        if let Some(list) = a.borrow_mut().as_mut() {
            list.push(penalty);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_are_gathered_only_inside_collect_and_nest() {
        let d = Device::flex();
        let one = || Tensor::<1>::from_floats([1.0], &d);
        add(one());
        assert!(!is_collecting());
        let ((), total) = collect(|| {
            assert!(is_collecting());
            add(one());
            let ((), inner) = collect(|| add(one().mul_scalar(5.0)));
            assert_eq!(inner.unwrap().into_scalar::<f64>(), 5.0);
            add(one().mul_scalar(2.0));
        });
        assert_eq!(total.unwrap().into_scalar::<f64>(), 3.0);
        assert!(!is_collecting());
        let ((), none) = collect(|| ());
        assert!(none.is_none());
    }
}
