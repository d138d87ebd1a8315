//! The records kept beside the generations (`model.json`, `lane-tables.json`, `digest.json`):
//! each begins with its layout version and the lanewatch that wrote it, and is read back the same
//! way, so a record of another layout or lanewatch is never used. Each ends with a line
//! `blake3:<hex>` of the JSON before it (`seal`): a change that still parses (a digit of a
//! model's weight) would otherwise be taken as written, as the generations' names guard them.

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

/// The line that ends a sealed record, before its BLAKE3.
const SEAL: &[u8] = b"blake3:";

/// A record's JSON with the line `blake3:<hex>` of it after (trailing line breaks dropped).
pub(super) fn seal(mut json: Vec<u8>) -> Vec<u8> {
    while json.last() == Some(&b'\n') {
        json.pop();
    }
    let hash = blake3::hash(&json).to_hex();
    json.push(b'\n');
    json.extend_from_slice(SEAL);
    json.extend_from_slice(hash.as_bytes());
    json.push(b'\n');
    json
}

/// A sealed record's JSON and the BLAKE3 its last line names (`None` without that line).
fn unseal(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    match body.iter().rposition(|&b| b == b'\n') {
        Some(k) if body[k + 1..].starts_with(SEAL) => (&body[..k], Some(&body[k + 1 + SEAL.len()..])),
        _ => (bytes, None),
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
    let corrupt = |e: serde_json::Error| format!("state/{file} is corrupt: {}", crate::error::one_line(e.to_string()));
    // The header first: a record of another layout may not parse as this one, and is then
    // reported as of another layout, not as corrupt.
    let check = |h: &Header| {
        if h.format != format {
            return Err(format!("state/{file} has layout {}, this lanewatch reads {format}", h.format));
        }
        if h.tool_version != TOOL_VERSION {
            return Err(format!("state/{file} was written by lanewatch {}, this is {TOOL_VERSION}", h.tool_version));
        }
        Ok(())
    };
    let (json, sealed) = unseal(&bytes);
    check(&serde_json::from_slice::<Header>(json).map_err(corrupt)?)?;
    match sealed {
        None => return Err(format!("state/{file} carries no checksum (written before records were sealed)")),
        Some(h) if h != blake3::hash(json).to_hex().as_bytes() => {
            return Err(format!("state/{file} is corrupt: its BLAKE3 does not match its contents"));
        }
        Some(_) => {}
    }
    let k: T = serde_json::from_slice(json).map_err(corrupt)?;
    check(header(&k))?;
    Ok(Some(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Record {
        #[serde(flatten)]
        header: Header,
        files: Vec<String>,
    }

    /// A record of an earlier layout, whose fields no longer parse as this one's, is reported as
    /// of another layout (a kept file of the first layout after an upgrade), not as corrupt;
    /// one of this layout that does not parse is corrupt.
    #[test]
    fn a_record_of_another_layout_is_named_so_even_when_it_does_not_parse() {
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir(out.path().join(super::super::DIR)).unwrap();
        let put = |json: String| std::fs::write(out.path().join(super::super::DIR).join("r.json"), json).unwrap();
        let read = || super::read::<Record>(out.path(), "r.json", 2, |r| &r.header);
        let sealed = |json: String| String::from_utf8(seal(json.into_bytes())).unwrap();
        put(sealed(format!(r#"{{"format": 1, "tool_version": "{TOOL_VERSION}", "files": 22}}"#)));
        assert_eq!(read().unwrap_err(), "state/r.json has layout 1, this lanewatch reads 2");
        put(sealed(format!(r#"{{"format": 2, "tool_version": "{TOOL_VERSION}", "files": 22}}"#)));
        assert!(read().unwrap_err().starts_with("state/r.json is corrupt"), "{:?}", read());
        let good = sealed(format!("{{\n  \"format\": 2,\n  \"tool_version\": \"{TOOL_VERSION}\",\n  \"files\": [\"a\"]\n}}"));
        put(good.clone());
        assert_eq!(read().unwrap().unwrap().files, ["a"]);
        // Regression: a change that still parses was taken as written.
        put(good.replace("\"a\"", "\"b\""));
        assert_eq!(read().unwrap_err(), "state/r.json is corrupt: its BLAKE3 does not match its contents");
        put(format!(r#"{{"format": 2, "tool_version": "{TOOL_VERSION}", "files": ["a"]}}"#));
        assert!(read().unwrap_err().contains("carries no checksum"), "{:?}", read());
    }
}
