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
        std::fs::create_dir_all(out).map_err(|e| Error::output(out, e))?;
        let path = out.join(LOCK_FILE);
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
pub struct Staging {
    pub dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    /// Call with the lock held. Stale staging folders of crashed runs are removed first.
    pub fn new(out: &Path, as_of: NaiveDate, _lock: &OutputLock) -> Result<Staging> {
        let name = run_dir_name(as_of);
        if let Ok(entries) = std::fs::read_dir(out) {
            for e in entries.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with(".as_of=") && (n.contains(".tmp-") || n.contains(".old-")) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = out.join(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::output(&dir, e))?;
        Ok(Staging { dir, target: out.join(name), committed: false })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `_SUCCESS`, syncs, and moves the folder into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        // Every file reaches the disk before `_SUCCESS` does, and both before the rename.
        crate::io::sync_filesystem(&self.dir)?;
        crate::io::write_file(&self.dir.join("_SUCCESS"), b"")?;
        crate::io::sync_filesystem(&self.dir)?;
        let parent = self.target.parent().map(Path::to_path_buf).unwrap_or_default();
        if self.target.exists() {
            if exchange(&self.dir, &self.target).is_ok() {
                // The previous run now sits at the staging path and is removed.
                let _ = std::fs::remove_dir_all(&self.dir);
            } else {
                // No atomic exchange here: move the old run aside first. A crash between the
                // renames leaves no `as_of=` folder at all, never a partial one.
                let old = parent.join(format!(
                    ".{}.old-{}",
                    self.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    std::process::id()
                ));
                std::fs::rename(&self.target, &old).map_err(|e| Error::output(&self.target, e))?;
                std::fs::rename(&self.dir, &self.target).map_err(|e| Error::output(&self.target, e))?;
                let _ = std::fs::remove_dir_all(&old);
            }
        } else {
            std::fs::rename(&self.dir, &self.target).map_err(|e| Error::output(&self.target, e))?;
        }
        sync_dir(&parent)?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::output(dir, e))
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

/// The newest complete run strictly before `as_of` in `out`.
pub fn previous_run(out: &Path, as_of: NaiveDate) -> Option<(NaiveDate, PathBuf)> {
    let mut best: Option<(NaiveDate, PathBuf)> = None;
    for e in std::fs::read_dir(out).ok()?.flatten() {
        let name = e.file_name();
        let Some(date) = name.to_str().and_then(|n| n.strip_prefix("as_of=")) else {
            continue;
        };
        let Ok(d) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
            continue;
        };
        if d < as_of && e.path().join("_SUCCESS").is_file() && best.as_ref().is_none_or(|b| d > b.0) {
            best = Some((d, e.path()));
        }
    }
    best
}

/// The alerts of the newest complete run before `as_of` in `out`, if any, and a warning when
/// that run's alerts could not be read (alerts then start fresh rather than failing the night).
pub fn previous_alerts(out: &Path, as_of: NaiveDate) -> (Previous, Option<String>) {
    let Some((date, dir)) = previous_run(out, as_of) else {
        return (Previous::default(), None);
    };
    let path = dir.join("alerts.parquet");
    let read = || -> Result<Previous> {
        use polars::prelude::*;
        let file =
            std::fs::File::open(&path).map_err(|e| Error::bad_file(path.display().to_string(), e.to_string()))?;
        let df = ParquetReader::new(file)
            .with_columns(Some(vec![
                "shipment_id".into(),
                "seller_id".into(),
                "alert".into(),
                "severity".into(),
                "first_alerted_on".into(),
            ]))
            .finish()?;
        Previous::from_alerts(&df, date)
    };
    match read() {
        Ok(p) => (p, None),
        Err(e) => {
            (Previous::default(), Some(format!("previous run {} unreadable, alerts start fresh: {e}", dir.display())))
        }
    }
}
