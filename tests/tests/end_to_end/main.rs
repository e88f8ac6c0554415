//! The applications end to end, in one binary: one link instead of eight, and the long
//! training tests share the test threads instead of each binary waiting on its slowest test.

mod app1;
mod app2;
mod app8;
mod app9;
mod classify;
mod core_trains;
mod deploy;
mod inverse;
mod outliers;
