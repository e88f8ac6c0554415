//! The fault-injection suite, fast cases: the binaries given bad input, damaged checkpoints,
//! wrong and busy run folders, a misnamed tracking service and bad tables (application 8). Each
//! case asserts the exit code (1, an error, never a panic's 101), that the message names the
//! culprit, and that what was there before is unchanged (by hash). The slow cases (killed
//! runs, a full disk, a failing tracking server) are `scripts/fault-injection.sh`.

mod folders;
mod inputs;
mod lattice;
mod support;
mod tables;
mod tracking;
