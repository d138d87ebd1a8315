//! One error type for the library. Each variant maps to one sysexits code, so the binary
//! never has to guess how a failure should be reported to cron.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// sysexits(3) codes used by the `lanewatch` binary.
pub mod exit {
    pub const OK: i32 = 0;
    pub const USAGE: i32 = 2;
    pub const DATA: i32 = 65;
    pub const NO_INPUT: i32 = 66;
    pub const SOFTWARE: i32 = 70;
    pub const CANT_CREATE: i32 = 73;
    pub const TEMP_FAIL: i32 = 75;
    pub const CONFIG: i32 = 78;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is present but its content breaks the contract.
    #[error("{file}: column {column}: {message}")]
    Data { file: String, column: String, message: String },

    /// The input is present but a whole file is unusable (corrupt, not Parquet, empty).
    #[error("{file}: {message}")]
    BadFile { file: String, message: String },

    #[error("input not found: {}", path.display())]
    MissingInput { path: PathBuf },

    #[error("input is not a folder: {} (give the folder that holds shipments and events)", path.display())]
    InputNotFolder { path: PathBuf },

    #[error("cannot write {}: {message}", path.display())]
    Output { path: PathBuf, message: String },

    #[error("output {} is locked by another run ({holder}); try later", path.display())]
    Locked { path: PathBuf, holder: String },

    #[error("config: {0}")]
    Config(String),

    /// A saved model that does not fit this binary (feature schema, format).
    #[error("model {}: {message}", path.display())]
    Model { path: PathBuf, message: String },

    #[error("internal error: {0}")]
    Internal(String),

    /// A step of an out-of-core night (a child process of this binary) failed: its own line
    /// and exit code.
    #[error("{step}: {message}")]
    Step { step: String, code: i32, message: String },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Data { .. } | Error::BadFile { .. } | Error::Model { .. } => exit::DATA,
            Error::MissingInput { .. } | Error::InputNotFolder { .. } => exit::NO_INPUT,
            Error::Output { .. } => exit::CANT_CREATE,
            Error::Locked { .. } => exit::TEMP_FAIL,
            Error::Config(_) => exit::CONFIG,
            Error::Internal(_) => exit::SOFTWARE,
            Error::Step { code, .. } => match *code {
                exit::DATA | exit::NO_INPUT | exit::CANT_CREATE | exit::TEMP_FAIL | exit::CONFIG => *code,
                _ => exit::SOFTWARE,
            },
        }
    }

    pub fn data(file: impl Into<String>, column: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Data { file: file.into(), column: column.into(), message: one_line(message.into()) }
    }

    pub fn bad_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadFile { file: file.into(), message: one_line(message.into()) }
    }

    pub fn output(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::Output { path: path.into(), message: one_line(err.to_string()) }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Error::Internal(one_line(err.to_string()))
    }
}

/// Polars errors inside a stage are bugs or resource failures, not bad user data: user data
/// is checked before it reaches the stages.
impl From<polars::error::PolarsError> for Error {
    fn from(e: polars::error::PolarsError) -> Self {
        Error::internal(format!("polars: {e}"))
    }
}

/// Messages go to one log line; user data inside them must not break it or flood it.
pub fn one_line(s: String) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if hidden(c) { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if out.chars().count() > 400 {
        out = out.chars().take(400).collect::<String>() + "…";
    }
    out
}

/// Characters that move or hide text without showing: controls, and the bidirectional and
/// zero-width marks (U+202E turns the rest of a line around, so a lane could pass for another).
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Text from input data made safe for a terminal, the way the human log shows it: control
/// characters (NUL, CR, LF, ESC, …) and bidirectional or zero-width marks become visible
/// escapes (`\0`, `\r`, `\n`, `\u{1b}`, `\u{202e}`), so data can neither move the cursor,
/// recolour the screen, reorder a line nor forge one.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Shortens a value taken from user data before it is quoted in an error message. Quoted as
/// Rust writes a string's debug form: controls, bidirectional and zero-width marks escaped
/// (`\0`, `\u{202e}`), never dropped, so that two values that differ only there (`IN_TRANSIT`
/// and `IN_TRANSIT\0`) are told apart, and the message stays on one line.
pub fn quote(s: &str) -> String {
    let shown: String = s.chars().take(60).collect();
    if s.chars().count() > 60 { format!("{shown:?}… ({} chars)", s.chars().count()) } else { format!("{shown:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_that_differ_only_in_hidden_characters_differ() {
        assert_eq!(quote("IN_TRANSIT"), "\"IN_TRANSIT\"");
        assert_eq!(quote("IN_TRANSIT\u{0}"), "\"IN_TRANSIT\\0\"");
        assert_eq!(quote("a\r\nb\u{202e}c\u{200b}"), "\"a\\r\\nb\\u{202e}c\\u{200b}\"");
        assert_eq!(quote(&"x".repeat(61)), format!("{:?}… (61 chars)", "x".repeat(60)));
    }

    #[test]
    fn printable_escapes_every_control_character() {
        assert_eq!(printable("CN\u{1b}[31m\r\nlanewatch: forged\u{0}"), "CN\\u{1b}[31m\\r\\nlanewatch: forged\\u{0}");
        assert_eq!(printable("CN-GD→FR économie"), "CN-GD→FR économie");
        assert!(printable("a\u{7f}\u{85}b").chars().all(|c| !c.is_control()));
        // Regression: bidirectional and zero-width marks went through, and could reorder a line.
        assert_eq!(printable("express\u{202e}10 :stsol"), "express\\u{202e}10 :stsol");
        assert_eq!(printable("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
        assert_eq!(one_line("lane \u{202e}x".into()), "lane x");
    }
}
