//! The records kept beside the generations (`model.json`, `lane-tables.json`, `digest.json`):
//! each begins with its layout version and the lanewatch that wrote it, and is read back the same
//! way, so a record of another layout or lanewatch is never used.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::night::TOOL_VERSION;

/// The first fields of a kept record (flattened into it: the file's keys are unchanged).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Header {
    format: u32,
    tool_version: String,
}

impl Header {
    /// The header this lanewatch writes for layout `format`.
    pub(super) fn new(format: u32) -> Header {
        Header { format, tool_version: TOOL_VERSION.to_string() }
    }
}

/// Reads `OUT/state/<file>`, a record of layout `format` whose header `header` returns:
/// `Ok(None)` when there is none, `Err(why)` when it cannot be read, does not parse, or is of
/// another layout or lanewatch.
pub(super) fn read<T: DeserializeOwned>(
    out: &Path,
    file: &str,
    format: u32,
    header: impl Fn(&T) -> &Header,
) -> std::result::Result<Option<T>, String> {
    let bytes = match std::fs::read(out.join(super::DIR).join(file)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read state/{file}: {e}")),
    };
    let k: T = serde_json::from_slice(&bytes)
        .map_err(|e| format!("state/{file} is corrupt: {}", crate::error::one_line(e.to_string())))?;
    let h = header(&k);
    if h.format != format {
        return Err(format!("state/{file} has layout {}, this lanewatch reads {format}", h.format));
    }
    if h.tool_version != TOOL_VERSION {
        return Err(format!("state/{file} was written by lanewatch {}, this is {TOOL_VERSION}", h.tool_version));
    }
    Ok(Some(k))
}
