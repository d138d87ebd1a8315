//! `lanewatch features`: lanes.parquet, features.parquet (scoring rows) and training.parquet.

use std::borrow::Cow;
use std::path::Path;

use crate::error::Result;
use crate::features::FeatureSet;
use crate::io;
use crate::night::{self, Timings};
use crate::settings::Settings;

pub fn features(s: &Settings, out: &Path) -> Result<FeatureSet> {
    let night = s.night()?;
    let mut t = Timings::default();
    let (_, clean) = night::load_timed(s, &mut t)?;
    let mut fs = night::features(s, Cow::Owned(clean), night, None, crate::features::Purpose::Train, &mut t)?;
    let n_train = fs.train.len() as u64;
    t.time("training_features", || Ok(fs.fill_training()), |_| n_train)?;
    io::create_dir_all(out)?;
    // The three replaced together: never tonight's lanes beside an earlier night's rows.
    let mut files = io::FileSet::new();
    for (name, mut df) in [
        ("lanes.parquet", fs.lanes_frame()?),
        ("features.parquet", fs.rows_frame(&fs.score, false)?),
        ("training.parquet", fs.rows_frame(&fs.train, true)?),
    ] {
        files.parquet(&mut df, &out.join(name))?;
    }
    files.commit()?;
    Ok(fs)
}
