//! Application 3: generative classification of images.
//!
//! `train_flowmodels3 [train] [--images DIR_OR_S3] [--mode ib|inn]` trains on `train/<class>/`
//! and reports accuracy, calibration, class-conditional samples and out-of-distribution
//! detection on `val/`; `train_flowmodels3 predict --run RUN_DIR --images DIR` writes class
//! probabilities as CSV.

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&flowapps::app3::App3)
}
