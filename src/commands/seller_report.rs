//! `lanewatch report --seller ID`: one seller's page from a finished run folder, written
//! beside the runs (`OUT/seller_pages/as_of=DATE/<file>.html`), never into the run folder,
//! which stays as its night committed it.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::io;
use crate::output::{run_dir_name, sellers::seller_file_stem};
use crate::report;

/// Reads the run for `as_of` in `out`, writes the page for `seller_id` and returns its path.
pub fn seller_report(out: &Path, as_of: NaiveDate, seller_id: &str) -> Result<PathBuf> {
    let run = out.join(run_dir_name(as_of));
    let (folder, alerts_file, advice_file) = open_run(&run, &|| {})?;
    let read = |name: &str, f: std::fs::File, columns: &[&[&str]]| -> Result<DataFrame> {
        let shown = folder.path(name).display().to_string();
        let df = ParquetReader::new(f).finish().map_err(|e| {
            Error::bad_file(
                shown.clone(),
                format!("not a readable Parquet file: {}", crate::error::one_line(e.to_string())),
            )
        })?;
        if df.column("seller_id").ok().and_then(|c| c.str().ok()).is_none() {
            return Err(Error::bad_file(shown, "no text column seller_id"));
        }
        if let Some(c) = columns.iter().flat_map(|c| c.iter()).find(|c| df.column(c).is_err()) {
            return Err(Error::bad_file(shown, format!("no column {c}: not a run folder of this lanewatch")));
        }
        Ok(df)
    };
    let of_seller = |df: DataFrame| -> Result<DataFrame> {
        let mask = df.column("seller_id")?.str()?.equal(seller_id);
        Ok(df.filter(&mask)?)
    };
    use crate::schema::outputs::{ALERT_EXTRA, SCORES, SELLER_ADVICE};
    let alerts = of_seller(read("alerts.parquet", alerts_file, &[SCORES, ALERT_EXTRA])?)?;
    let lanes = of_seller(read("seller_advice.parquet", advice_file, &[SELLER_ADVICE])?)?;
    if alerts.height() == 0 && lanes.height() == 0 {
        return Err(Error::Data {
            file: run.join("seller_advice.parquet").display().to_string(),
            column: "seller_id".into(),
            message: format!("no seller {:?} in the run of {as_of}", crate::error::printable(seller_id)),
        });
    }
    // Every column is there, so what fails now is a column of another type: bad data too.
    let html = report::seller_page(seller_id, as_of, &alerts, &lanes).map_err(|e| match e {
        Error::Internal(why) => Error::bad_file(
            run.display().to_string(),
            format!("alerts.parquet or seller_advice.parquet holds a column of another type: {why}"),
        ),
        other => other,
    })?;
    let dir = out.join("seller_pages").join(run_dir_name(as_of));
    io::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.html", seller_file_stem(seller_id)));
    io::write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// The run folder `run` opened once, and its `alerts.parquet` and `seller_advice.parquet`
/// opened through it, before either is read: on Linux a night that replaces the folder
/// meanwhile leaves this one whole (`io::OpenedFolder`), so the page never shows the alerts of
/// one run beside the advice of another. The replaced folder is removed once the new one is in
/// place: a file gone from it is looked for once more, in the folder that replaced it.
/// `between` runs after the folder is opened and before its files are (a test replaces the
/// folder there).
fn open_run(run: &Path, between: &dyn Fn()) -> Result<(io::OpenedFolder, std::fs::File, std::fs::File)> {
    let opened = || -> Result<(io::OpenedFolder, std::fs::File, std::fs::File)> {
        let missing = || Error::MissingInput { path: run.to_path_buf() };
        let folder = io::OpenedFolder::open(run).map_err(|_| missing())?;
        between();
        if !folder.file("_SUCCESS").is_ok_and(|f| f.metadata().is_ok_and(|m| m.is_file())) {
            return Err(missing());
        }
        // A file gone is missing input (66); one that cannot be read or lacks a column the page
        // reads (a run folder of an older lanewatch) is bad data (65), not an internal error.
        let open = |name: &str| -> Result<std::fs::File> {
            folder.file(name).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::MissingInput { path: folder.path(name) },
                _ => Error::bad_file(folder.path(name).display().to_string(), format!("cannot read: {e}")),
            })
        };
        let (alerts, advice) = (open("alerts.parquet")?, open("seller_advice.parquet")?);
        Ok((folder, alerts, advice))
    };
    match opened() {
        Err(Error::MissingInput { .. }) => opened(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A run folder at `run` whose two files hold `text` and a marker of which file they are.
    fn run_folder(run: &Path, text: &str) {
        std::fs::create_dir_all(run).unwrap();
        std::fs::write(run.join("_SUCCESS"), b"").unwrap();
        std::fs::write(run.join("alerts.parquet"), format!("alerts of {text}")).unwrap();
        std::fs::write(run.join("seller_advice.parquet"), format!("advice of {text}")).unwrap();
    }

    fn text(mut f: std::fs::File) -> String {
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    /// A night that replaces the run folder after it is opened, and removes the folder it
    /// replaced, as a night's commit does: both files come from the folder that replaced it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_run_folder_replaced_while_it_is_opened_is_read_from_its_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("as_of=2026-06-20");
        run_folder(&run, "the first night");
        let replaced = std::cell::Cell::new(false);
        let night = || {
            if !replaced.replace(true) {
                let aside = dir.path().join("aside");
                std::fs::rename(&run, &aside).unwrap();
                run_folder(&run, "the rerun");
                std::fs::remove_dir_all(&aside).unwrap();
            }
        };
        let (_, alerts, advice) = open_run(&run, &night).unwrap();
        assert_eq!((text(alerts), text(advice)), ("alerts of the rerun".into(), "advice of the rerun".into()));
        // Removed and not replaced: missing, after the one look more.
        let gone = || {
            let _ = std::fs::remove_dir_all(&run);
        };
        assert!(matches!(open_run(&run, &gone), Err(Error::MissingInput { .. })));
    }
}
