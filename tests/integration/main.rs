//! lanewatch's integration tests, one binary (see Cargo's guidance on test build times).

mod common;
mod features;
mod foundation;
mod model;
mod ops;
mod run;
