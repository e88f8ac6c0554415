//! Application 6, an ill-posed inverse problem without noise: glacier bedrock from surface gravity.
//!
//! `train_flowmodels6 [train] [--method inn|cinn]` trains and judges the posterior against
//! rejection sampling; `train_flowmodels6 compare` trains both methods and prints a table;
//! `train_flowmodels6 posterior --run RUN_DIR --y VALUES --n N` samples a trained posterior.

use flowapps::inverse::{InverseApp, Problem};

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&InverseApp(Problem::Glacier))
}
