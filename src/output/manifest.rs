//! `manifest.json`: what a run was given (input files with hashes, config, seed), what it wrote,
//! how long each stage took and what it warned about. The only output with wall-clock times.

use serde::Serialize;

use crate::config::Config;
use crate::ingest::FileInfo;
use crate::night::{TOOL_VERSION, Timings};
use crate::output::RunOutputs;

#[derive(Serialize)]
pub struct Manifest<'a> {
    tool: &'static str,
    tool_version: &'static str,
    pipeline: &'a str,
    as_of: String,
    cutoff: String,
    seed: u64,
    config: &'a Config,
    previous_run: Option<String>,
    inputs: &'a [FileInfo],
    outputs: Vec<OutputInfo>,
    model: ManifestModel<'a>,
    warnings: &'a [String],
    /// The state between nights: the generation read and written, files reused and decoded,
    /// and why a full refresh happened (absent when the run keeps no state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'a crate::state::StateInfo>,
    /// A sharded night (`lanewatch merge`): the partials it merged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<&'a crate::partials::Merged>,
    timings: &'a Timings,
    started_at: String,
    finished_at: String,
}

#[derive(Serialize)]
struct ManifestModel<'a> {
    kind: &'a str,
    fallback: &'a Option<String>,
    feature_schema_version: u32,
    /// The windows the night used (adaptive) and whether the model beat the simple floor.
    windows: &'a crate::model::Windows,
    floor: &'a Option<crate::model::Floor>,
}

#[derive(Serialize)]
struct OutputInfo {
    file: String,
    rows: u64,
}

/// Now, as the manifest records times: UTC, whole seconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl<'a> Manifest<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &'a Config,
        run: &'a RunOutputs,
        inputs: &'a [FileInfo],
        written: &[(String, u64)],
        warnings: &'a [String],
        timings: &'a Timings,
        started_at: String,
    ) -> Manifest<'a> {
        Manifest {
            tool: "lanewatch",
            tool_version: TOOL_VERSION,
            pipeline: &config.pipeline.name,
            as_of: run.night.to_string(),
            cutoff: run.night.cutoff_rfc3339(),
            seed: config.pipeline.seed,
            config,
            previous_run: run.previous.map(|d| d.to_string()),
            inputs,
            outputs: written.iter().map(|(f, r)| OutputInfo { file: f.clone(), rows: *r }).collect(),
            model: ManifestModel {
                kind: &run.model.kind,
                fallback: &run.model.metrics.fallback,
                feature_schema_version: run.model.feature_schema_version,
                windows: &run.model.metrics.windows,
                floor: &run.model.metrics.floor,
            },
            warnings,
            state: None,
            shards: None,
            timings,
            started_at,
            finished_at: now(),
        }
    }

    pub fn to_json(&self) -> crate::Result<Vec<u8>> {
        let mut json = serde_json::to_vec_pretty(self).map_err(crate::Error::internal)?;
        json.push(b'\n');
        Ok(json)
    }
}
