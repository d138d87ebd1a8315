//! The run folder: an exclusive lock on the output folder, a hidden staging folder beside the
//! target, `_SUCCESS` last, then one atomic rename (an atomic exchange when replacing a run);
//! and the previous complete run, whose alerts tonight continues from.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::alerts::Previous;
use crate::error::{Error, Result};

pub const LOCK_FILE: &str = ".lanewatch.lock";
/// The run folder's file of the alerts the per-seller cap cut (`alerts::capped_frame`).
pub const CAPPED_FILE: &str = "capped_alerts.parquet";
/// The backtest's own lock: a backtest takes minutes and writes only `backtest.*`, so it does
/// not hold back a nightly run on the same folder, but two backtests there would interleave
/// their three files' renames.
pub const BACKTEST_LOCK_FILE: &str = ".lanewatch-backtest.lock";

pub fn run_dir_name(as_of: NaiveDate) -> String {
    format!("as_of={as_of}")
}

/// Holds the output folder's lock for as long as it lives.
pub struct OutputLock {
    file: File,
    pub path: PathBuf,
}

impl OutputLock {
    /// Takes the lock without waiting; a held lock is `Error::Locked` naming the holder.
    pub fn acquire(out: &Path, started: &str) -> Result<OutputLock> {
        OutputLock::acquire_file(out, LOCK_FILE, started)
    }

    /// `acquire` of the lock file `name` in `out` (`LOCK_FILE`, `BACKTEST_LOCK_FILE`).
    pub fn acquire_file(out: &Path, name: &str, started: &str) -> Result<OutputLock> {
        std::fs::create_dir_all(out).map_err(|e| Error::output(out, e))?;
        let path = out.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::output(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = crate::error::one_line(holder);
                let holder = if holder.is_empty() { "holder unknown".to_string() } else { holder };
                return Err(Error::Locked { path: out.to_path_buf(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::output(&path, e)),
        }
        // The holder's identity is informational; the kernel lock is what excludes.
        let info = format!("pid {} started {started}", std::process::id());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(info.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::output(&path, e))?;
        Ok(OutputLock { file, path })
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// A staging folder that becomes `OUT/as_of=…` on `commit`, or disappears if dropped.
///
/// Replacing an earlier output of the same night is atomic: readers see the old folder or the
/// new one, never neither and never a mix. With `renameat2(RENAME_EXCHANGE)` (Linux on ext4,
/// xfs, btrfs, tmpfs, …) the two folders are swapped in one step. Where the file system has no
/// such exchange, `as_of=DATE` is a symbolic link to a hidden version folder
/// (`.as_of=DATE.v-…`), and a new version is published by renaming a new link over the old
/// one, which is atomic on every POSIX file system.
pub struct Staging {
    pub dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    /// Call with the lock held. First repairs what a crashed run may have left: a night whose
    /// folder was moved aside by an interrupted migration is put back; stale staging folders,
    /// links and unreferenced versions are removed.
    pub fn new(out: &Path, as_of: NaiveDate, _lock: &OutputLock) -> Result<Staging> {
        let name = run_dir_name(as_of);
        recover(out);
        let dir = out.join(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::output(&dir, e))?;
        Ok(Staging { dir, target: out.join(name), committed: false })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `_SUCCESS`, syncs, and publishes the folder as `as_of=DATE`.
    pub fn commit(mut self) -> Result<PathBuf> {
        crate::fault::point("commit:begin");
        // Every file reaches the disk before `_SUCCESS` does, and both before the rename.
        crate::io::sync_filesystem(&self.dir)?;
        crate::io::write_file(&self.dir.join("_SUCCESS"), b"")?;
        crate::io::sync_filesystem(&self.dir)?;
        crate::fault::point("commit:success");
        let parent = self.target.parent().map(Path::to_path_buf).unwrap_or_default();
        let exchange_ok = !crate::fault::flag("no_exchange");
        let existing = std::fs::symlink_metadata(&self.target).ok();
        match existing {
            None if exchange_ok => {
                std::fs::rename(&self.dir, &self.target).map_err(|e| Error::output(&self.target, e))?;
            }
            Some(_) if exchange_ok && exchange(&self.dir, &self.target).is_ok() => {
                crate::fault::point("commit:swapped");
                // The previous run now sits at the staging path (a folder, or a link to a
                // version folder) and is removed, once the exchange is durable: removals that
                // reach the disk before it would leave a crash with an emptied `as_of=DATE`.
                crate::io::sync_dir(&parent)?;
                remove_version(&self.dir);
            }
            _ => self.publish_as_link(&parent)?,
        }
        crate::io::sync_dir(&parent)?;
        self.committed = true;
        Ok(self.target.clone())
    }

    /// The fallback without an atomic exchange: the staging folder becomes a hidden version
    /// folder and `as_of=DATE` a link to it, replaced by one rename.
    fn publish_as_link(&self, parent: &Path) -> Result<()> {
        let name = self.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let version_name = format!(".{name}.v-{}-{stamp}", std::process::id());
        let version = parent.join(&version_name);
        std::fs::rename(&self.dir, &version).map_err(|e| Error::output(&version, e))?;
        let link = parent.join(format!(".{name}.link-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        symlink(Path::new(&version_name), &link).map_err(|e| Error::output(&link, e))?;
        let previous = match std::fs::symlink_metadata(&self.target) {
            Ok(m) if m.file_type().is_symlink() => Some(self.target.clone()),
            Ok(_) => {
                // A real folder from a run that could exchange (the output moved to another
                // file system since): a link cannot replace a folder in one step, so the folder
                // is moved aside first. Until the rename below, the night has no folder; a crash
                // here is repaired by the next run's `recover`.
                let aside = parent.join(format!(".{name}.v-aside-{}", std::process::id()));
                std::fs::rename(&self.target, &aside).map_err(|e| Error::output(&self.target, e))?;
                Some(aside)
            }
            Err(_) => None,
        };
        // Until the link takes the night's name, a folder moved aside goes back if this fails
        // (an error or a panic): the earlier output stays, not only after the next run's
        // `recover`.
        let restore = previous
            .as_ref()
            .filter(|p| **p != self.target)
            .map(|aside| PutBack { from: aside.clone(), to: self.target.clone() });
        if restore.is_some() {
            crate::fault::point("commit:migrate");
        }
        let old_version = previous.as_ref().and_then(|p| version_of(parent, p));
        std::fs::rename(&link, &self.target).map_err(|e| Error::output(&self.target, e))?;
        std::mem::forget(restore);
        crate::fault::point("commit:swapped");
        // The link's rename is durable before the version it replaced is removed.
        crate::io::sync_dir(parent)?;
        if let Some(old) = old_version.filter(|o| *o != version) {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(())
    }
}

/// Renames `from` back to `to` when dropped (forgotten once the step it guards succeeded).
struct PutBack {
    from: PathBuf,
    to: PathBuf,
}

impl Drop for PutBack {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.from, &self.to);
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The version folder behind `path`: the link's target, or the folder itself.
fn version_of(parent: &Path, path: &Path) -> Option<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::read_link(path).ok().map(|t| parent.join(t)),
        Ok(_) => Some(path.to_path_buf()),
        Err(_) => None,
    }
}

/// Removes an old run: a folder, or a link and the version folder it points to.
fn remove_version(path: &Path) {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Some(v) = version_of(&parent, path).filter(|v| v != path) {
        let _ = std::fs::remove_dir_all(v);
        let _ = std::fs::remove_file(path);
    } else {
        let _ = std::fs::remove_dir_all(path);
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no symbolic links"))
}

/// Repairs an output folder after a crash (call with the lock held): a night moved aside by an
/// interrupted migration (`.as_of=D.v-aside-…` with no `as_of=D`) is put back; staging folders,
/// temporary links and version folders no `as_of=` link points to are removed.
pub fn recover(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else { return };
    let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let mut referenced = std::collections::HashSet::new();
    for n in names.iter().filter(|n| n.starts_with("as_of=")) {
        if let Ok(t) = std::fs::read_link(out.join(n)) {
            referenced.insert(t.to_string_lossy().into_owned());
        }
    }
    for n in &names {
        let Some(rest) = n.strip_prefix('.').filter(|r| r.starts_with("as_of=")) else { continue };
        let night = rest.split(".v-").next().unwrap_or(rest);
        let night_present = std::fs::symlink_metadata(out.join(night)).is_ok();
        if n.contains(".v-aside-") && !night_present && out.join(n).join("_SUCCESS").is_file() {
            let _ = std::fs::rename(out.join(n), out.join(night));
            continue;
        }
        let stale = n.contains(".tmp-")
            || n.contains(".old-")
            || n.contains(".link-")
            || (n.contains(".v-") && !referenced.contains(n.as_str()));
        if stale {
            let p = out.join(n);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    let _ = std::fs::remove_file(&p);
                }
                _ => {
                    let _ = std::fs::remove_dir_all(&p);
                }
            }
        }
    }
}

/// Atomically swaps two paths (Linux renameat2 RENAME_EXCHANGE).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let ca = CString::new(a.as_os_str().as_bytes())?;
        let cb = CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no atomic exchange"))
    }
}

/// Every complete run (a `_SUCCESS` marker) in `out`, oldest first.
pub fn complete_runs(out: &Path) -> Vec<(NaiveDate, PathBuf)> {
    let Ok(dir) = std::fs::read_dir(out) else {
        return Vec::new();
    };
    let mut runs: Vec<(NaiveDate, PathBuf)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let d = NaiveDate::parse_from_str(name.to_str()?.strip_prefix("as_of=")?, "%Y-%m-%d").ok()?;
            e.path().join("_SUCCESS").is_file().then(|| (d, e.path()))
        })
        .collect();
    runs.sort();
    runs
}

/// The newest complete run strictly before `as_of` in `out`.
pub fn previous_run(out: &Path, as_of: NaiveDate) -> Option<(NaiveDate, PathBuf)> {
    complete_runs(out).into_iter().rev().find(|r| r.0 < as_of)
}

/// The alerts of the newest complete run before `as_of` in `out`, if any, and a warning when
/// that run's alerts could not be read (alerts then start fresh rather than failing the night).
pub fn previous_alerts(out: &Path, as_of: NaiveDate) -> (Previous, Option<String>) {
    let Some((date, dir)) = previous_run(out, as_of) else {
        return (Previous::default(), None);
    };
    let read = || -> Result<(Previous, Option<String>)> {
        use polars::prelude::*;
        let frame = |name: &str| -> Result<DataFrame> {
            let path = dir.join(name);
            let file =
                std::fs::File::open(&path).map_err(|e| Error::bad_file(path.display().to_string(), e.to_string()))?;
            let columns = crate::schema::outputs::ALERT_MEMORY.iter().map(|&c| c.into()).collect();
            // A damaged file is the previous run's data, not a fault of this one.
            ParquetReader::new(file)
                .with_columns(Some(columns))
                .finish()
                .map_err(|e| Error::bad_file(path.display().to_string(), e.to_string()))
        };
        let prev = Previous::from_alerts(&frame("alerts.parquet")?, date)?;
        // The alerts the cap cut, which a run of an earlier lanewatch did not write. Unreadable,
        // they cost only their own memory, not the listed alerts'.
        if !dir.join(CAPPED_FILE).exists() {
            return Ok((prev, None));
        }
        match frame(CAPPED_FILE).and_then(|df| prev.clone().with_capped(&df)) {
            Ok(with) => Ok((with, None)),
            Err(e) => Ok((
                prev,
                Some(format!(
                    "previous run {}: {CAPPED_FILE} unreadable, alerts the cap cut start fresh: {e}",
                    dir.display()
                )),
            )),
        }
    };
    match read() {
        Ok(p) => p,
        Err(e) => {
            (Previous::default(), Some(format!("previous run {} unreadable, alerts start fresh: {e}", dir.display())))
        }
    }
}
