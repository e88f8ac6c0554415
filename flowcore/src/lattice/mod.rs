//! Lattice field theory: flows trained without data against the phi^4 action and made exact by
//! a Metropolis correction (Albergo, Kanshin, Shanahan 2019).
//!
//! - [`Phi4`]: the action on a periodic lattice of any shape, batched on tensors and in f64 on
//!   the host with its gradient (for Hybrid Monte Carlo).
//! - [`ReverseKl`]: the objective, `E_q[log q + S]`, with annealing and path gradients;
//!   [`PriorSource`]: the base draws the training engine reads as its data;
//!   [`ForwardKlTerm`]: an optional mode-covering term over fields from a Markov chain.
//! - [`effective_sample_size`], [`log_partition`], [`independence_metropolis`]: what the
//!   importance weights `w = exp(-S) / q` say; [`Proposal`]: the chain's proposals, optionally
//!   symmetrised under `phi -> -phi` and drawn from a wider base.

mod action;
mod objective;
mod proposal;
mod reference;
mod weights;

pub use action::{Phi4, Phi4Couplings};
pub use objective::{PriorSource, ReverseKl, base_draws};
pub use proposal::Proposal;
pub use reference::ForwardKlTerm;
pub use weights::{effective_sample_size, independence_metropolis, log_mean_exp, log_partition};
