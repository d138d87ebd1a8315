//! `lanewatch validate`: checks an input folder against the contract and reports every finding.

use crate::error::Result;
use crate::settings::Settings;
use crate::validate::{self, Report};

/// The validation report; the caller turns its first error into the exit code.
pub fn validate(s: &Settings) -> Result<Report> {
    Ok(validate::validate(&s.input, &s.input_cfg, &s.vocab)?.0)
}
