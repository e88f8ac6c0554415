//! Application 7, an ill-posed inverse problem with noise: layered velocities from a seismogram.
//!
//! `train_flowmodels7 [train] [--method inn|cinn]` trains and judges the posterior against
//! rejection sampling; `train_flowmodels7 compare` trains both methods and prints a table;
//! `train_flowmodels7 posterior --run RUN_DIR --y VALUES --n N` samples a trained posterior.

use flowapps::inverse::{InverseApp, Problem};

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&InverseApp(Problem::Seismic))
}
