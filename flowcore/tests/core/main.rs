//! flowcore's tests beyond the shared harness, in one binary: every test file is one more
//! binary to link against burn, and CI compiles them all from scratch (see `.ci/run`).

mod adjoint;
mod batch_norm;
mod checkpoint;
mod ffjord;
mod flow;
mod inn;
mod lattice;
mod lattice_proposals;
mod legacy_checkpoints;
mod made;
mod partition;
mod properties;
mod spline;
mod train;
