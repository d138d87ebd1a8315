//! Build script: the fingerprint of the sources this lanewatch is built from, which
//! `night::TOOL_VERSION` carries (`0.1.0+src.<hex>`). What a night keeps for the next (the
//! state, the kept tables, model and digest) and the partials a sharded night exchanges are
//! used only by the lanewatch that wrote them. The package version alone let a build with
//! other arithmetic (a fixed rounding, a changed feature) read what an older build kept, and
//! an incremental night then differed from its own full refresh with no warning; each such
//! change had to remember to bump a layout number.
//!
//! The fingerprint hashes the Rust and TOML files under `src/` (the code and the status
//! presets it embeds; path and text, in path order), `Cargo.toml` (the dependencies' features)
//! and `Cargo.lock` (their versions). Names starting with `.` (editor swap files) and other
//! files (`.orig`, backups) are left out, and line endings are read as `\n`, so the same commit
//! gives the same fingerprint in a working tree, a clean clone or a checkout with CRLF endings,
//! on any machine. FNV-1a, not a cryptographic hash: it tells builds apart, it guards nothing.
//!
//! The variable is not named `LANEWATCH_…`: cargo also sets it for `cargo run` and `cargo test`,
//! and every `LANEWATCH_…` variable is a config key (an unknown one is a config error).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let mut files = Vec::new();
    walk(Path::new("src"), &mut files);
    files.sort();
    files.extend([PathBuf::from("Cargo.toml"), PathBuf::from("Cargo.lock")]);
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for f in &files {
        // Separators written as `/`, so a checkout on another system hashes alike.
        let name: Vec<String> = f.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        h.write(name.join("/").as_bytes());
        h.write(&[0]);
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("build.rs: cannot read {}: {e}", f.display()));
        let text = unix_endings(&bytes);
        h.write(&(text.len() as u64).to_le_bytes());
        h.write(&text);
    }
    println!("cargo:rustc-env=LW_SOURCE_FINGERPRINT={:012x}", h.0 >> 16);
}

/// The `.rs` and `.toml` files under `dir`, hidden names (and what is under them) left out.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("build.rs: cannot list {}: {e}", dir.display()));
    for e in entries {
        let path = e.expect("build.rs: a folder entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else if name.ends_with(".rs") || name.ends_with(".toml") {
            out.push(path);
        }
    }
}

/// `bytes` with every `\r\n` read as `\n`.
fn unix_endings(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (k, &b) in bytes.iter().enumerate() {
        if !(b == b'\r' && bytes.get(k + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
