//! End-to-end tests of flowmodels live in `tests/tests/end_to_end/`; this crate has no library code.
