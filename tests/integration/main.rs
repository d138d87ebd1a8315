//! lanewatch's integration tests, one binary (see Cargo's guidance on test build times).

mod advice;
mod analyst;
mod budget;
mod cli;
mod common;
mod docs;
mod features;
mod foundation;
mod inputs;
mod model;
mod ops;
mod quality;
mod run;
mod shards;
mod state;
mod tools;
mod vocab;
