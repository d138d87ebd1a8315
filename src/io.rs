//! Writing files so that the same frame always gives the same bytes, and so that a reader never
//! sees half a file.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};

const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Polars keeps a string of up to this many bytes inside its 16-byte view (arrow's
/// `View::MAX_INLINE_SIZE`); a longer one's view points into a data buffer of its chunk.
pub const INLINE_VIEW_BYTES: u32 = 12;

/// Writes `df` as Parquet. The frame is rechunked first: row groups then depend only on the row
/// count, never on how many threads built the frame. Not synced: a run folder is flushed once,
/// with `sync_filesystem`, before it is renamed into place.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<u64> {
    df.rechunk_mut();
    let file = File::create(path).map_err(|e| Error::output(path, e))?;
    let mut buf = std::io::BufWriter::with_capacity(1 << 20, file);
    output_writer(&mut buf).finish(df).map_err(|e| Error::output(path, e))?;
    buf.into_inner().map_err(|e| Error::output(path, e.error()))?;
    Ok(df.height() as u64)
}

/// The bytes `write_parquet` writes for `df` (`path` names the destination in an error): for a
/// file encoded once and written in more than one place (the advice a training night publishes
/// and keeps in the state).
pub fn parquet_bytes(path: &Path, df: &mut DataFrame) -> Result<Vec<u8>> {
    df.rechunk_mut();
    let mut buf = Vec::new();
    output_writer(&mut buf).finish(df).map_err(|e| Error::output(path, e))?;
    Ok(buf)
}

/// A fingerprint of `output_writer` with the polars it is built with: the first 16 hex digits of
/// the BLAKE3 of a small fixed frame's file (one column of each type the outputs hold, nulls and
/// NaN among the values). Bytes kept to be published again (the state's advice files) are used
/// only under the same fingerprint: another codec, level, row group size, statistics or polars
/// could encode the same tables otherwise, and a night publishing them would then differ from a
/// night encoding its own.
///
/// `Err`: the writer failed on that frame (it would fail on any output); nothing is kept or
/// taken under it.
pub fn output_writer_tag() -> std::result::Result<&'static str, String> {
    static TAG: std::sync::OnceLock<std::result::Result<String, String>> = std::sync::OnceLock::new();
    let tag = TAG.get_or_init(|| {
        let frame = || -> PolarsResult<DataFrame> {
            let mut df = df!(
                "s" => [Some("a"), None, Some("=b")],
                "f" => [Some(0.5), None, Some(f64::NAN)],
                "i" => [Some(1i64), None, Some(-3)],
                "u" => [Some(1u32), None, Some(7)],
                "b" => [Some(true), None, Some(false)],
            )?;
            let day = Column::new("d".into(), [Some(20_000i32), None, Some(20_500)]).cast(&DataType::Date)?;
            df.with_column(day)?;
            Ok(df)
        };
        let mut buf = Vec::new();
        match frame().and_then(|mut df| output_writer(&mut buf).finish(&mut df)) {
            Ok(_) => Ok(blake3::hash(&buf).to_hex()[..16].to_string()),
            Err(e) => Err(format!("the Parquet writer fails: {}", crate::error::one_line(e.to_string()))),
        }
    });
    tag.as_deref().map_err(Clone::clone)
}

/// The writer of every Parquet output: zstd, full statistics, fixed row groups. A change here
/// (or in how polars encodes) changes `output_writer_tag`, so kept files are encoded again.
fn output_writer<W: Write>(w: W) -> ParquetWriter<W> {
    ParquetWriter::new(w)
        .with_compression(ParquetCompression::Zstd(None))
        .with_statistics(StatisticsOptions::full())
        .with_row_group_size(Some(ROW_GROUP_ROWS))
}

/// Files that are replaced together: each written and synced under a temporary name, then all
/// renamed into place by `commit` once every one is written. A write that fails (a full disk)
/// leaves every file as it was, where one-by-one writes left tonight's first files beside the
/// night before's last ones; dropped uncommitted, the temporary files are removed.
#[derive(Default)]
pub struct FileSet {
    staged: Vec<(Temp, std::path::PathBuf)>,
}

impl FileSet {
    pub fn new() -> FileSet {
        FileSet::default()
    }

    /// `df` as Parquet, to become `path`; returns its rows.
    pub fn parquet(&mut self, df: &mut DataFrame, path: &Path) -> Result<u64> {
        let tmp = temp_sibling(path);
        let rows = write_parquet(df, tmp.path())?;
        sync_file(tmp.path())?;
        self.staged.push((tmp, path.to_path_buf()));
        Ok(rows)
    }

    /// `bytes`, to become `path`.
    pub fn bytes(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.staged.push((staged(path, bytes, true)?, path.to_path_buf()));
        Ok(())
    }

    /// Every file renamed into place, in the order written, and the renames made durable.
    pub fn commit(self) -> Result<()> {
        let mut dirs: Vec<&Path> = Vec::new();
        for (tmp, path) in &self.staged {
            std::fs::rename(tmp.path(), path).map_err(|e| Error::output(path, e))?;
            // A bare file name's parent is "", which does not open: it is the current folder.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Writes `df` as a compact internal file (LZ4, no statistics) to `path`, atomically; returns
/// the BLAKE3 of its bytes, which `read_checked` verifies. For the state and the partials,
/// which lanewatch alone reads back.
pub fn write_compact(path: &Path, df: &mut DataFrame) -> Result<String> {
    let buf = compact_bytes(path, df)?;
    write_atomic(path, &buf)?;
    Ok(blake3::hash(&buf).to_hex().to_string())
}

/// The bytes `write_compact` writes (`path` names the destination in an error).
///
/// On a worker of rayon's global pool (files written in parallel) the columns are serialised
/// one after another: polars' parallel serialiser installs its work into polars' own pool, and a
/// worker of another pool waiting for that steals its pool's next job, here the next file's
/// write, onto the same stack. With hundreds of day partitions the writes nested 185 deep and
/// overflowed the worker's stack (a first night on a 2M-shipment, 360-day input, about two runs
/// in three).
pub fn compact_bytes(path: &Path, df: &mut DataFrame) -> Result<Vec<u8>> {
    df.rechunk_mut();
    let mut buf = Vec::new();
    compact_writer(&mut buf).finish(df).map_err(|e| Error::output(path, e))?;
    Ok(buf)
}

/// The writer of lanewatch's internal files: LZ4, no statistics, row groups of
/// `COMPACT_SLICE_ROWS`, columns serialised in parallel only off rayon's workers (above).
fn compact_writer<W: Write>(w: W) -> ParquetWriter<W> {
    ParquetWriter::new(w)
        .set_parallel(rayon::current_thread_index().is_none())
        .with_compression(ParquetCompression::Lz4Raw)
        .with_statistics(StatisticsOptions::empty())
        .with_row_group_size(Some(COMPACT_SLICE_ROWS))
}

/// Rows per slice of `write_compact_slices`: one row group of `compact_bytes`.
pub const COMPACT_SLICE_ROWS: usize = 1 << 20;

/// `write_compact` of a frame of `height` rows that is never built whole: `slice(range)` gives
/// the rows of each `slice_rows` range in turn, each written as a row group straight to
/// the file, so a large state segment (92M events on a first night at 10M shipments) costs one
/// slice of memory rather than a copy of its columns plus its encoded bytes. Atomic (renamed
/// into place whole) and hashed as `write_compact`; the same rows always give the same bytes.
/// Not synced: the caller makes a batch of them durable with one `sync_filesystem` before
/// anything names them (an fsync per file was a quarter of writing a first night's state).
pub fn write_compact_slices(
    path: &Path,
    height: usize,
    slice_rows: usize,
    slice: impl FnMut(std::ops::Range<usize>) -> Result<DataFrame>,
) -> Result<String> {
    write_slices(path, height, slice_rows, ParquetCompression::Lz4Raw, slice)
}

/// `write_compact_slices` without compression, for columns LZ4 barely shrinks (times and codes
/// shipment after shipment: 81 MB to 68 MB at 1M shipments), which are then written and read
/// back faster.
pub fn write_plain_slices(
    path: &Path,
    height: usize,
    slice_rows: usize,
    slice: impl FnMut(std::ops::Range<usize>) -> Result<DataFrame>,
) -> Result<String> {
    write_slices(path, height, slice_rows, ParquetCompression::Uncompressed, slice)
}

fn write_slices(
    path: &Path,
    height: usize,
    slice_rows: usize,
    compression: ParquetCompression,
    mut slice: impl FnMut(std::ops::Range<usize>) -> Result<DataFrame>,
) -> Result<String> {
    let slice_rows = slice_rows.max(1);
    /// Hashes what it writes, so the bytes need not be read back.
    struct Hashing<W: Write> {
        out: W,
        hash: blake3::Hasher,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.out.write(buf)?;
            self.hash.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
    let tmp = temp_sibling(path);
    let file = File::create(tmp.path()).map_err(|e| Error::output(tmp.path(), e))?;
    let mut sink = Hashing { out: std::io::BufWriter::with_capacity(1 << 20, file), hash: blake3::Hasher::new() };
    let mut first = slice(0..height.min(slice_rows))?;
    first.rechunk_mut();
    let hash = {
        let mut w = compact_writer(&mut sink)
            .with_compression(compression)
            .with_row_group_size(Some(slice_rows))
            .batched(first.schema())
            .map_err(|e| Error::output(path, e))?;
        w.write_batch(&first).map_err(|e| Error::output(path, e))?;
        drop(first);
        let mut at = slice_rows;
        while at < height {
            let mut df = slice(at..height.min(at + slice_rows))?;
            df.rechunk_mut();
            w.write_batch(&df).map_err(|e| Error::output(path, e))?;
            at += slice_rows;
        }
        w.finish().map_err(|e| Error::output(path, e))?;
        drop(w);
        sink.flush().map_err(|e| Error::output(tmp.path(), e))?;
        sink.hash.finalize().to_hex().to_string()
    };
    drop(sink);
    std::fs::rename(tmp.path(), path).map_err(|e| Error::output(path, e))?;
    Ok(hash)
}

/// Writes `df` to `path` as `write_compact` would, streamed to the file (never whole in memory)
/// and unsynced: a scratch file that the same run reads back and removes (`unspill`).
pub fn spill(path: &Path, df: &mut DataFrame) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::output(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    compact_writer(&mut w).finish(df).map_err(|e| Error::output(path, e))?;
    w.flush().map_err(|e| Error::output(path, e))
}

/// Reads back and removes a file `spill` wrote.
pub fn unspill(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::output(path, e))?;
    let df = ParquetReader::new(file).finish().map_err(|e| Error::output(path, e))?;
    std::fs::remove_file(path).map_err(|e| Error::output(path, e))?;
    Ok(df)
}

/// Frames of the same columns (parts of one output) as one, sorted by `by` (unique keys) and
/// in one chunk, as the output built whole is.
pub fn stacked(frames: Vec<DataFrame>, by: &[&str]) -> Result<DataFrame> {
    let mut frames = frames.into_iter();
    let mut df = frames.next().ok_or_else(|| Error::internal("no parts to stack"))?;
    for f in frames {
        df.vstack_mut(&f)?;
    }
    let mut df = df.sort(by.to_vec(), SortMultipleOptions::default())?;
    df.rechunk_mut();
    Ok(df)
}

/// Reads a file `write_compact` wrote, if its bytes still have the BLAKE3 `blake3`; the error
/// says what is wrong ("is unreadable: …", "is corrupt …").
pub fn read_checked(path: &Path, blake3: &str) -> std::result::Result<DataFrame, String> {
    decode_checked(&read_bytes(path)?, blake3)
}

/// The bytes of `path`; the error says "is unreadable: …".
fn read_bytes(path: &Path) -> std::result::Result<Vec<u8>, String> {
    std::fs::read(path).map_err(unreadable)
}

/// What the checked reads say of a file they cannot open or read.
fn unreadable(e: std::io::Error) -> String {
    format!("is unreadable: {e}")
}

/// `read_checked` of a file of the state (`OUT/state/`), mapped rather than read (`Mapped`):
/// an incremental night reads about 100 MB of state at 1M shipments. Not for the shards'
/// partials, which other machines write and which may sit on a network file system.
pub fn map_checked(path: &Path, blake3: &str) -> std::result::Result<DataFrame, String> {
    decode_checked(&Mapped::of(path).map_err(unreadable)?, blake3)
}

/// The frame of a file's bytes, if they have the BLAKE3 `blake3`.
fn decode_checked(bytes: &[u8], blake3: &str) -> std::result::Result<DataFrame, String> {
    verify(bytes, blake3)?;
    decode_parquet(bytes).map_err(|e| format!("is corrupt: {e}"))
}

/// Why `open_regular` refused a file.
pub const NOT_REGULAR: &str = "not a regular file (a FIFO, device or socket), which lanewatch does not read";

/// Opens a file lanewatch is given (an input file, a model) to read, refusing anything but a
/// regular file (links followed): a FIFO blocks the open until a writer comes and a device such
/// as `/dev/zero` never ends, so a night hung without a word. The open does not wait
/// (`O_NONBLOCK`, which a regular file's reads ignore), and the open file is what is checked,
/// so nothing swapped in between a check and the open is read.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, NOT_REGULAR));
    }
    Ok(file)
}

/// The whole of a file lanewatch is given, opened as `open_regular` opens it.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_regular(path)?, &mut bytes)?;
    Ok(bytes)
}

/// A file's bytes mapped read-only (Linux), or read (elsewhere, empty files, and file systems
/// that cannot map them). Mapped, the file's cached pages are the bytes: reading them into a
/// fresh buffer copied them and faulted in a new page of memory every 4 KiB (at 1M shipments,
/// 0.05 s of the incremental night's validation). Only for files lanewatch wrote and never
/// changes in place (the state's files are written beside and renamed into place, under the
/// run lock): a file truncated while mapped would fault on access.
pub struct Mapped(Held);

/// What a `Mapped` holds; private, so that no other code can make one of any pointer.
enum Held {
    #[cfg(target_os = "linux")]
    Map(std::ptr::NonNull<libc::c_void>, usize),
    Read(Vec<u8>),
}

// SAFETY: the mapping is read-only and owned by the value alone (unmapped on drop).
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    pub fn of(path: &Path) -> std::io::Result<Mapped> {
        Mapped::of_with(path, map_file)
    }

    /// `of`, with `map` mapping the open file of the given length (None: it cannot be mapped,
    /// and is read).
    fn of_with(path: &Path, map: impl FnOnce(&File, usize) -> Option<Mapped>) -> std::io::Result<Mapped> {
        let mut file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
        if len > 0
            && let Some(mapped) = map(&file, len)
        {
            return Ok(mapped);
        }
        // Read to its end, not to its stated length: some files state none (procfs).
        let mut bytes = Vec::with_capacity(len);
        std::io::Read::read_to_end(&mut file, &mut bytes)?;
        Ok(Mapped(Held::Read(bytes)))
    }

    /// Whether the bytes are mapped (not read).
    #[cfg(test)]
    fn is_mapped(&self) -> bool {
        !matches!(self.0, Held::Read(_))
    }
}

/// `madvise` advice that reads a mapping's pages in, failing (EIO, EFAULT) where a page cannot
/// be read (Linux 5.14; `libc` does not name it yet).
#[cfg(target_os = "linux")]
const MADV_POPULATE_READ: libc::c_int = 22;

/// A private read-only mapping of the open `file` of `len` bytes, its pages read in up front
/// (one call rather than a fault per page); None where the file system cannot map files (some
/// network and FUSE ones) or a page cannot be read. The pages are read by `madvise`, which
/// returns a disk's read error or a file shorter than `len`, rather than by `MAP_POPULATE`,
/// which ignores them: the first touch of such a page then killed the process (SIGBUS) in
/// place of the full refresh a state file that cannot be read gives. A kernel without the
/// advice (before 5.14) reads the file instead.
#[cfg(target_os = "linux")]
fn map_file(file: &File, len: usize) -> Option<Mapped> {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh private read-only mapping of an open file, of its length.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
    let mapped = Mapped(Held::Map(std::ptr::NonNull::new(p).filter(|_| p != libc::MAP_FAILED)?, len));
    // SAFETY: advice on the mapping just made, of its length; dropping `mapped` unmaps it.
    (unsafe { libc::madvise(p, len, MADV_POPULATE_READ) } == 0).then_some(mapped)
}

#[cfg(not(target_os = "linux"))]
fn map_file(_: &File, _: usize) -> Option<Mapped> {
    None
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            // SAFETY: the mapping is `len` readable bytes, alive until drop.
            #[cfg(target_os = "linux")]
            Held::Map(p, len) => unsafe { std::slice::from_raw_parts(p.as_ptr() as *const u8, *len) },
            Held::Read(bytes) => bytes,
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Held::Map(p, len) = self.0 {
            // SAFETY: unmaps the mapping `of` made, once; nothing borrows it past `self`.
            unsafe {
                libc::munmap(p.as_ptr(), len);
            }
        }
    }
}

/// The frame of a Parquet file's bytes; `Err`: polars' message, on one line.
pub fn decode_parquet(bytes: &[u8]) -> std::result::Result<DataFrame, String> {
    ParquetReader::new(std::io::Cursor::new(bytes)).finish().map_err(|e| crate::error::one_line(e.to_string()))
}

/// The bytes of `path`, when their BLAKE3 is `blake3`.
pub fn checked_bytes(path: &Path, blake3: &str) -> std::result::Result<Vec<u8>, String> {
    let bytes = read_bytes(path)?;
    verify(&bytes, blake3)?;
    Ok(bytes)
}

/// Whether `bytes` have the BLAKE3 `blake3`. Hashed on every thread: a night reads the state's
/// largest files (the sorted shipments, the kept clean events) one or two at a time.
fn verify(bytes: &[u8], blake3: &str) -> std::result::Result<(), String> {
    if blake3::Hasher::new().update_rayon(bytes).finalize().to_hex().as_str() != blake3 {
        return Err("is corrupt (its BLAKE3 does not match)".into());
    }
    Ok(())
}

/// Writes bytes to `path` through a synced temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_through_sibling(path, bytes, true)
}

/// Writes bytes to `path` through a temporary sibling and a rename, not synced: a reader never
/// sees half a file, and the caller makes a batch of them durable with one `sync_filesystem`
/// before anything names them.
pub fn write_renamed(path: &Path, bytes: &[u8]) -> Result<()> {
    write_through_sibling(path, bytes, false)
}

/// The bytes written to a temporary sibling of `path`, synced first when `sync`, then renamed
/// into place.
fn write_through_sibling(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let tmp = staged(path, bytes, sync)?;
    std::fs::rename(tmp.path(), path).map_err(|e| Error::output(path, e))
}

/// `bytes` in a temporary sibling of `path`, synced when `sync`, to be renamed into place.
fn staged(path: &Path, bytes: &[u8], sync: bool) -> Result<Temp> {
    let tmp = temp_sibling(path);
    File::create(tmp.path()).and_then(|mut f| f.write_all(bytes)).map_err(|e| Error::output(tmp.path(), e))?;
    if sync {
        sync_file(tmp.path())?;
    }
    Ok(tmp)
}

/// A temporary sibling of a file being written: `.NAME.tmp-PID-NONCE`, removed when dropped
/// unless renamed into place first. The nonce keeps two writers apart that share a process id
/// (attempts of one shard on two hosts writing to one partials folder), and a failed write
/// (a full disk) leaves nothing behind for later runs to trip over.
struct Temp(std::path::PathBuf);

impl Temp {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        // Gone already once renamed into place.
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_sibling(path: &Path) -> Temp {
    use std::hash::{BuildHasher, Hasher};
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut nonce = std::collections::hash_map::RandomState::new().build_hasher();
    nonce.write(name.as_bytes());
    Temp(path.with_file_name(format!(".{name}.tmp-{}-{:016x}", std::process::id(), nonce.finish())))
}

/// fsync(2) of one file: its bytes reach the disk before the rename that publishes it.
fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::output(path, e))?;
    #[cfg(test)]
    tests::SYNCED.with(|s| s.borrow_mut().push(path.to_path_buf()));
    Ok(())
}

/// Writes a file inside a run's staging folder (flushed later with `sync_filesystem`).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::output(path, e))?;
    f.write_all(bytes).map_err(|e| Error::output(path, e))
}

/// A folder in which many new files are created (a night's seller files): each is created
/// relative to the folder's open descriptor (`openat`), so the folder's path is not looked up
/// again for every file, and exclusively (`O_EXCL`), so a name used twice is an error rather
/// than a file silently overwritten. A 1M night's 7.7k seller files: its write stage 0.305 →
/// 0.267 s (medians) against `write_file`.
pub struct NewFiles(OpenedFolder);

impl NewFiles {
    /// Opens the existing folder `dir`.
    pub fn open(dir: &Path) -> Result<NewFiles> {
        OpenedFolder::open(dir).map(NewFiles).map_err(|e| Error::output(dir, e))
    }

    /// Creates the file `name` (a plain name: no separator) in the folder and writes `bytes`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.0.path(name);
        // A name that is not plain is lanewatch's error; anything the system refuses, the output's.
        let mut f = self.0.create_new(name).map_err(|e| match (e.kind(), e.raw_os_error()) {
            (std::io::ErrorKind::InvalidInput, None) => Error::internal(e),
            _ => Error::output(&path, e),
        })?;
        f.write_all(bytes).map_err(|e| Error::output(&path, e))
    }
}

/// A folder opened once, whose files are then opened through it (`openat`): a reader of
/// several files of one run folder gets them all from the folder it opened, even when a night
/// replaces `as_of=DATE` meanwhile (an exchange of two folders, or a new link): never one file
/// of each run. A file removed with the replaced folder is not found, and not taken from the
/// new one. Elsewhere than on Linux, files are opened by path.
pub struct OpenedFolder {
    dir: std::path::PathBuf,
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

impl OpenedFolder {
    pub fn open(dir: &Path) -> std::io::Result<OpenedFolder> {
        #[cfg(target_os = "linux")]
        {
            let fd = File::open(dir)?.into();
            Ok(OpenedFolder { dir: dir.to_path_buf(), fd })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(OpenedFolder { dir: dir.to_path_buf() })
    }

    /// The path of `name` in the folder, for messages.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    /// Opens the file `name` (a plain name) of the folder for reading.
    pub fn file(&self, name: &str) -> std::io::Result<File> {
        #[cfg(target_os = "linux")]
        return self.open_at(name, libc::O_RDONLY);
        #[cfg(not(target_os = "linux"))]
        File::open(self.plain(name)?)
    }

    /// Creates the file `name` (a plain name) in the folder, exclusively (`O_EXCL`).
    pub fn create_new(&self, name: &str) -> std::io::Result<File> {
        #[cfg(target_os = "linux")]
        return self.open_at(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL);
        #[cfg(not(target_os = "linux"))]
        File::create_new(self.plain(name)?)
    }

    /// The path of `name`, when it is a plain name: no separator, not `.` or `..`, so never a
    /// file outside the folder.
    fn plain(&self, name: &str) -> std::io::Result<std::path::PathBuf> {
        if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not a plain file name: {name:?}"),
            ));
        }
        Ok(self.path(name))
    }

    #[cfg(target_os = "linux")]
    fn open_at(&self, name: &str, flags: libc::c_int) -> std::io::Result<File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        self.plain(name)?;
        let c = std::ffi::CString::new(name)?;
        // SAFETY: `c` is a NUL-terminated string and the folder's descriptor is open for the
        // duration of the call.
        let fd =
            unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC, 0o666 as libc::c_uint) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else holds it: the `File` owns it alone.
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

/// Flushes everything written on the filesystem holding `path` (one syncfs(2) instead of an
/// fsync per file: a night writes one file per seller). Without syncfs (off Linux), every file
/// and folder under `path` is synced one by one: an fsync of the folder alone flushes none of
/// the files written in it.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::output(path, e))?;
    #[cfg(test)]
    tests::SYNCED.with(|s| s.borrow_mut().push(path.to_path_buf()));
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call.
        if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
            return Err(Error::output(path, std::io::Error::last_os_error()));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        drop(f);
        sync_tree(path)
    }
}

/// fsync(2) of `path` and, for a folder, of everything under it first.
#[cfg(not(target_os = "linux"))]
fn sync_tree(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).map_err(|e| Error::output(path, e))?.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| Error::output(path, e))? {
            sync_tree(&entry.map_err(|e| Error::output(path, e))?.path())?;
        }
    }
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::output(path, e))
}

/// fsync(2) of a folder: the renames and removals in it so far reach the disk (a new name
/// published by a rename before the old one's files are removed).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::output(dir, e))?;
    #[cfg(test)]
    tests::SYNCED.with(|s| s.borrow_mut().push(dir.to_path_buf()));
    Ok(())
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::output(path, e))
}

/// UTC microsecond timestamps, the only time type lanewatch writes.
pub fn utc_dtype() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

pub fn ts_column(name: &str, values: Vec<Option<i64>>) -> Column {
    Int64Chunked::from_iter_options(name.into(), values.into_iter())
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

pub fn ts_column_req(name: &str, values: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), values).into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)).into_column()
}

/// Days since the epoch as a Date column.
pub fn date_column(name: &str, days: Vec<Option<i32>>) -> Column {
    Int32Chunked::from_iter_options(name.into(), days.into_iter()).into_date().into_column()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// Paths `sync_file` synced on this thread, in order, and those `sync_filesystem` was
        /// given.
        pub(crate) static SYNCED: RefCell<Vec<std::path::PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    /// A file encoded once and written in more than one place (`parquet_bytes`: the advice a
    /// training night publishes and keeps) is byte for byte the file `write_parquet` writes, so a
    /// night publishing kept bytes equals one that encodes its own frames.
    #[test]
    fn parquet_bytes_are_the_bytes_write_parquet_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let mut df = df!("a" => [Some(1i64), None, Some(3)], "b" => ["x", "=y", ""]).unwrap();
        df.vstack_mut(&df.clone()).unwrap();
        assert!(df.column("a").unwrap().as_materialized_series().n_chunks() > 1);
        write_parquet(&mut df.clone(), &path).unwrap();
        let bytes = parquet_bytes(&path, &mut df).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    /// Regression (8c0ac92): Parquet written outside a run folder (`features`, `score`, the
    /// backtest) lost its fsync when the temp-and-rename copies were merged. The temporary file
    /// must be synced while it still has its temporary name, i.e. before the rename.
    #[test]
    fn regression_parquet_written_outside_a_run_folder_is_synced_before_its_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let mut df = df!("a" => [1i64, 2, 3]).unwrap();
        SYNCED.with(|s| s.borrow_mut().clear());
        let mut set = FileSet::new();
        set.parquet(&mut df, &path).unwrap();
        set.commit().unwrap();
        write_atomic(&dir.path().join("y.json"), b"{}").unwrap();
        let synced = SYNCED.with(|s| s.borrow().clone());
        assert_eq!(synced.len(), 3, "{synced:?}");
        assert!(is_temp_of(&synced[0], &path), "synced after the rename, or not at all: {synced:?}");
        assert_eq!(synced[1], dir.path(), "the rename made durable: {synced:?}");
        assert!(path.is_file());
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    /// A frame written a slice at a time reads back whole, in order, under the BLAKE3 returned,
    /// whether the rows fill the last slice or not; and the file is not synced (its caller
    /// syncs the file system once for many, see `state::write`).
    #[test]
    fn a_frame_written_in_slices_reads_back_whole_under_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let whole =
            df!("a" => (0..10i64).collect::<Vec<_>>(), "b" => (0..10).map(|k| format!("s{k}")).collect::<Vec<_>>())
                .unwrap();
        for (slice_rows, height) in [(3, 10), (5, 10), (20, 10), (4, 0)] {
            let path = dir.path().join(format!("seg-{slice_rows}-{height}.parquet"));
            let mut asked = Vec::new();
            SYNCED.with(|s| s.borrow_mut().clear());
            let hash = write_compact_slices(&path, height, slice_rows, |r| {
                asked.push(r.clone());
                Ok(whole.slice(r.start as i64, r.len()))
            })
            .unwrap();
            let back = read_checked(&path, &hash).unwrap();
            assert!(back.equals(&whole.head(Some(height))), "slices of {slice_rows}, {height} rows: {back}");
            let want: Vec<_> = (0..height.div_ceil(slice_rows).max(1))
                .map(|k| k * slice_rows..(k * slice_rows + slice_rows).min(height))
                .collect();
            assert_eq!(asked, want, "slices of {slice_rows}, {height} rows");
            assert_eq!(SYNCED.with(|s| s.borrow().clone()), Vec::<std::path::PathBuf>::new());
            assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !is_temp_of(&e.unwrap().path(), &path)));
        }
    }

    /// A file set changes nothing until every file is written: the second file's failure
    /// leaves the first as it was and no temporary file behind; a commit replaces both.
    #[test]
    fn a_file_set_replaces_all_its_files_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.json"));
        std::fs::write(&a, b"old a").unwrap();
        std::fs::write(&b, b"old b").unwrap();
        let mut df = df!("x" => [1i64, 2]).unwrap();
        let mut set = FileSet::new();
        set.parquet(&mut df, &a).unwrap();
        // A folder that is not there: the second write fails.
        assert!(set.bytes(&dir.path().join("gone").join("b.json"), b"{}").is_err());
        drop(set);
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "a temporary file left behind");
        let mut set = FileSet::new();
        set.parquet(&mut df, &a).unwrap();
        set.bytes(&b, b"{}").unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"old b", "replaced before the commit");
        set.commit().unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"{}");
        assert!(read_checked_parquet_rows(&a) == 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    fn read_checked_parquet_rows(path: &Path) -> usize {
        ParquetReader::new(File::open(path).unwrap()).finish().unwrap().height()
    }

    /// A temporary sibling of `path`.
    fn is_temp_of(p: &Path, path: &Path) -> bool {
        let name = path.file_name().unwrap().to_string_lossy();
        p.parent() == path.parent() && p.file_name().unwrap().to_string_lossy().starts_with(&format!(".{name}.tmp-"))
    }

    /// Regression: a write that failed after its temporary file was made (a full disk, a rename
    /// refused) left `.NAME.tmp-PID` behind in the folder for good; and two writers with one
    /// process id (two hosts) shared one temporary name.
    #[test]
    fn a_failed_write_leaves_no_temporary_file_and_writers_never_share_one() {
        let dir = tempfile::tempdir().unwrap();
        // A folder in the way: the rename onto it fails after the temporary file is written.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), b"x").unwrap();
        let mut df = df!("a" => [1i64, 2, 3]).unwrap();
        assert!(write_atomic(&blocked, b"{}").is_err());
        assert!(write_renamed(&blocked, b"{}").is_err());
        let mut set = FileSet::new();
        set.parquet(&mut df, &blocked).unwrap();
        assert!(set.commit().is_err());
        assert!(write_compact(&blocked, &mut df).is_err());
        let left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(left, vec!["blocked".to_string()]);
        let (a, b) = (temp_sibling(&blocked), temp_sibling(&blocked));
        assert_ne!(a.path(), b.path());
        assert!(is_temp_of(a.path(), &blocked));
    }

    /// A mapped file is its bytes (across pages, and empty), and a state file changed by one
    /// byte is refused as corrupt, not decoded.
    #[test]
    fn mapped_files_are_their_bytes_and_a_changed_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 4095, 4096, 4097, 3 * 4096 + 17] {
            let path = dir.path().join(format!("f{len}"));
            let bytes: Vec<u8> = (0..len).map(|k| (k * 31 % 251) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(&*Mapped::of(&path).unwrap(), bytes.as_slice(), "{len} bytes");
        }
        assert!(Mapped::of(&dir.path().join("missing")).is_err());

        let path = dir.path().join("seg.parquet");
        let mut df = df!("a" => (0..1000i64).collect::<Vec<_>>()).unwrap();
        let hash = write_compact(&path, &mut df).unwrap();
        assert!(map_checked(&path, &hash).unwrap().equals(&df));
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(map_checked(&path, &hash).unwrap_err(), "is corrupt (its BLAKE3 does not match)");
        assert_eq!(read_checked(&path, &hash).unwrap_err(), "is corrupt (its BLAKE3 does not match)");
    }

    /// A file the file system cannot map is read instead, to the same bytes and frame; a file
    /// that states no length (procfs) is read to its end rather than taken as empty.
    #[test]
    fn files_that_cannot_be_mapped_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.parquet");
        let mut df = df!("a" => (0..5000i64).collect::<Vec<_>>()).unwrap();
        let hash = write_compact(&path, &mut df).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        #[cfg(target_os = "linux")]
        assert!(Mapped::of(&path).unwrap().is_mapped(), "a regular file is mapped");
        let read = Mapped::of_with(&path, |_, _| None).unwrap();
        assert!(!read.is_mapped());
        assert_eq!(&*read, bytes.as_slice());
        assert!(decode_checked(&read, &hash).unwrap().equals(&df));

        #[cfg(target_os = "linux")]
        {
            let status = Path::new("/proc/self/status");
            assert_eq!(std::fs::metadata(status).unwrap().len(), 0, "procfs states no length");
            assert!(Mapped::of(status).unwrap().starts_with(b"Name:"));
        }
    }

    /// A mapping whose pages cannot all be read (here: longer than its file, as a file cut
    /// short after its length was taken) is not used: touching such a page would kill the
    /// process (SIGBUS) where the read path reports an error (and a state file a full refresh).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_mapping_with_pages_that_cannot_be_read_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        std::fs::write(&path, vec![7u8; 100]).unwrap();
        let file = File::open(&path).unwrap();
        assert!(map_file(&file, 100).is_some_and(|m| m.len() == 100 && m.is_mapped()));
        assert!(map_file(&file, 5 * 4096).is_none(), "pages past the file's end were taken as readable");
    }

    /// Files opened through an opened folder come from that folder, even after another folder
    /// took its path (as a night replaces `as_of=DATE`), and only plain names are opened.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_opened_folders_files_come_from_it_after_it_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("as_of=2026-06-20");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("alerts.parquet"), b"first run").unwrap();
        let folder = OpenedFolder::open(&run).unwrap();
        std::fs::rename(&run, root.path().join(".as_of=2026-06-20.old")).unwrap();
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("alerts.parquet"), b"second run").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut folder.file("alerts.parquet").unwrap(), &mut text).unwrap();
        assert_eq!(text, "first run");
        assert_eq!(folder.path("alerts.parquet"), run.join("alerts.parquet"));
        // A file the replaced folder no longer holds is not found, not taken from the new one.
        std::fs::write(run.join("seller_advice.parquet"), b"second run").unwrap();
        assert_eq!(folder.file("seller_advice.parquet").unwrap_err().kind(), std::io::ErrorKind::NotFound);
        for bad in ["../as_of=2026-06-20/alerts.parquet", "x/y", "..", ".", "", "a\0b"] {
            assert!(folder.file(bad).is_err(), "{bad:?} was opened");
        }
    }

    /// The files of a folder created by name alone: written where asked, never outside the
    /// folder, and never over a file already there (a seller file named twice is an error, not
    /// one seller's alerts under another's name).
    #[test]
    fn new_files_stay_in_their_folder_and_never_replace_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sellers");
        std::fs::create_dir(&dir).unwrap();
        let folder = NewFiles::open(&dir).unwrap();
        folder.write("a.csv", b"one").unwrap();
        assert_eq!(std::fs::read(dir.join("a.csv")).unwrap(), b"one");
        assert!(folder.write("a.csv", b"two").is_err(), "a second file of one name");
        assert_eq!(std::fs::read(dir.join("a.csv")).unwrap(), b"one", "the first file was replaced");
        for bad in ["../escaped.csv", "x/y.csv", "..", ".", "", "a\0b"] {
            assert!(folder.write(bad, b"x").is_err(), "{bad:?} was written");
        }
        assert!(!root.path().join("escaped.csv").exists());
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names, ["a.csv"]);
    }
}
