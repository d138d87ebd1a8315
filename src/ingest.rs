//! Reading the canonical input: locating files (a file or a folder of Parquet, hive partitions
//! allowed), checking each file's footer with the `parquet` crate before any data is decoded,
//! then decoding with arrow-rs a few row groups at a time and normalising types (µs UTC
//! timestamps, f64, strings). Files are hashed by streaming them; no file or table needs to
//! fit in memory at once.

use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType as ArrowType, TimeUnit as ArrowUnit};
use polars::prelude::*;
use serde::Serialize;

use crate::config::{InputConfig, NaiveZone};
use crate::error::{Error, Result};
use crate::schema::{ColumnSpec, Table, ValueKind};

/// One problem found in the input. Errors stop a run; warnings are reported and the data used.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub level: Level,
    pub file: String,
    pub column: String,
    pub check: &'static str,
    pub message: String,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
}

impl Finding {
    pub fn line(&self) -> String {
        let lvl = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        if self.column.is_empty() {
            format!("{lvl}: {}: {}", self.file, self.message)
        } else {
            format!("{lvl}: {}: column {}: {}", self.file, self.column, self.message)
        }
    }

    pub fn into_error(self) -> Error {
        if self.column.is_empty() {
            Error::bad_file(self.file, self.message)
        } else {
            Error::data(self.file, self.column, self.message)
        }
    }
}

/// What the manifest records of each input file.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub table: &'static str,
    /// Path relative to the input folder, lossy where the name is not UTF-8.
    pub path: String,
    /// The same, exactly (`exact`): how the state tells files apart. Not in the manifest.
    #[serde(skip)]
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
    /// Its stamp as it was before its bytes were hashed: what the state records, so a file
    /// rewritten after it was read is read again. Taken after the decoding, a rewrite in
    /// between paired the new time with the old rows.
    #[serde(skip)]
    pub stamp: Stamp,
}

/// What tells that a file changed since it was read, without reading it: its modification
/// time, its status-change time and its inode. The first alone missed a rewrite that keeps it
/// (`touch -r`, `cp -p`, a copy tool that keeps times):
/// the state kept the old rows. A rewrite in place moves the status-change time, which no
/// user call can set back; a replacement by rename brings another inode. Zero where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stamp {
    /// ns since the epoch.
    pub mtime_ns: i64,
    /// ns since the epoch (Unix; 0 elsewhere).
    #[serde(default)]
    pub ctime_ns: i64,
    /// Unix; 0 elsewhere.
    #[serde(default)]
    pub inode: u64,
}

/// How recent a file's change makes its stamp racy (`Stamp::racy`): time stamps kept to 2 s
/// (FAT) and a file server's clock up to a second behind this host's stay inside it.
pub const RACY_NS: i64 = 5_000_000_000;

/// Now, in ns since the epoch (0 before it).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Whether the file at `path`, read with stamp `was` (taken from `taken_from`, `Stamp::racy`),
/// size `bytes` and BLAKE3 `blake3`, is unchanged at stamp `now`: the same stamp, unless it is
/// racy (a rewrite just after the read may have kept it), or the same bytes. A new hard link (a
/// backup's snapshot), a mode, owner or extended attribute moves the status-change time too,
/// without a byte changed, so a moved stamp is told by hashing the file again.
pub fn unchanged(path: &Path, was: Stamp, taken_from: Option<i64>, now: Stamp, bytes: u64, blake3: &str) -> bool {
    (now == was && !was.racy(taken_from)) || same_bytes(path, bytes, blake3)
}

/// Whether the file at `path` holds `bytes` bytes of BLAKE3 `blake3` (read to tell).
pub fn same_bytes(path: &Path, bytes: u64, blake3: &str) -> bool {
    hash_file(path).is_ok_and(|(n, h, _)| n == bytes && h == blake3)
}

impl Stamp {
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        let mtime_ns = mtime_of(m);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ctime_ns = m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec());
            Stamp { mtime_ns, ctime_ns, inode: m.ino() }
        }
        #[cfg(not(unix))]
        Stamp { mtime_ns, ctime_ns: 0, inode: 0 }
    }

    /// The stamp of the file at `path` (followed as reading it follows it), or zero.
    pub fn of_path(path: &Path) -> Stamp {
        std::fs::metadata(path).map(|m| Stamp::of(&m)).unwrap_or_default()
    }

    /// Whether it could belong to other bytes than the ones read after it was taken (as
    /// "racily clean" entries are in git's index): the file changed less than `RACY_NS` before
    /// the stamp began to be taken (`taken_from`, ns since the epoch; unknown: racy). A clock of
    /// a few ms (the status-change time on kernels before 6.13), or whole seconds on some file
    /// systems, can give a rewrite just after the read the same stamp; a file last changed
    /// longer before cannot be rewritten in its tick after. A stamp from the future (a clock
    /// ahead) is racy until it passes.
    pub fn racy(&self, taken_from: Option<i64>) -> bool {
        taken_from.is_none_or(|from| self.changed_ns() >= from.saturating_sub(RACY_NS))
    }

    /// When the file last changed, as far as the stamp tells: its status-change time, or where
    /// there is none (off Unix) its modification time.
    pub fn changed_ns(&self) -> i64 {
        self.ctime_ns.max(self.mtime_ns)
    }

    /// Whether it can tell a change at all: a file system that keeps no times leaves only the
    /// size, which a rewrite can keep. A modification time of 0 alone (set so by tools that
    /// make their outputs reproducible) leaves the status-change time, which a rewrite moves.
    pub fn known(&self) -> bool {
        self.mtime_ns != 0 || self.ctime_ns != 0
    }
}

/// A table after reading: canonical column names and types, plus what was found on the way.
pub struct ReadTable {
    pub df: DataFrame,
    pub files: Vec<FileInfo>,
    pub findings: Vec<Finding>,
}

/// Files of one table: `NAME.parquet` as a file, or a folder `NAME.parquet/` or `NAME/` of
/// Parquet files (any depth, hive-style `key=value` folders allowed). Hidden files and
/// `_`-prefixed markers are skipped, as Spark and Hive do.
pub fn locate(input: &Path, table: Table) -> Result<Vec<PathBuf>> {
    check_input_folder(input)?;
    let name = table.name();
    // Every place the table may be; more than one present is ambiguous, and reading one of them
    // silently would drop the other's rows.
    let candidates = [input.join(format!("{name}.parquet")), input.join(name)];
    let present: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
    match present.as_slice() {
        [] => Err(Error::MissingInput { path: candidates[0].clone() }),
        [one] if one.is_file() => Ok(vec![(*one).clone()]),
        [dir] if dir.is_dir() => {
            let mut found = Vec::new();
            let mut folders = Vec::new();
            walk(dir, &mut found, &mut folders)
                .map_err(|e| Error::bad_file(dir.display().to_string(), e.to_string()))?;
            found.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
            if found.is_empty() {
                return Err(Error::MissingInput { path: (*dir).clone() });
            }
            Ok(found)
        }
        [other] => Err(Error::bad_file(shown(input, other), crate::io::NOT_REGULAR.to_string())),
        _ => Err(Error::bad_file(
            input.display().to_string(),
            format!(
                "both {} and {} hold {name}: keep one (lanewatch will not guess which)",
                shown(input, present[0]),
                shown(input, present[1])
            ),
        )),
    }
}

/// The input must be an existing folder: a missing path or a file is exit 66 with a message
/// that says which.
pub fn check_input_folder(input: &Path) -> Result<()> {
    if input.is_dir() {
        Ok(())
    } else if input.exists() {
        Err(Error::InputNotFolder { path: input.to_path_buf() })
    } else {
        Err(Error::MissingInput { path: input.to_path_buf() })
    }
}

/// The table's files under `dir`. Symbolic links are followed, as a partition folder linked
/// in from another disk is common: a link is neither a file nor a folder to `DirEntry`, and
/// skipping it once dropped a whole partition's rows without a word. `folders` holds the
/// folders being walked (canonical paths), so that a link back to one of them is an error
/// rather than an endless walk; a dangling link is an error too.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, folders: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let real = std::fs::canonicalize(dir)?;
    if folders.contains(&real) {
        return Err(std::io::Error::other(format!("{} links back to a folder that holds it", dir.display())));
    }
    folders.push(real);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b".") || bytes.starts_with(b"_") {
            continue;
        }
        let path = entry.path();
        let mut ft = entry.file_type()?;
        if ft.is_symlink() {
            ft = std::fs::metadata(&path)
                .map_err(|e| std::io::Error::other(format!("{}: a link to nothing readable ({e})", path.display())))?
                .file_type();
        }
        if ft.is_dir() {
            walk(&path, out, folders)?;
        } else if has_parquet_extension(bytes) || (ft.is_file() && !bytes.contains(&b'.')) {
            out.push(path);
        }
    }
    folders.pop();
    Ok(())
}

/// Whether a file name ends `.parquet` or `.parq`, in any case: `part-0.PARQUET` (as some
/// writers on case-insensitive file systems name them) was skipped without a word.
fn has_parquet_extension(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(b".parquet") || lower.ends_with(b".parq")
}

/// A file's path relative to the input folder, control characters and the marks no one sees
/// (`error::hidden`: bidirectional and zero-width marks) shown as `?`: how messages and
/// `FileInfo` name it. A right-to-left override in a file name reordered the log line naming it.
pub fn shown(input: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(input).unwrap_or(path);
    rel.to_string_lossy().chars().map(|c| if crate::error::hidden(c) { '?' } else { c }).collect()
}

/// A file's path relative to the input folder, one text per path: `shown` where that is
/// printable UTF-8 without a backslash, else each control character's, backslash's and
/// undecodable byte written `\xNN`. The state matches files by it: two names `shown` alike
/// (`a\x01` and `a\x02` are both `a?`) once looked like one file gone, and every night was a
/// full refresh.
pub fn exact(input: &Path, path: &Path) -> String {
    use std::fmt::Write;
    let rel = path.strip_prefix(input).unwrap_or(path);
    let mut out = String::new();
    let hex = |out: &mut String, bytes: &[u8]| bytes.iter().for_each(|b| _ = write!(out, "\\x{b:02x}"));
    for chunk in rel.as_os_str().as_encoded_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                hex(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes());
            } else {
                out.push(c);
            }
        }
        hex(&mut out, chunk.invalid());
    }
    out
}

/// Rows in a table's files, from their footers alone (unreadable files count as empty; reading
/// them reports why).
pub fn footer_rows(input: &Path, table: Table) -> Result<u64> {
    Ok(footer_rows_of(&locate(input, table)?))
}

/// Rows in some files, from their footers alone (a footer that contradicts itself counts none:
/// reading the file reports it).
pub fn footer_rows_of(paths: &[PathBuf]) -> u64 {
    let mut rows = 0u64;
    for path in paths {
        let Ok(file) = crate::io::open_regular(path) else { continue };
        if let Ok(meta) = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&file) {
            rows = rows.saturating_add(stated_rows(&meta).unwrap_or(0));
        }
    }
    rows
}

/// A file's rows by its footer: its row groups' rows, which must add up to the count the footer
/// states; a footer that contradicts itself is a corrupt file. The stated count alone was
/// trusted (for the memory estimate and the manifest), and counts that overflow wrapped below
/// the budget. (A footer forged consistently still claims what it claims: the estimate reads
/// it, and the decoded rows are what they are.)
fn stated_rows(meta: &parquet::file::metadata::ParquetMetaData) -> std::result::Result<u64, String> {
    let mut groups = 0u64;
    for g in meta.row_groups() {
        let n = u64::try_from(g.num_rows()).map_err(|_| format!("a row group of {} rows", g.num_rows()))?;
        groups = groups.checked_add(n).ok_or("row groups of more rows than a count holds")?;
    }
    let stated = meta.file_metadata().num_rows();
    if u64::try_from(stated).ok() != Some(groups) {
        return Err(format!("the footer states {stated} rows but its row groups hold {groups}"));
    }
    Ok(groups)
}

/// Columns checked from the footer but never decoded: nothing downstream reads them.
const NOT_DECODED: &[&str] = &["location"];

/// How a column in a file must be converted to its canonical type.
#[derive(Debug, Clone, Copy)]
enum Convert {
    Keep,
    ToString,
    /// Text the Parquet reader did not check is UTF-8 (`check_text`), then as `Keep` or `ToString`.
    CheckText,
    ToF64,
    Timestamp {
        unit: ArrowUnit,
        naive: bool,
    },
}

/// One input file whose footer passed: where it is, what the manifest records of it, and how
/// each planned column converts to its canonical type.
pub struct FilePlan {
    pub path: PathBuf,
    /// Its path relative to the input folder (`shown`), for messages.
    pub name: String,
    pub info: FileInfo,
    columns: Vec<(&'static ColumnSpec, String, Convert)>,
    naive_zone: Option<NaiveZone>,
    /// Row groups in the file (its footer's count).
    row_groups: usize,
    /// When its stamp began to be taken (`now_ns`): the decode's check of it (`Stamp::racy`).
    stamped_from: i64,
}

impl FilePlan {
    /// The same file, decoding only these canonical columns (the others come back null).
    pub fn only(mut self, names: &[&str]) -> FilePlan {
        self.columns.retain(|(spec, _, _)| names.contains(&spec.name));
        self
    }
}

/// The files of one table, planned: those that can be decoded, what the manifest records of
/// every file, and the file-level errors found on the way.
pub struct Planned {
    pub plans: Vec<FilePlan>,
    pub files: Vec<FileInfo>,
    pub findings: Vec<Finding>,
}

/// A file's size, BLAKE3 (read in blocks, never whole in memory) and stamp, the stamp taken
/// from the open file before a byte is read.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(u64, String, Stamp)> {
    use std::io::Read;
    let mut f = crate::io::open_regular(path)?;
    let stamp = f.metadata().map(|m| Stamp::of(&m)).unwrap_or_default();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize().to_hex().to_string(), stamp))
}

/// A file's modification time in ns since the epoch; 0 when unknown.
pub fn mtime_of(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Checks each file of `table` from its footer (schema, types, row count; nothing decoded). A
/// file-level problem (unreadable, missing required column, wrong type) is an error finding and
/// the file gets no plan; the caller decides whether errors are fatal. `only` restricts the
/// table to some of its files (an incremental night reads the new ones).
pub fn plan_table(input: &Path, table: Table, cfg: &InputConfig, only: Option<&[PathBuf]>) -> Result<Planned> {
    let paths = match only {
        Some(p) => p.to_vec(),
        None => locate(input, table)?,
    };
    let mapping = match table {
        Table::Shipments => &cfg.columns.shipments,
        Table::Events => &cfg.columns.events,
    };
    let source_name = |c: &ColumnSpec| mapping.get(c.name).cloned().unwrap_or_else(|| c.name.to_string());
    let naive_tz = cfg.naive_timezone.trim();
    let naive_zone = NaiveZone::parse(naive_tz)?;

    // Each file is hashed and its footer read on its own (in parallel: a first night on day
    // partitions plans hundreds of files, and one after the other they kept a core idle),
    // gathered in file order.
    use rayon::prelude::*;
    let planned: Vec<Result<PlannedFile>> =
        paths.par_iter().map(|path| plan_file(input, table, path, &source_name, naive_tz, naive_zone)).collect();
    let mut out = Planned { plans: Vec::with_capacity(paths.len()), files: Vec::new(), findings: Vec::new() };
    for p in planned {
        let p = p?;
        out.files.extend(p.info);
        out.findings.extend(p.findings);
        out.plans.extend(p.plan);
    }
    Ok(out)
}

/// What planning one file found: its manifest entry (none when it cannot be read at all), its
/// file-level findings, and its plan when it can be decoded.
struct PlannedFile {
    info: Option<FileInfo>,
    findings: Vec<Finding>,
    plan: Option<FilePlan>,
}

/// `plan_table` of one file.
fn plan_file(
    input: &Path,
    table: Table,
    path: &Path,
    source_name: &(dyn Fn(&ColumnSpec) -> String + Sync),
    naive_tz: &str,
    naive_zone: Option<NaiveZone>,
) -> Result<PlannedFile> {
    let mut out = PlannedFile { info: None, findings: Vec::new(), plan: None };
    let file = shown(input, path);
    // The file as it is in the input folder (`shipments.parquet`, `events/date=…/part-0.parquet`):
    // with the table put in front, a top-level file read `shipments/shipments.parquet`, a path
    // no one could find.
    let name_for_msgs = file.clone();
    let stamped_from = now_ns();
    let (bytes, hash, stamp) = hash_file(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingInput { path: path.to_path_buf() },
        _ => Error::bad_file(name_for_msgs.clone(), format!("cannot read: {e}")),
    })?;
    let err = |column: &str, check: &'static str, message: String| Finding {
        level: Level::Error,
        file: name_for_msgs.clone(),
        column: column.to_string(),
        check,
        message,
        count: 1,
    };

    // Footer first: schema and row count without decoding a page.
    let footer = crate::io::open_regular(path).map_err(|e| e.to_string()).and_then(|f| {
        let meta =
            parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&f).map_err(|e| e.to_string())?;
        stated_rows(&meta).map(|_| meta)
    });
    let meta = match footer {
        Ok(m) => m,
        Err(e) => {
            let why = if bytes == 0 {
                "empty file (0 bytes), not Parquet".to_string()
            } else {
                format!("not a readable Parquet file: {}", crate::error::one_line(e))
            };
            out.findings.push(err("", "corrupt_file", why));
            let name = exact(input, path);
            out.info = Some(FileInfo { table: table.name(), path: file, name, rows: 0, bytes, blake3: hash, stamp });
            return Ok(out);
        }
    };
    let rows = stated_rows(&meta).unwrap_or(0);
    let info = FileInfo {
        table: table.name(),
        path: file.clone(),
        name: exact(input, path),
        rows,
        bytes,
        blake3: hash,
        stamp,
    };
    out.info = Some(info.clone());
    let schema = match parquet::arrow::parquet_to_arrow_schema(
        meta.file_metadata().schema_descr(),
        meta.file_metadata().key_value_metadata(),
    ) {
        Ok(s) => s,
        Err(e) => {
            out.findings.push(err(
                "",
                "corrupt_file",
                format!("unreadable schema: {}", crate::error::one_line(e.to_string())),
            ));
            return Ok(out);
        }
    };

    let mut plan: Vec<(&'static ColumnSpec, String, Convert)> = Vec::new();
    let mut file_ok = true;
    for spec in table.columns() {
        let src = source_name(spec);
        let Ok(field) = schema.field_with_name(&src) else {
            if spec.required {
                let hint = if src != spec.name { format!(" (mapped from {src:?})") } else { String::new() };
                out.findings.push(err(spec.name, "missing_column", format!("required column is missing{hint}")));
                file_ok = false;
            }
            continue;
        };
        // Two columns of one name: the reader took the first without a word.
        let named = schema.fields().iter().filter(|f| f.name() == &src).count();
        if named > 1 {
            let why = format!("{named} columns are named {src:?}: keep one (lanewatch will not guess which)");
            out.findings.push(err(spec.name, "ambiguous_column", why));
            file_ok = false;
            continue;
        }
        let dt = field.data_type();
        // The reader checks the bytes of columns annotated as UTF-8 text alone: a column it
        // reads as text from other bytes (annotated JSON, or binary that the file's Arrow schema
        // calls text) comes unchecked, and is checked here (`check_text`).
        // The column's Parquet descriptor: its physical type and annotation.
        let parquet_column = || {
            meta.file_metadata().schema_descr().columns().iter().find(|c| c.path().parts() == [src.as_str()]).cloned()
        };
        let reader_checks_text =
            || parquet_column().is_some_and(|c| c.converted_type() == parquet::basic::ConvertedType::UTF8);
        let is_int96 = || parquet_column().is_some_and(|c| c.physical_type() == parquet::basic::Type::INT96);
        let conv = match (spec.kind, dt) {
            (ValueKind::Str, _) if is_text(dt) && !reader_checks_text() => Some(Convert::CheckText),
            (ValueKind::Str, ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View) => Some(Convert::Keep),
            (ValueKind::Str, ArrowType::Dictionary(_, v))
                if matches!(v.as_ref(), ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View) =>
            {
                Some(Convert::ToString)
            }
            (ValueKind::Float, ArrowType::Float64) => Some(Convert::Keep),
            // Any number, decimals of every width among them (money is usually decimal128, which
            // was refused while decimal32 and decimal64 were read): Arrow's cast applies the scale.
            (ValueKind::Float, t) if t.is_numeric() => Some(Convert::ToF64),
            (ValueKind::Bool, ArrowType::Boolean) => Some(Convert::Keep),
            (ValueKind::Timestamp, ArrowType::Timestamp(unit, tz)) => match tz {
                // Spark's default timestamps (INT96, deprecated Parquet) carry no time-zone
                // annotation but hold instants Spark normalised to UTC: they are UTC whatever
                // `input.naive_timezone` says (which would shift them). Refused as naive, a
                // Spark-written input could not be read without rewriting it.
                None if is_int96() => Some(Convert::Timestamp { unit: *unit, naive: false }),
                None if naive_tz.is_empty() => {
                    out.findings.push(err(
                        spec.name,
                        "naive_timestamp",
                        "timestamps have no time zone; store them as UTC or set input.naive_timezone".into(),
                    ));
                    file_ok = false;
                    continue;
                }
                None => Some(Convert::Timestamp { unit: *unit, naive: true }),
                Some(_) => Some(Convert::Timestamp { unit: *unit, naive: false }),
            },
            _ => None,
        };
        match conv {
            Some(_) if NOT_DECODED.contains(&spec.name) => {}
            Some(c) => plan.push((spec, src, c)),
            None => {
                out.findings.push(err(spec.name, "wrong_type", format!("expected {}, got {}", spec.kind.name(), dt)));
                file_ok = false;
            }
        }
    }
    if file_ok {
        let row_groups = meta.num_row_groups();
        out.plan = Some(FilePlan {
            path: path.to_path_buf(),
            name: name_for_msgs,
            info,
            columns: plan,
            naive_zone,
            row_groups,
            stamped_from,
        });
    }
    Ok(out)
}

/// A table's files decoded side by side (`read_file_parts_with`) only below this size on disk.
/// Side by side, the 10M-shipment table's 171 day files (226 MB) left the full refresh's peak
/// 229 MiB higher (the events decoded after them grew the process further, as if the freed
/// decoding buffers lay between the ones the shipments keep), for no saving the night's noise
/// at that size shows; at 1M shipments (24 MB) side by side saves 0.3 s of the full refresh's
/// validation for 20 MiB.
const SIDE_BY_SIDE_BYTES: u64 = 64 << 20;

/// Row groups decoded at once per file: enough to keep both cores busy, few enough that memory
/// stays at a few row groups whatever the file's size.
const ROW_GROUPS_AT_ONCE: usize = 2;

/// Decodes one planned file into canonical columns, a few row groups at a time in file order,
/// handing each decoded part to `sink` (the table is never decoded whole). The next row groups
/// decode while `sink` takes the last ones, so a sink's serial work costs no wall time of its
/// own. Returns the file's errors (null values in required columns, corrupt pages).
pub fn decode_file(
    plan: &FilePlan,
    table: Table,
    sink: &mut (dyn FnMut(DataFrame) -> Result<()> + Send),
) -> Result<Vec<Finding>> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use rayon::prelude::*;

    let err = |column: &str, check: &'static str, message: String, count: u64| Finding {
        level: Level::Error,
        file: plan.name.clone(),
        column: column.to_string(),
        check,
        message,
        count,
    };
    let corrupt =
        |why: String| vec![err("", "corrupt_file", format!("cannot decode data: {}", crate::error::one_line(why)), 1)];
    let file = match crate::io::open_regular(&plan.path) {
        Ok(f) => f,
        Err(e) => return Ok(corrupt(e.to_string())),
    };
    let meta = match ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()) {
        Ok(m) => m,
        Err(e) => return Ok(corrupt(e.to_string())),
    };
    let meta = as_string_views(meta, plan);
    // By the top-level columns' places: `ProjectionMask::columns` splits names at dots (as
    // paths into nested columns), so a flat column named `tracking.number` was never read.
    let names: Vec<&str> = plan.columns.iter().map(|(_, src, _)| src.as_str()).collect();
    let roots = meta.parquet_schema().root_schema().get_fields().iter().enumerate();
    let mask = ProjectionMask::roots(
        meta.parquet_schema(),
        roots.filter(|(_, f)| names.contains(&f.name())).map(|(k, _)| k).collect::<Vec<_>>(),
    );
    let groups: Vec<usize> = (0..meta.metadata().num_row_groups()).collect();
    let mut nulls = vec![0u64; plan.columns.len()];
    let decode = |chunk: &[usize]| -> Vec<std::result::Result<DataFrame, String>> {
        // A malformed page can make a decoder panic; that is a bad file, not a crash.
        chunk
            .par_iter()
            .map(|&rg| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> std::result::Result<DataFrame, String> {
                    // Its own descriptor: a `try_clone` shares the file offset, and the
                    // reader seeks, so two row groups decoded at once would race on it.
                    let f = crate::io::open_regular(&plan.path).map_err(|e| e.to_string())?;
                    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta.clone())
                        .with_projection(mask.clone())
                        .with_row_groups(vec![rg])
                        .with_batch_size(1 << 16)
                        .build()
                        .map_err(|e| e.to_string())?;
                    let batches: Vec<arrow::record_batch::RecordBatch> =
                        reader.collect::<std::result::Result<_, _>>().map_err(|e| e.to_string())?;
                    let height: usize = batches.iter().map(|b| b.num_rows()).sum();
                    let mut cols = Vec::with_capacity(plan.columns.len());
                    for (spec, src, conv) in &plan.columns {
                        let arrays: Vec<arrow::array::ArrayRef> = batches
                            .iter()
                            .map(|b| b.column_by_name(src).cloned().ok_or_else(|| format!("column {src} missing")))
                            .collect::<std::result::Result<_, _>>()?;
                        cols.push(
                            to_column(spec, &arrays, *conv, plan.naive_zone.as_ref()).map_err(|e| e.to_string())?,
                        );
                    }
                    DataFrame::new(height, cols).map_err(|e| e.to_string())
                }))
                .unwrap_or_else(|_| Err("the Parquet reader failed on this file".into()))
            })
            .collect()
    };
    let mut take = |decoded: Vec<std::result::Result<DataFrame, String>>| -> Result<Option<String>> {
        for part in decoded {
            let df = match part {
                Ok(df) => df,
                Err(e) => return Ok(Some(e)),
            };
            for (k, (spec, _, _)) in plan.columns.iter().enumerate() {
                if spec.required {
                    nulls[k] += df.column(spec.name).map(|c| c.null_count()).unwrap_or(0) as u64;
                }
            }
            sink(align(df, table)?)?;
        }
        Ok(None)
    };
    let chunks: Vec<&[usize]> = groups.chunks(ROW_GROUPS_AT_ONCE).collect();
    let mut upcoming = chunks.iter().skip(1);
    let mut ready = chunks.first().map(|c| decode(c));
    while let Some(decoded) = ready.take() {
        let next = upcoming.next();
        let (taken, next) = rayon::join(|| take(decoded), || next.map(|c| decode(c)));
        if let Some(e) = taken? {
            return Ok(corrupt(e));
        }
        ready = next;
    }
    // Still the file that was hashed (its stamp was taken before): one replaced or rewritten
    // since may have given rows of two versions, or rows the recorded hash is not of, and a
    // state would keep them as that file's. Its rows are dropped as a corrupt file's are.
    let info = &plan.info;
    let same = || {
        unchanged(&plan.path, info.stamp, Some(plan.stamped_from), Stamp::of_path(&plan.path), info.bytes, &info.blake3)
    };
    if info.stamp.known() && !same() {
        let why = "the file changed while it was read (replaced or rewritten during the night): rerun once it is \
                   written";
        return Ok(vec![err("", "corrupt_file", why.to_string(), 1)]);
    }
    Ok(plan
        .columns
        .iter()
        .zip(nulls)
        .filter(|(_, n)| *n > 0)
        .map(|((spec, _, _), n)| err(spec.name, "null_required", format!("{n} null values in a required column"), n))
        .collect())
}

/// `meta` reading the plan's string columns as string views: decoded from a dictionary page,
/// a view is copied per value (not its bytes), and the views become polars' as they are
/// (`string_views`), where building polars' strings value by value was a tenth of decoding an
/// input. Only top-level `Utf8` and `LargeUtf8` fields read as text change; `meta` as it was
/// where the reader does not take the schema.
fn as_string_views(
    meta: parquet::arrow::arrow_reader::ArrowReaderMetadata,
    plan: &FilePlan,
) -> parquet::arrow::arrow_reader::ArrowReaderMetadata {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    let text = |name: &str| plan.columns.iter().any(|(spec, src, _)| spec.kind == ValueKind::Str && src == name);
    let schema = meta.schema();
    let mut changed = false;
    let fields: Vec<arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            ArrowType::Utf8 | ArrowType::LargeUtf8 if text(f.name()) => {
                changed = true;
                std::sync::Arc::new(f.as_ref().clone().with_data_type(ArrowType::Utf8View))
            }
            _ => f.clone(),
        })
        .collect();
    if !changed {
        return meta;
    }
    let views = arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone());
    ArrowReaderMetadata::try_new(meta.metadata().clone(), ArrowReaderOptions::new().with_schema(views.into()))
        .unwrap_or(meta)
}

/// An Arrow string view array as polars': both keep the Arrow format's 16-byte views, so the
/// views are taken as they are and the data buffers copied whole.
fn string_views(a: &arrow::array::StringViewArray) -> <StringType as PolarsDataType>::Array {
    type Polars = <StringType as PolarsDataType>::Array;
    // polars' view and buffer types, named through an empty array (polars does not export them).
    let empty = Polars::new_empty(ArrowDataType::Utf8View);
    fn like<T, S>(_: &[T], src: impl Iterator<Item = S>) -> Vec<T>
    where
        T: From<S>,
    {
        src.map(T::from).collect()
    }
    let views = like(empty.views(), a.views().iter().copied());
    let buffers = like(empty.data_buffers(), a.data_buffers().iter().map(|b| b.as_slice().to_vec()));
    let buffer_len = buffers.iter().map(|b| b.len()).sum();
    let validity = arrow::array::Array::nulls(a).filter(|n| n.null_count() > 0).map(|n| n.iter().collect());
    // SAFETY: the array holds valid UTF-8 (the reader checks columns annotated as UTF-8 text,
    // `check_text` the others before this), and its views are valid for its data buffers
    // (arrow checks them when it builds one from Parquet), which keep their order here; the
    // validity has one bit per view.
    unsafe {
        Polars::new_unchecked_unknown_md(
            ArrowDataType::Utf8View,
            views.into(),
            buffers.into(),
            validity,
            Some(buffer_len),
        )
    }
}

/// Whether a column of this type reads as text: strings, or a dictionary of them.
fn is_text(dt: &ArrowType) -> bool {
    match dt {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => true,
        ArrowType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// Fails on a value that is not UTF-8. The Parquet reader leaves the bytes of a column not
/// annotated as UTF-8 text unchecked even where it reads them as text, and polars must never
/// hold such a string: its strings are `str`, and the ids reach file names, CSV and HTML.
fn check_text(a: &dyn arrow::array::Array) -> Result<(), arrow::error::ArrowError> {
    use arrow::array::{AsArray, BinaryArray, LargeBinaryArray, LargeStringArray, StringArray};
    match a.data_type() {
        ArrowType::Utf8View => drop(a.as_string_view().clone().to_binary_view().to_string_view()?),
        ArrowType::Utf8 => drop(StringArray::try_from_binary(BinaryArray::from(a.as_string::<i32>().clone()))?),
        ArrowType::LargeUtf8 => {
            drop(LargeStringArray::try_from_binary(LargeBinaryArray::from(a.as_string::<i64>().clone()))?)
        }
        ArrowType::Dictionary(..) => check_text(a.as_any_dictionary().values().as_ref())?,
        _ => {}
    }
    Ok(())
}

/// A decoded part with every canonical column (files may lack optional ones).
fn align(df: DataFrame, table: Table) -> Result<DataFrame> {
    let height = df.height();
    let mut cols = Vec::with_capacity(table.columns().len());
    for spec in table.columns().iter().filter(|c| !NOT_DECODED.contains(&c.name)) {
        match df.column(spec.name) {
            Ok(c) => cols.push(c.clone()),
            Err(_) => cols.push(Column::full_null(spec.name.into(), height, &canonical_dtype(spec.kind))),
        }
    }
    Ok(DataFrame::new(height, cols)?)
}

/// Reads one table whole (the shipments): every planned file decoded and stacked in file order.
pub fn read_table(input: &Path, table: Table, cfg: &InputConfig) -> Result<ReadTable> {
    read_files(input, table, cfg, None)
}

/// `read_table` restricted to some files of the table.
pub fn read_files(input: &Path, table: Table, cfg: &InputConfig, only: Option<&[PathBuf]>) -> Result<ReadTable> {
    stacked(table, read_file_parts(input, table, cfg, only)?)
}

/// A table's files read one by one: what `read_files` stacks, kept per file (the state between
/// nights stores each file's rows and findings apart).
pub struct FileParts {
    pub files: Vec<FileInfo>,
    /// Footer-level findings of every file, in file order.
    pub plan_findings: Vec<Finding>,
    /// Every file whose footer passed, in file order.
    pub decoded: Vec<DecodedFile>,
}

pub struct DecodedFile {
    pub info: FileInfo,
    /// Where it is: `info.path` is the name as shown, which differs for names with control
    /// characters or bytes that are not UTF-8.
    pub path: PathBuf,
    /// The file's rows; `None` for a file with a corrupt page (it contributes no rows).
    pub df: Option<DataFrame>,
    /// The findings of decoding it (null required values, corrupt pages).
    pub findings: Vec<Finding>,
}

pub fn read_file_parts(input: &Path, table: Table, cfg: &InputConfig, only: Option<&[PathBuf]>) -> Result<FileParts> {
    read_file_parts_with(input, table, cfg, only, &mut Ok)
}

/// `read_files` keeping of each decoded batch (a row group or less) only what `keep` returns:
/// a shard's rows are cut from the batches as they are decoded, so the rest of the table
/// never exists whole.
pub fn read_files_with(
    input: &Path,
    table: Table,
    cfg: &InputConfig,
    keep: &mut (dyn FnMut(DataFrame) -> Result<DataFrame> + Send),
) -> Result<ReadTable> {
    stacked(table, read_file_parts_with(input, table, cfg, None, keep)?)
}

/// The files' rows as one table, their findings after the footers'.
fn stacked(table: Table, parts: FileParts) -> Result<ReadTable> {
    let mut findings = parts.plan_findings;
    let mut frames = Vec::with_capacity(parts.decoded.len());
    for f in parts.decoded {
        findings.extend(f.findings);
        frames.extend(f.df);
    }
    Ok(ReadTable { df: stack(table, frames)?, files: parts.files, findings })
}

fn read_file_parts_with(
    input: &Path,
    table: Table,
    cfg: &InputConfig,
    only: Option<&[PathBuf]>,
    keep: &mut (dyn FnMut(DataFrame) -> Result<DataFrame> + Send),
) -> Result<FileParts> {
    let Planned { plans, files, findings } = plan_table(input, table, cfg, only)?;
    let mut decoded = Vec::with_capacity(plans.len());
    // Files of a row group or two are decoded whole by `decode_file` anyway, and their row
    // groups cannot keep both cores busy: a few such files are decoded side by side (day
    // partitions, one row group each, were decoded one after the other), and handed to `keep`
    // in file order. Larger files are decoded a few row groups at a time, kept as they come,
    // and so are a large table's files (`SIDE_BY_SIDE_BYTES`).
    let side_by_side = plans.iter().map(|p| p.info.bytes).sum::<u64>() < SIDE_BY_SIDE_BYTES;
    let small = |p: &FilePlan| side_by_side && p.row_groups <= ROW_GROUPS_AT_ONCE;
    let mut at = 0;
    while at < plans.len() {
        let n = if small(&plans[at]) {
            plans[at..].iter().take(2 * rayon::current_num_threads().max(1)).take_while(|p| small(p)).count()
        } else {
            1
        };
        let batch = &plans[at..at + n];
        at += n;
        let whole: Vec<(Vec<DataFrame>, Result<Vec<Finding>>)> = if n == 1 {
            Vec::new()
        } else {
            use rayon::prelude::*;
            batch
                .par_iter()
                .map(|plan| {
                    let mut parts = Vec::new();
                    let errors = decode_file(plan, table, &mut |df| {
                        parts.push(df);
                        Ok(())
                    });
                    (parts, errors)
                })
                .collect()
        };
        let mut whole = whole.into_iter();
        for plan in batch {
            let mut file_parts = Vec::new();
            let errors = match whole.next() {
                Some((parts, errors)) => {
                    let errors = errors?;
                    for df in parts {
                        file_parts.push(keep(df)?);
                    }
                    errors
                }
                None => decode_file(plan, table, &mut |df| {
                    file_parts.push(keep(df)?);
                    Ok(())
                })?,
            };
            // A file with a corrupt page contributes no rows, as a file that fails its footer.
            let df = match errors.iter().any(|e| e.check == "corrupt_file") {
                true => None,
                false => Some(stack(table, file_parts)?),
            };
            decoded.push(DecodedFile { info: plan.info.clone(), path: plan.path.clone(), df, findings: errors });
        }
    }
    Ok(FileParts { files, plan_findings: findings, decoded })
}

/// Frames of one table stacked in order into one contiguous frame (the canonical empty frame
/// when there are none).
pub fn stack(table: Table, parts: Vec<DataFrame>) -> Result<DataFrame> {
    let mut acc = stack_chunks(table, parts)?;
    acc.rechunk_mut();
    Ok(acc)
}

/// `stack` with the frames' chunks kept as they are, for a caller that takes the rows in
/// another order anyway (`gather`, which writes one chunk): made one chunk first, every value
/// would be written twice.
pub fn stack_chunks(table: Table, parts: Vec<DataFrame>) -> Result<DataFrame> {
    let mut it = parts.into_iter();
    let Some(mut acc) = it.next() else {
        return Ok(DataFrame::empty_with_schema(&canonical_schema(table)));
    };
    for f in it {
        acc.vstack_mut_owned(f)?;
    }
    Ok(acc)
}

/// Rows `rows` of `df` (indices into it, any order), one chunk per column: `df.take`, except
/// that a column of many chunks without nulls is gathered from its chunks directly: a string
/// column by its views, its chunks' data buffers shared rather than copied, and a number or
/// time column by its values. polars' take copies a string column string by string, and making
/// it one chunk first writes every view twice: at 10M shipments (171 day files) the two took
/// 1.8-7.5 s of an incremental night, as the host's page faults cost, and this about 2 s
/// (BENCHMARKS.md, 2026-12-03 (night)); its take of a number column across those chunks looked
/// each row's chunk up again, 0.15-0.22 s a column. The values are the same either way.
pub fn gather(df: &DataFrame, rows: &[u32]) -> Result<DataFrame> {
    use rayon::prelude::*;
    let n = df.height();
    if let Some(&bad) = rows.iter().find(|&&r| r as usize >= n) {
        return Err(Error::internal(format!("gather: row {bad} of a frame of {n}")));
    }
    /// How a column is gathered.
    enum Way {
        Views(StringChunked),
        /// The physical values of a number or time column.
        Values(Series),
        Take,
    }
    let ways: Vec<Way> = df
        .columns()
        .iter()
        .map(|c| {
            if c.n_chunks() <= 1 || c.null_count() > 0 {
                return Way::Take;
            }
            if let Ok(ca) = c.str() {
                return Way::Views(ca.clone());
            }
            let physical = c.as_materialized_series().to_physical_repr().into_owned();
            let number = matches!(
                physical.dtype(),
                DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Float32
                    | DataType::Float64
            );
            if number { Way::Values(physical) } else { Way::Take }
        })
        .collect();
    let idx = ways
        .iter()
        .any(|w| matches!(w, Way::Take))
        .then(|| IdxCa::from_vec("".into(), rows.iter().map(|&r| r as IdxSize).collect()));
    // Each row's chunk and place in it, found once for the columns chunked alike (all of them,
    // for frames stacked from files).
    let lengths = |c: &Column| c.as_materialized_series().chunk_lengths().collect::<Vec<_>>();
    let layout = df.columns().iter().zip(&ways).find(|(_, w)| !matches!(w, Way::Take)).map(|(c, _)| {
        let l = lengths(c);
        let at = ChunkRows::of(&l, rows);
        (l, at)
    });
    let columns = df
        .columns()
        .par_iter()
        .zip(&ways)
        .map(|(c, way)| -> Result<Column> {
            if let Way::Take = way {
                return Ok(c.take(idx.as_ref().expect("an index for the columns polars takes"))?);
            }
            let own;
            let at = match &layout {
                Some((l, at)) if *l == lengths(c) => at,
                _ => {
                    own = ChunkRows::of(&lengths(c), rows);
                    &own
                }
            };
            Ok(match way {
                Way::Views(ca) => gather_views(ca, at).into_column(),
                Way::Values(physical) => gather_numbers(physical, at)?.cast(c.dtype())?.into_column(),
                Way::Take => unreachable!("taken above"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DataFrame::new(rows.len(), columns)?)
}

/// Rows of a column of many chunks as (chunk, row within it).
struct ChunkRows(Vec<(u32, u32)>);

impl ChunkRows {
    /// For a column whose chunks have `lengths`.
    fn of(lengths: &[usize], rows: &[u32]) -> ChunkRows {
        use rayon::prelude::*;
        let mut starts: Vec<usize> = Vec::with_capacity(lengths.len() + 1);
        let mut row = 0usize;
        for len in lengths {
            starts.push(row);
            row += len;
        }
        starts.push(row);
        ChunkRows(
            rows.par_iter()
                .map(|&r| {
                    let r = r as usize;
                    // The last chunk starting at or before r (empty chunks start where the next does).
                    let c = starts.partition_point(|&s| s <= r) - 1;
                    (c as u32, (r - starts[c]) as u32)
                })
                .collect(),
        )
    }
}

/// `gather` of a number column without nulls (a time column's physical values): each row's
/// value read from its chunk.
fn gather_numbers(s: &Series, at: &ChunkRows) -> Result<Series> {
    fn values<T: PolarsNumericType>(ca: &ChunkedArray<T>, at: &ChunkRows) -> Series {
        use rayon::prelude::*;
        let chunks: Vec<&[T::Native]> = ca.downcast_iter().map(|a| a.values().as_slice()).collect();
        let v: Vec<T::Native> = at.0.par_iter().map(|&(c, r)| chunks[c as usize][r as usize]).collect();
        ChunkedArray::<T>::from_vec(ca.name().clone(), v).into_series()
    }
    Ok(match s.dtype() {
        DataType::Int8 => values(s.i8()?, at),
        DataType::Int16 => values(s.i16()?, at),
        DataType::Int32 => values(s.i32()?, at),
        DataType::Int64 => values(s.i64()?, at),
        DataType::UInt8 => values(s.u8()?, at),
        DataType::UInt16 => values(s.u16()?, at),
        DataType::UInt32 => values(s.u32()?, at),
        DataType::UInt64 => values(s.u64()?, at),
        DataType::Float32 => values(s.f32()?, at),
        DataType::Float64 => values(s.f64()?, at),
        other => return Err(Error::internal(format!("gather: {other} is not a number column"))),
    })
}

/// `gather` of a string column without nulls: each row's view, its buffer index moved to
/// where its chunk's buffers start among every chunk's buffers.
fn gather_views(ca: &StringChunked, at: &ChunkRows) -> StringChunked {
    use crate::io::INLINE_VIEW_BYTES as INLINE;
    use rayon::prelude::*;
    let chunks: Vec<_> = ca.downcast_iter().collect();
    // Per chunk, the index of its first buffer among all chunks' buffers.
    let bases: Vec<u32> = chunks
        .iter()
        .scan(0u32, |next, a| {
            let base = *next;
            *next += a.data_buffers().len() as u32;
            Some(base)
        })
        .collect();
    let buffers: Vec<_> = chunks.iter().flat_map(|a| a.data_buffers().iter().cloned()).collect();
    let buffer_len: usize = buffers.iter().map(|b| b.len()).sum();
    let views: Vec<_> =
        at.0.par_iter()
            .map(|&(c, r)| {
                let mut view = chunks[c as usize].views()[r as usize];
                if view.length > INLINE {
                    view.buffer_idx += bases[c as usize];
                }
                view
            })
            .collect();
    // SAFETY: each view is one of a chunk's own, valid for that chunk's buffers, which sit in
    // `buffers` from `bases[c]` on in the same order; inline views read no buffer. No nulls.
    let array = unsafe {
        <StringType as PolarsDataType>::Array::new_unchecked_unknown_md(
            ArrowDataType::Utf8View,
            views.into(),
            buffers.into(),
            None,
            Some(buffer_len),
        )
    };
    StringChunked::with_chunk(ca.name().clone(), array)
}

pub fn canonical_dtype(kind: ValueKind) -> DataType {
    match kind {
        ValueKind::Str => DataType::String,
        ValueKind::Timestamp => crate::io::utc_dtype(),
        ValueKind::Float => DataType::Float64,
        ValueKind::Bool => DataType::Boolean,
    }
}

pub fn canonical_schema(table: Table) -> Schema {
    table
        .columns()
        .iter()
        .filter(|c| !NOT_DECODED.contains(&c.name))
        .map(|c| Field::new(c.name.into(), canonical_dtype(c.kind)))
        .collect()
}

/// One canonical column from the Arrow arrays of a column, batch by batch.
fn to_column(
    spec: &ColumnSpec,
    arrays: &[arrow::array::ArrayRef],
    conv: Convert,
    naive_zone: Option<&NaiveZone>,
) -> Result<Column, arrow::error::ArrowError> {
    use arrow::array::AsArray;
    use arrow::compute::cast;
    use arrow::datatypes::{Float64Type, Int64Type};
    let name: PlSmallStr = spec.name.into();
    Ok(match (spec.kind, conv) {
        (ValueKind::Str, _) => {
            let mut out: Vec<StringChunked> = Vec::with_capacity(arrays.len());
            for a in arrays {
                if matches!(conv, Convert::CheckText) {
                    check_text(a.as_ref())?;
                }
                out.push(match a.data_type() {
                    ArrowType::Utf8 => StringChunked::from_iter_options(name.clone(), a.as_string::<i32>().iter()),
                    ArrowType::Utf8View => StringChunked::with_chunk(name.clone(), string_views(a.as_string_view())),
                    _ => {
                        let a = cast(a, &ArrowType::LargeUtf8)?;
                        StringChunked::from_iter_options(name.clone(), a.as_string::<i64>().iter())
                    }
                });
            }
            concat_chunked(out, name)?.into_column()
        }
        (ValueKind::Float, _) => {
            let mut v: Vec<Option<f64>> = Vec::new();
            for a in arrays {
                let a = cast(a, &ArrowType::Float64)?;
                v.extend(a.as_primitive::<Float64Type>().iter());
            }
            Float64Chunked::from_iter_options(name, v.into_iter()).into_column()
        }
        (ValueKind::Bool, _) => {
            let mut v: Vec<Option<bool>> = Vec::new();
            for a in arrays {
                v.extend(a.as_boolean().iter());
            }
            BooleanChunked::from_iter_options(name, v.into_iter()).into_column()
        }
        (ValueKind::Timestamp, Convert::Timestamp { unit, naive }) => {
            let to_us = |v: i64| -> i64 {
                match unit {
                    ArrowUnit::Second => v.saturating_mul(1_000_000),
                    ArrowUnit::Millisecond => v.saturating_mul(1_000),
                    ArrowUnit::Microsecond => v,
                    ArrowUnit::Nanosecond => v.div_euclid(1_000),
                }
            };
            let mut v: Vec<Option<i64>> = Vec::new();
            for a in arrays {
                // The raw values: UTC instants for zoned timestamps, wall-clock for naive ones.
                let raw = cast(a, &ArrowType::Int64)?;
                let raw = raw.as_primitive::<Int64Type>();
                v.reserve(raw.len());
                for x in raw.iter() {
                    v.push(x.map(|x| match (naive, naive_zone) {
                        (true, Some(zone)) => zone.to_utc(to_us(x)),
                        _ => to_us(x),
                    }));
                }
            }
            Int64Chunked::from_iter_options(name, v.into_iter())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column()
        }
        (ValueKind::Timestamp, _) => {
            return Err(arrow::error::ArrowError::InvalidArgumentError(format!("{}: not a timestamp", spec.name)));
        }
    })
}

fn concat_chunked(parts: Vec<StringChunked>, name: PlSmallStr) -> Result<StringChunked, arrow::error::ArrowError> {
    let mut it = parts.into_iter();
    let Some(mut acc) = it.next() else {
        return Ok(StringChunked::full_null(name, 0));
    };
    for p in it {
        acc.append_owned(p).map_err(|e| arrow::error::ArrowError::ComputeError(e.to_string()))?;
    }
    acc.rechunk_mut();
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn exact_names_tell_apart_what_shown_names_do_not() {
        use std::os::unix::ffi::OsStrExt;
        let input = Path::new("/in");
        let names: [&[u8]; 7] =
            [b"a\x01", b"a\x02", b"a?", b"a\\x01", b"a\xff", b"a\xef\xbf\xbd", b"d\xc3\xa9j\xc3\xa0"];
        let path = |n: &[u8]| input.join(std::ffi::OsStr::from_bytes(n));
        let exact: Vec<String> = names.iter().map(|n| exact(input, &path(n))).collect();
        let unique: std::collections::BTreeSet<&String> = exact.iter().collect();
        assert_eq!(unique.len(), names.len(), "{exact:?}");
        assert_eq!(shown(input, &path(names[0])), shown(input, &path(names[1])));
        // Regression: bidirectional and zero-width marks reached the log line as they were.
        assert_eq!(shown(input, &path("x\u{202e}gpj\u{200b}.parquet".as_bytes())), "x?gpj?.parquet");
        // Printable names are as shown; the rest escaped byte by byte.
        assert_eq!(exact[2], "a?");
        assert_eq!(exact[6], "déjà");
        assert_eq!(exact[0], "a\\x01");
        assert_eq!(exact[3], "a\\x5cx01");
        assert_eq!(exact[4], "a\\xff");
    }

    /// Arrow's string views as polars' (`string_views`), against polars' strings built value by
    /// value: strings inline and in buffers, nulls, empty strings, and slices of an array (whose
    /// views and validity start past the array's).
    #[test]
    fn string_views_become_polars_strings_value_for_value() {
        use arrow::array::StringViewArray;
        let values: Vec<Option<String>> = (0..200usize)
            .map(|k| match k % 5 {
                0 => None,
                1 => Some(String::new()),
                2 => Some(k.to_string()),
                3 => Some(format!("a string longer than twelve bytes, {k} é")),
                _ => Some("x".repeat(k % 20)),
            })
            .collect();
        // Small blocks: the long strings spread over many data buffers.
        let mut builder = arrow::array::StringViewBuilder::new().with_fixed_block_size(128);
        for v in &values {
            builder.append_option(v.as_deref());
        }
        let a: StringViewArray = builder.finish();
        assert!(a.data_buffers().len() > 5, "{} data buffers", a.data_buffers().len());
        for (offset, len) in [(0, 200), (7, 150), (13, 0), (199, 1), (3, 1)] {
            let got = StringChunked::with_chunk("s".into(), string_views(&a.slice(offset, len)));
            let want =
                StringChunked::from_iter_options("s".into(), values[offset..offset + len].iter().map(|v| v.as_deref()));
            assert!(got.clone().into_series().equals_missing(&want.clone().into_series()), "{offset}+{len}: {got:?}");
            assert_eq!(got.null_count(), want.null_count(), "{offset}+{len}");
        }
    }

    /// `gather` against polars' take of the frame made one chunk: frames of several chunks
    /// (empty ones among them), strings inline and in buffers, a string column chunked unlike
    /// the others, columns with nulls (which polars takes), number and time columns (gathered
    /// by their values) and a boolean one, rows in any order and repeated.
    #[test]
    fn gathering_rows_of_many_chunks_gives_the_take_of_the_frame_made_one_chunk() {
        let mut rng = crate::TestRng::new(29);
        let mut next = |m: u64| rng.next() % m;
        let (mut by_views, mut by_values) = (0, 0);
        for case in 0..300u64 {
            let parts: Vec<DataFrame> = (0..1 + case % 6)
                .map(|_| {
                    let n = next(12) as usize * (next(4) > 0) as usize;
                    let text = |k: u64| format!("{k}{}", "x".repeat((k % 30) as usize));
                    let s: Vec<String> = (0..n).map(|_| text(next(1000))).collect();
                    let nullable: Vec<Option<String>> =
                        (0..n).map(|_| (next(3) > 0).then(|| text(next(1000)))).collect();
                    let k: Vec<u32> = (0..n).map(|_| next(1 << 20) as u32).collect();
                    let x: Vec<f64> = (0..n).map(|_| next(1000) as f64 / 7.0).collect();
                    let maybe: Vec<Option<f64>> = (0..n).map(|_| (next(3) > 0).then(|| next(9) as f64)).collect();
                    let when: Vec<i64> = (0..n).map(|_| next(1 << 40) as i64).collect();
                    let flag: Vec<bool> = (0..n).map(|_| next(2) == 0).collect();
                    DataFrame::new(
                        n,
                        vec![
                            Column::new("s".into(), s),
                            Column::new("nullable".into(), nullable),
                            Column::new("k".into(), k),
                            Column::new("x".into(), x),
                            Column::new("maybe".into(), maybe),
                            Column::new("when".into(), when)
                                .cast(&DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)))
                                .unwrap(),
                            Column::new("flag".into(), flag),
                        ],
                    )
                    .unwrap()
                })
                .collect();
            let mut stacked = parts[0].clone();
            for p in &parts[1..] {
                stacked.vstack_mut(p).unwrap();
            }
            // A column chunked otherwise: its values in two chunks split at the middle.
            let s: Vec<String> =
                stacked.column("s").unwrap().str().unwrap().iter().map(|v| v.unwrap().to_string()).collect();
            let (first, second) = s.split_at(s.len() / 2);
            let mut t = Series::new("t".into(), first);
            t.append(&Series::new("t".into(), second)).unwrap();
            stacked.with_column(t.into_column()).unwrap();
            let n = stacked.height() as u64;
            let rows: Vec<u32> =
                (0..next(2 * n + 1)).map(|_| next(n.max(1)) as u32).filter(|&r| (r as u64) < n).collect();
            let got = gather(&stacked, &rows).unwrap();
            let mut one = stacked.clone();
            one.rechunk_mut();
            let want = one.take(&IdxCa::from_vec("".into(), rows.iter().map(|&r| r as IdxSize).collect())).unwrap();
            assert!(got.equals_missing(&want), "case {case}: rows {rows:?}");
            assert_eq!(got.schema(), want.schema(), "case {case}");
            assert!(got.columns().iter().all(|c| c.as_materialized_series().n_chunks() == 1), "case {case}");
            by_views += (stacked.column("s").unwrap().str().unwrap().chunks().len() > 1 && !rows.is_empty()) as u32;
            by_values += (stacked.column("when").unwrap().n_chunks() > 1 && !rows.is_empty()) as u32;
        }
        assert!(by_views > 100, "only {by_views} cases gathered a string column of many chunks by its views");
        assert!(by_values > 100, "only {by_values} cases gathered a time column of many chunks by its values");
        let one_row = DataFrame::new(1, vec![Column::new("k".into(), [1u32])]).unwrap();
        assert!(gather(&one_row, &[1]).is_err(), "a row past the frame is refused");
    }

    /// Partition folders and files linked in from elsewhere are read like the others; a link
    /// back to a folder that holds it, or to nothing, is an error rather than a hang or a gap.
    #[cfg(unix)]
    #[test]
    fn linked_partitions_are_read_and_bad_links_refused() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let (input, elsewhere) = (tmp.path().join("input"), tmp.path().join("elsewhere"));
        let events = input.join("events");
        for d in [events.join("date=2026-01-01"), elsewhere.join("day2")] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [events.join("date=2026-01-01/part-0.parquet"), elsewhere.join("day2/part-0.parquet")] {
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::write(elsewhere.join("c.parquet"), b"x").unwrap();
        symlink(elsewhere.join("day2"), events.join("date=2026-01-02")).unwrap();
        symlink(elsewhere.join("c.parquet"), events.join("c.parquet")).unwrap();
        let found = locate(&input, Table::Events).unwrap();
        let names: Vec<String> = found.iter().map(|p| shown(&input, p)).collect();
        assert_eq!(
            names,
            ["events/c.parquet", "events/date=2026-01-01/part-0.parquet", "events/date=2026-01-02/part-0.parquet"]
        );

        symlink(&events, events.join("date=2026-01-01/again")).unwrap();
        let e = locate(&input, Table::Events).unwrap_err().to_string();
        assert!(e.contains("links back"), "{e}");
        std::fs::remove_file(events.join("date=2026-01-01/again")).unwrap();

        symlink(elsewhere.join("gone"), events.join("gone.parquet")).unwrap();
        let e = locate(&input, Table::Events).unwrap_err().to_string();
        assert!(e.contains("gone.parquet") && e.contains("a link to nothing"), "{e}");
    }

    /// A FIFO or a device is refused when it is opened, at once: opening a FIFO to read waited
    /// for a writer, and hashing `/dev/zero` never ended. Run on a thread, so that a regression
    /// fails the test instead of hanging it.
    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_when_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("part-0.parquet");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let plain = tmp.path().join("plain.parquet");
        std::fs::write(&plain, b"PAR1").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let paths = [fifo, PathBuf::from("/dev/zero"), plain];
        std::thread::spawn(move || {
            for p in &paths {
                let opened = crate::io::open_regular(p).map(|_| ()).map_err(|e| e.kind());
                let hashed = hash_file(p).map(|(n, _, _)| n).map_err(|e| e.kind());
                tx.send((opened, hashed)).unwrap();
            }
        });
        let wait = || rx.recv_timeout(std::time::Duration::from_secs(30)).expect("an open or a read that never ends");
        for what in ["a FIFO", "/dev/zero"] {
            let invalid = Err(std::io::ErrorKind::InvalidInput);
            assert_eq!(wait(), (invalid, Err(std::io::ErrorKind::InvalidInput)), "{what}");
        }
        assert_eq!(wait(), (Ok(()), Ok(4)), "a regular file");
    }

    /// A column the reader takes as text without checking its bytes (annotated JSON here) is
    /// checked: bytes that are not UTF-8 make the file bad rather than reach polars as a `str`.
    #[test]
    fn text_the_reader_leaves_unchecked_is_checked() {
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        use parquet::file::writer::SerializedFileWriter;
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path();
        std::fs::create_dir_all(input.join("events")).unwrap();
        let schema = std::sync::Arc::new(
            parquet::schema::parser::parse_message_type(
                "message events { required binary shipment_id (JSON); \
                 required int64 event_time (TIMESTAMP(MICROS,true)); required binary status (UTF8); }",
            )
            .unwrap(),
        );
        let write = |name: &str, id: &[u8]| {
            let f = std::fs::File::create(input.join("events").join(name)).unwrap();
            let mut w = SerializedFileWriter::new(f, schema.clone(), Default::default()).unwrap();
            let mut rg = w.next_row_group().unwrap();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<ByteArrayType>().write_batch(&[ByteArray::from(id.to_vec())], None, None).unwrap();
            c.close().unwrap();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<Int64Type>().write_batch(&[1_790_000_000_000_000], None, None).unwrap();
            c.close().unwrap();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<ByteArrayType>().write_batch(&[ByteArray::from("DELIVERED")], None, None).unwrap();
            c.close().unwrap();
            rg.close().unwrap();
            w.close().unwrap();
        };
        let cfg = InputConfig::default();
        write("a.parquet", "S-1 ✓".as_bytes());
        let read = read_files(input, Table::Events, &cfg, None).unwrap();
        assert!(read.findings.iter().all(|f| f.level != Level::Error), "{:?}", read.findings);
        assert_eq!(read.df.column("shipment_id").unwrap().str().unwrap().get(0), Some("S-1 ✓"));

        write("b.parquet", b"S-2 \xff\xfe");
        let read = read_files(input, Table::Events, &cfg, None).unwrap();
        let bad: Vec<String> = read.findings.iter().filter(|f| f.level == Level::Error).map(|f| f.line()).collect();
        assert!(bad.len() == 1 && bad[0].contains("b.parquet") && bad[0].to_lowercase().contains("utf-8"), "{bad:?}");
    }

    /// Regression: a file was hashed (and stamped) on one open and decoded on others, so one
    /// replaced or rewritten in between gave rows the recorded hash was not of, and the state
    /// kept them as that file's. The decode checks the stamp again and drops such a file's rows.
    #[cfg(unix)]
    #[test]
    fn a_file_changed_while_it_was_read_gives_no_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path();
        std::fs::create_dir_all(input.join("events")).unwrap();
        let path = input.join("events/a.parquet");
        let write = |at: &Path, id: &str| {
            let t = Series::new("event_time".into(), [1_790_000_000_000_000i64])
                .cast(&DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)))
                .unwrap();
            let mut df = DataFrame::new(
                1,
                vec![
                    Column::new("shipment_id".into(), [id]),
                    t.into_column(),
                    Column::new("status".into(), ["DELIVERED"]),
                ],
            )
            .unwrap();
            ParquetWriter::new(std::fs::File::create(at).unwrap()).finish(&mut df).unwrap();
        };
        let decoded = |plan: &FilePlan| {
            let mut rows = 0;
            let findings = decode_file(plan, Table::Events, &mut |df| {
                rows += df.height();
                Ok(())
            })
            .unwrap();
            (rows, findings.iter().map(Finding::line).collect::<Vec<_>>())
        };
        write(&path, "S-1");
        let cfg = InputConfig::default();
        let plan = || plan_table(input, Table::Events, &cfg, None).unwrap().plans.remove(0);
        assert_eq!(decoded(&plan()), (1, vec![]));
        // Replaced by another file (another inode) between the plan and the decode.
        let p = plan();
        write(&input.join("next.parquet"), "S-2");
        std::fs::rename(input.join("next.parquet"), &path).unwrap();
        let (_, findings) = decoded(&p);
        assert!(findings.len() == 1 && findings[0].contains("changed while it was read"), "{findings:?}");
        // Rewritten in place with its modification time put back (`touch -r`): only its
        // status-change time tells, which a kernel before 6.13 stamps from a clock of a few ms.
        let p = plan();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        write(&path, "S-3");
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
        let (_, findings) = decoded(&p);
        assert!(findings.len() == 1 && findings[0].contains("changed while it was read"), "{findings:?}");
        // Only linked elsewhere and made read-only (a backup's snapshot, a chmod): the same
        // bytes, read as they are.
        let p = plan();
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::hard_link(&path, input.join("snapshot.parquet")).unwrap();
        let mut mode = std::fs::metadata(&path).unwrap().permissions();
        mode.set_readonly(true);
        std::fs::set_permissions(&path, mode).unwrap();
        assert_ne!(Stamp::of_path(&path), p.info.stamp);
        assert_eq!(decoded(&p), (1, vec![]));
        assert_eq!(decoded(&plan()), (1, vec![]));
        // Hashed as other bytes than its stamp's: a rewrite in the same tick of a coarse clock,
        // just after the hash. While the stamp is racy the decode checks the bytes (regression:
        // an equal stamp was trusted); once it is not, the stamp.
        let mut p = plan();
        p.info.blake3 = "0".repeat(64);
        let (_, findings) = decoded(&p);
        assert!(findings.len() == 1 && findings[0].contains("changed while it was read"), "{findings:?}");
        let s = p.info.stamp;
        p.stamped_from = s.changed_ns() + RACY_NS + 1;
        assert_eq!(decoded(&p), (1, vec![]));
    }
}
