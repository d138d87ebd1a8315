//! lanewatch's integration tests, one binary (see Cargo's guidance on test build times).

mod analyst;
mod common;
mod docs;
mod features;
mod foundation;
mod model;
mod ops;
mod run;
