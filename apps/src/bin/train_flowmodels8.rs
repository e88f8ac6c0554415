//! Application 8: conditional generation p(x | c) from tables (CSV, HDF5) or generators.
//!
//! `train_flowmodels8 [train] [--dataset grid] [--csv FILE --c-columns a,b] [--hdf5 DIR]`,
//! then `sample --run RUN_DIR --c 1,2`, `logprob`, `estimate --points FILE`, `interpolate`;
//! `simulate --out DIR` writes a generator's rows into HDF5 files.

fn main() -> std::process::ExitCode {
    flowapps::run::cli::main(&flowapps::app8::App8)
}
