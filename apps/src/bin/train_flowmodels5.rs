//! Application 5, parameter estimation: the planar robot arm of Ardizzone et al. 2019.
//!
//! `train_flowmodels5 [train] [--method inn|cinn]` trains and judges the posterior against
//! rejection sampling; `train_flowmodels5 compare` trains both methods and prints a table;
//! `train_flowmodels5 posterior --run RUN_DIR --y VALUES --n N` samples a trained posterior.

use flowapps::inverse::{InverseApp, Problem};

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&InverseApp(Problem::RobotArm))
}
