//! Application 9: flow sampling of the phi^4 lattice field theory, trained against the action.
//!
//! `train_flowmodels9 [train] [--lattice 8x8] [--set theory.m_sq=-4]`, then
//! `train_flowmodels9 observables --run RUN_DIR`, `mcmc --run RUN_DIR --n N` and
//! `hmc --run RUN_DIR`.

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&flowapps::app9::App9)
}
