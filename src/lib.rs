//! lanewatch: the nightly early-warning job for late cross-border parcels.
//!
//! Data flows one way: `pipeline` → `ingest`/`validate` → `features` → `model` → `alerts` →
//! `report`. `schema`, `config`, `calendar`, `io`, `memory` and `error` sit beneath all of them.

pub mod calendar;
pub mod config;
pub mod error;
pub mod features;
pub mod generate;
pub mod ingest;
pub mod io;
pub mod memory;
pub mod model;
pub mod schema;
pub mod validate;

pub use error::{Error, Result};
pub mod alerts;
pub mod backtest;
pub mod evaluate;
pub mod import;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod report;
