//! `lanewatch train`: fits, selects and calibrates the model and saves it (and its metrics).

use std::borrow::Cow;
use std::path::Path;

use crate::error::{Error, Result};
use crate::io;
use crate::model::SavedModel;
use crate::night::{self, Timings};
use crate::settings::Settings;

pub fn train(s: &Settings, model_out: &Path, metrics_out: Option<&Path>) -> Result<SavedModel> {
    let night = s.night()?;
    let mut t = Timings::default();
    let (_, clean) = night::load_timed(s, &mut t)?;
    let fs = night::features(s, Cow::Owned(clean), night, None, crate::features::Purpose::Train, &mut t)?;
    let model = night::train(s, &fs, &mut t)?;
    if let Some(parent) = model_out.parent().filter(|p| !p.as_os_str().is_empty()) {
        io::create_dir_all(parent)?;
    }
    // The model and its metrics replaced together.
    let mut files = io::FileSet::new();
    files.bytes(model_out, &model.to_json()?)?;
    if let Some(p) = metrics_out {
        let mut v = serde_json::to_vec_pretty(&model.metrics).map_err(Error::internal)?;
        v.push(b'\n');
        files.bytes(p, &v)?;
    }
    files.commit()?;
    Ok(model)
}
