//! Application 1: distribution mapping of 2-D/3-D points with a normalizing flow.
//!
//! `train_flowmodels1 [train] [--dataset gmm] [--set training.epochs=20]`, then
//! `train_flowmodels1 sample --run RUN_DIR --n 1000` and
//! `train_flowmodels1 logprob --run RUN_DIR --points FILE.csv`.

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&flowapps::app1::App1)
}
