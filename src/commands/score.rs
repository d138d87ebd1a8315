//! `lanewatch score`: scores in-flight shipments with a saved model.

use std::borrow::Cow;
use std::path::Path;

use crate::alerts::Previous;
use crate::error::Result;
use crate::io;
use crate::model::SavedModel;
use crate::night::{self, Timings};
use crate::settings::Settings;

/// Writes `scores.parquet` and `alerts.parquet` into `out`; returns the model and rows scored.
pub fn score(s: &Settings, model_path: &Path, out: &Path) -> Result<(SavedModel, u64)> {
    let model = SavedModel::load(model_path)?;
    let night = s.night()?;
    let mut t = Timings::default();
    let (_, clean) = night::load_timed(s, &mut t)?;
    let res = night::compute(
        s,
        Cow::Owned(clean),
        night,
        &Previous::default(),
        night::ModelFrom::Saved(&model),
        night::Then::Write,
        None,
        None,
        &mut t,
    )?;
    io::create_dir_all(out)?;
    let a = &res.alerts;
    let mut files = io::FileSet::new();
    files.parquet(&mut a.scores.clone(), &out.join("scores.parquet"))?;
    files.parquet(&mut a.frame()?, &out.join("alerts.parquet"))?;
    files.commit()?;
    Ok((model, a.scores.height() as u64))
}
