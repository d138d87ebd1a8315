//! One module per command, each short wiring over `night` (what a night computes) and `output`
//! (how it is written). The binary parses arguments, resolves `Settings` and calls these.

pub mod backtest;
pub mod features;
pub mod merge;
pub mod run;
pub mod score;
pub mod seller_report;
pub mod train;
pub mod validate;
