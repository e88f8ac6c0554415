//! End-to-end tests of flowmodels live in `tests/tests/`; this crate has no library code.
