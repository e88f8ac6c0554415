//! Application 2: image generation and anomaly detection with a Glow.
//!
//! `train_flowmodels2` trains on the embedded default (Fashion-MNIST sneakers, bags as
//! outliers), reports, scores the validation folders and prints the scores table;
//! `train_flowmodels2 score --run RUN_DIR --images DIR_OR_S3 --out scores.csv` scores other images.

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&flowapps::app2::App2)
}
