//! Dual numbers over seven directions, for the gradients of the spline kernel's per-value
//! formula: one generic formula evaluated in f64 for the values and in [`Dual`] for the
//! backward pass, so that the two cannot disagree.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// What a formula computes with: f64, or [`Dual`] for its gradients.
pub(super) trait Real:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Mul<f64, Output = Self>
{
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
    /// Clamped into `[lo, hi]`, a constant where clamped (as burn's clamp differentiates).
    fn within(self, lo: f64, hi: f64) -> Self;
    fn at_least(self, lo: f64) -> Self {
        self.within(lo, f64::INFINITY)
    }
}

impl Real for f64 {
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn within(self, lo: f64, hi: f64) -> Self {
        self.max(lo).min(hi)
    }
}

/// A value with its derivatives by seven arguments (forward-mode automatic differentiation):
/// the rational-quadratic spline's gradients by its value, bin ends and end derivatives.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dual {
    pub(super) v: f64,
    pub(super) d: [f64; 7],
}

impl Dual {
    fn constant(v: f64) -> Self {
        Self { v, d: [0.0; 7] }
    }

    pub(super) fn seed(v: f64, j: usize) -> Self {
        let mut d = [0.0; 7];
        d[j] = 1.0;
        Self { v, d }
    }

    /// `f(v)` with derivative `slope`.
    fn chain(self, v: f64, slope: f64) -> Self {
        Self {
            v,
            d: self.d.map(|d| d * slope),
        }
    }
}

impl Add for Dual {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            v: self.v + o.v,
            d: std::array::from_fn(|j| self.d[j] + o.d[j]),
        }
    }
}

impl Sub for Dual {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        self + -o
    }
}

// The product and quotient rules.
#[allow(clippy::suspicious_arithmetic_impl)]
impl Mul for Dual {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        Self {
            v: self.v * o.v,
            d: std::array::from_fn(|j| self.d[j] * o.v + self.v * o.d[j]),
        }
    }
}

#[allow(clippy::suspicious_arithmetic_impl)]
impl Div for Dual {
    type Output = Self;
    fn div(self, o: Self) -> Self {
        let v = self.v / o.v;
        Self {
            v,
            d: std::array::from_fn(|j| (self.d[j] - v * o.d[j]) / o.v),
        }
    }
}

impl Neg for Dual {
    type Output = Self;
    fn neg(self) -> Self {
        self.chain(-self.v, -1.0)
    }
}

impl Add<f64> for Dual {
    type Output = Self;
    fn add(self, c: f64) -> Self {
        Self {
            v: self.v + c,
            d: self.d,
        }
    }
}

impl Mul<f64> for Dual {
    type Output = Self;
    fn mul(self, c: f64) -> Self {
        self.chain(self.v * c, c)
    }
}

impl Real for Dual {
    fn sqrt(self) -> Self {
        let r = self.v.sqrt();
        self.chain(r, 0.5 / r)
    }
    fn ln(self) -> Self {
        self.chain(self.v.ln(), 1.0 / self.v)
    }
    fn within(self, lo: f64, hi: f64) -> Self {
        if self.v < lo {
            Self::constant(lo)
        } else if self.v > hi {
            Self::constant(hi)
        } else {
            self
        }
    }
}
