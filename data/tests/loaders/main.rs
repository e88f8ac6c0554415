//! flowdata's tests in one binary (one link instead of four; see `.ci/run`).

mod images;
mod inverse;
mod s3;
mod toy_and_points;
