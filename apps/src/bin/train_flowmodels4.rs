//! Application 4: generative classification of 2-D and 3-D points.
//!
//! `train_flowmodels4 [train] [--dataset gmm] [--mode ib|inn]` trains and reports accuracy,
//! calibration, decision regions and class-conditional samples; `train_flowmodels4 predict
//! --run RUN_DIR --points FILE.csv` writes class probabilities as CSV.

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&flowapps::app4::App4)
}
