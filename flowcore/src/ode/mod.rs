//! Ordinary differential equation solvers for continuous flows: adaptive Dormand-Prince 5(4)
//! and fixed-step RK4, on a `[batch, n]` state, with every step built from tensor operations so
//! that the gradient of the result back-propagates through the solver's steps.
//!
//! The step size is one for the whole batch (as in torchdiffeq): every sample of a batch takes
//! the same steps, so the solve is one smooth map of each sample for that batch.

pub mod adjoint;
mod dopri5;
mod rk4;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use adjoint::OdeGradient;

fn tolerance() -> f64 {
    1e-5
}

fn thousand() -> usize {
    1000
}

fn eight() -> usize {
    8
}

/// How an ODE is integrated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum OdeSolver {
    /// Adaptive Dormand-Prince 5(4) with an automatic first step.
    Dopri5 {
        /// Relative tolerance of the local error.
        #[serde(default = "tolerance")]
        rtol: f64,
        /// Absolute tolerance of the local error.
        #[serde(default = "tolerance")]
        atol: f64,
        /// Step attempts (accepted or rejected) before the solve gives up.
        #[serde(default = "thousand")]
        max_steps: usize,
    },
    /// Classic fourth-order Runge-Kutta with a fixed number of steps.
    Rk4 {
        /// Steps over the whole interval.
        #[serde(default = "eight")]
        steps: usize,
    },
}

impl Default for OdeSolver {
    fn default() -> Self {
        Self::Dopri5 {
            rtol: tolerance(),
            atol: tolerance(),
            max_steps: thousand(),
        }
    }
}

impl OdeSolver {
    /// Why the settings cannot run, if they cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        match *self {
            Self::Dopri5 {
                rtol,
                atol,
                max_steps,
            } => {
                if !(rtol.is_finite() && atol.is_finite() && rtol >= 0.0 && atol > 0.0) {
                    return Err(format!(
                        "solver: rtol must be >= 0 and atol > 0, got rtol {rtol}, atol {atol}"
                    ));
                }
                if max_steps == 0 {
                    return Err("solver: max_steps must be positive".into());
                }
            }
            Self::Rk4 { steps } => {
                if steps == 0 {
                    return Err("solver: rk4 steps must be positive".into());
                }
            }
        }
        Ok(())
    }

    /// The state at `t1` of `dy/dt = f(t, y)` from `y(t0) = y0` (`t1 < t0` integrates
    /// backwards), with what the solve cost.
    pub fn solve<F>(
        &self,
        f: F,
        y0: Tensor<2>,
        t0: f64,
        t1: f64,
    ) -> std::result::Result<(Tensor<2>, SolveStats), StepLimit>
    where
        F: FnMut(f64, Tensor<2>) -> Tensor<2>,
    {
        let out = match *self {
            Self::Dopri5 {
                rtol,
                atol,
                max_steps,
            } => dopri5::solve(f, y0, t0, t1, rtol, atol, max_steps),
            Self::Rk4 { steps } => Ok(rk4::solve(f, y0, t0, t1, steps)),
        };
        if let Ok((_, stats)) = &out {
            COUNTERS.add(stats);
        }
        out
    }
}

/// What one solve cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SolveStats {
    /// Evaluations of the dynamics (NFE).
    pub nfe: usize,
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps.
    pub rejected: usize,
}

/// An adaptive solve that used its step attempts before reaching the end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLimit {
    /// The time reached.
    pub time: f64,
    /// The step attempts it made.
    pub attempts: usize,
    /// The last step size tried.
    pub step: f64,
}

struct Counters {
    solves: AtomicU64,
    nfe: AtomicU64,
    steps: AtomicU64,
}

static COUNTERS: Counters = Counters {
    solves: AtomicU64::new(0),
    nfe: AtomicU64::new(0),
    steps: AtomicU64::new(0),
};

impl Counters {
    fn add(&self, s: &SolveStats) {
        self.solves.fetch_add(1, Ordering::Relaxed);
        self.nfe.fetch_add(s.nfe as u64, Ordering::Relaxed);
        self.steps.fetch_add(s.steps as u64, Ordering::Relaxed);
    }
}

/// Solves, evaluations and steps counted over the process, for an application to report the
/// cost of its continuous layers (read before and after the work to measure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OdeCounts {
    /// Completed solves.
    pub solves: u64,
    /// Evaluations of the dynamics over them.
    pub nfe: u64,
    /// Accepted steps over them.
    pub steps: u64,
}

impl OdeCounts {
    /// The counts so far.
    pub fn now() -> Self {
        Self {
            solves: COUNTERS.solves.load(Ordering::Relaxed),
            nfe: COUNTERS.nfe.load(Ordering::Relaxed),
            steps: COUNTERS.steps.load(Ordering::Relaxed),
        }
    }

    /// What was counted since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            solves: self.solves - earlier.solves,
            nfe: self.nfe - earlier.nfe,
            steps: self.steps - earlier.steps,
        }
    }
}

static FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Record why a solve failed. A layer cannot return an error through [`crate::Bijector`], so it
/// returns non-finite values, which the training engine refuses, and leaves the reason here.
pub fn record_failure(message: String) {
    tracing::error!("{message}");
    if let Ok(mut slot) = FAILURE.lock() {
        *slot = Some(message);
    }
}

/// The reason of the last failed solve, if any, cleared by reading it.
pub fn take_failure() -> Option<String> {
    FAILURE.lock().ok().and_then(|mut slot| slot.take())
}

/// Root mean square of `err` scaled by `atol + rtol * max(|a|, |b|)`, on the host.
pub(crate) fn error_ratio(
    err: Tensor<2>,
    a: &Tensor<2>,
    b: &Tensor<2>,
    rtol: f64,
    atol: f64,
) -> f64 {
    let scale = a
        .clone()
        .detach()
        .abs()
        .max_pair(b.clone().detach().abs())
        .mul_scalar(rtol)
        .add_scalar(atol);
    (err.detach() / scale)
        .powi_scalar(2)
        .mean()
        .sqrt()
        .into_scalar::<f64>()
}

/// `y + h * sum(c_i k_i)`.
pub(crate) fn combine(y: &Tensor<2>, h: f64, terms: &[(f64, &Tensor<2>)]) -> Tensor<2> {
    let mut out = y.clone();
    for (c, k) in terms {
        if *c != 0.0 {
            out = out + (*k).clone().mul_scalar(h * c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, TensorCreationOptions, TensorData};

    fn f64_state(values: Vec<f64>) -> Tensor<2> {
        let n = values.len();
        let options = TensorCreationOptions::new(Device::flex()).with_dtype(DType::F64);
        Tensor::<2>::from_data(TensorData::new(values, [1, n]), options)
    }

    fn state(values: Vec<f32>, device: &Device) -> Tensor<2> {
        let n = values.len();
        Tensor::<2>::from_data(TensorData::new(values, [1, n]), device)
    }

    fn host(t: Tensor<2>) -> Vec<f64> {
        t.to_data().convert::<f64>().try_to_vec().unwrap()
    }

    #[test]
    fn dopri5_meets_its_tolerance_both_ways_on_a_known_solution() {
        let device = Device::flex();
        let solver = OdeSolver::default();
        // y' = -y t: y(1) = y0 exp(-1/2).
        let f = |t: f64, y: Tensor<2>| y.mul_scalar(-t);
        let (y1, stats) = solver
            .solve(f, state(vec![1.0, -2.0], &device), 0.0, 1.0)
            .unwrap();
        let y1 = host(y1);
        let e = (-0.5f64).exp();
        assert!(
            (y1[0] - e).abs() < 1e-4 && (y1[1] + 2.0 * e).abs() < 1e-4,
            "{y1:?}"
        );
        assert!(stats.steps >= 1 && stats.nfe == 2 + 6 * (stats.steps + stats.rejected));
        let back = state(vec![y1[0] as f32, y1[1] as f32], &device);
        let (y0, _) = solver.solve(f, back, 1.0, 0.0).unwrap();
        let y0 = host(y0);
        assert!(
            (y0[0] - 1.0).abs() < 1e-4 && (y0[1] + 2.0).abs() < 1e-4,
            "{y0:?}"
        );
    }

    #[test]
    fn tighter_tolerances_take_more_steps_and_land_closer() {
        let f = |t: f64, y: Tensor<2>| y.clone().cos().mul_scalar(3.0 + t.sin());
        let y0 = || f64_state(vec![0.3, -1.0]);
        let exact = |rtol: f64| {
            let s = OdeSolver::Dopri5 {
                rtol,
                atol: rtol,
                max_steps: 100_000,
            };
            let (y, st) = s.solve(f, y0(), 0.0, 2.0).unwrap();
            (host(y), st.steps)
        };
        let (reference, _) = exact(1e-12);
        let (loose, n_loose) = exact(1e-4);
        let (tight, n_tight) = exact(1e-8);
        let err = |y: &[f64]| (y[0] - reference[0]).abs().max((y[1] - reference[1]).abs());
        assert!(n_tight > n_loose, "{n_tight} <= {n_loose}");
        assert!(
            err(&tight) < err(&loose) && err(&loose) < 1e-3,
            "{} {}",
            err(&tight),
            err(&loose)
        );
    }

    #[test]
    fn rk4_is_fourth_order() {
        let y0 = || f64_state(vec![1.0]);
        let f = |t: f64, y: Tensor<2>| y.mul_scalar(t.cos());
        let truth = 1f64.sin().exp();
        let err = |steps| {
            let (y, st) = OdeSolver::Rk4 { steps }.solve(f, y0(), 0.0, 1.0).unwrap();
            assert_eq!(st.nfe, 4 * steps);
            (host(y)[0] - truth).abs()
        };
        let ratio = err(8) / err(16);
        assert!(
            (12.0..20.0).contains(&ratio),
            "error ratio {ratio}, 16 for order 4"
        );
    }

    #[test]
    fn gradients_flow_through_the_steps() {
        let device = Device::flex().autodiff();
        // y' = a y: y(1) = y0 e^a, d y(1) / d a = y0 e^a.
        let a =
            Tensor::<2>::from_data(TensorData::new(vec![0.7f32], [1, 1]), &device).require_grad();
        let y0 = state(vec![1.5], &device);
        let (y1, _) = OdeSolver::default()
            .solve(|_, y: Tensor<2>| y * a.clone(), y0, 0.0, 1.0)
            .unwrap();
        let grads = y1.sum().backward();
        let g = a.grad(&grads).unwrap().into_scalar::<f64>();
        let want = 1.5 * 0.7f64.exp();
        assert!((g - want).abs() < 1e-3 * want, "gradient {g}, want {want}");
    }

    #[test]
    fn a_solve_that_runs_out_of_steps_says_where_it_stopped() {
        let device = Device::flex();
        let solver = OdeSolver::Dopri5 {
            rtol: 1e-9,
            atol: 1e-9,
            max_steps: 3,
        };
        let f = |_: f64, y: Tensor<2>| y.powi_scalar(2).add_scalar(1.0);
        let limit = solver
            .solve(f, state(vec![0.0], &device), 0.0, 1.0)
            .unwrap_err();
        assert_eq!(limit.attempts, 3);
        assert!(limit.time > 0.0 && limit.time < 1.0, "{limit:?}");
        for bad in [
            OdeSolver::Rk4 { steps: 0 },
            OdeSolver::Dopri5 {
                rtol: 1e-5,
                atol: 0.0,
                max_steps: 10,
            },
            OdeSolver::Dopri5 {
                rtol: f64::NAN,
                atol: 1e-5,
                max_steps: 10,
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?} accepted");
        }
    }
}
