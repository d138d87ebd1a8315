//! `sellers/index.csv` and one CSV per seller with alerts. Seller ids are untrusted: they reach
//! file names (made safe by `seller_file_stem`) and CSV cells (neutralised by `csv_cell`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;

use super::csv::{csv_cell, csv_line};
use crate::alerts::Severity;
use crate::calendar;
use crate::error::Result;
use crate::io;
use crate::schema::outputs::{SELLER_CSV, SELLER_INDEX};

/// A file name for a seller id: safe characters kept, the rest replaced, a short hash of the
/// raw id appended so different ids never share a name. Never empty, never starting with `-`
/// (an option to shell tools) or `.` (hidden, or `..`), no separators or control characters,
/// at most ~100 bytes.
pub fn seller_file_stem(seller_id: &str) -> String {
    let mut stem: String = seller_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(64)
        .collect();
    stem = stem.trim_matches(['_', '-']).to_string();
    if stem.is_empty() {
        stem = "seller".into();
    }
    // 128 bits: ids that keep the same letters (`shop_-` and `shop-_`) cannot be searched for
    // one name, as 40 bits could be; seller pages, written by name, would replace each other.
    let h = blake3::hash(seller_id.as_bytes()).to_hex();
    format!("{stem}-{}", &h[..32])
}

/// Assigns each seller id a unique file name (`<stem>.csv`), resolving any collision, letter
/// case aside (`Shop-….csv` and `shop-….csv` are one file where case does not count).
pub fn seller_files<'a>(ids: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut used: HashSet<String> = HashSet::new();
    let mut out = BTreeMap::new();
    let mut sorted: Vec<&str> = ids.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    for id in sorted {
        let stem = seller_file_stem(id);
        let mut name = format!("{stem}.csv");
        let mut k = 2;
        while used.contains(&name.to_ascii_lowercase()) {
            name = format!("{stem}-{k}.csv");
            k += 1;
        }
        used.insert(name.to_ascii_lowercase());
        out.insert(id.to_string(), name);
    }
    out
}

fn ts_text(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// Writes `sellers/index.csv` and one CSV per seller with alerts into `dir`, from the night's
/// alerts frame (`alerts.parquet`'s rows). Returns the number of
/// sellers. Each seller's rows are listed most severe first, then riskiest.
pub fn write_sellers(dir: &Path, frame: &DataFrame, suppressed: &HashMap<String, u64>) -> Result<u64> {
    io::create_dir_all(dir)?;
    // Most severe first: a severity's place in `Severity::ALL`.
    let severity: Vec<usize> = frame
        .column("severity")?
        .str()?
        .iter()
        .map(|v| Severity::ALL.iter().position(|s| Some(s.name()) == v).unwrap_or(Severity::ALL.len()))
        .collect();
    let sellers = frame.column("seller_id")?.str()?;
    let mut ids: Vec<&str> = sellers.iter().map(|s| s.unwrap_or("")).collect();
    ids.extend(suppressed.keys().map(String::as_str));
    let files = seller_files(ids.iter().copied());
    let header = csv_line(&SELLER_CSV.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    let mut rows_by_seller: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (r, s) in sellers.iter().enumerate() {
        rows_by_seller.entry(s.unwrap_or("")).or_default().push(r);
    }
    let text: Vec<Vec<String>> = SELLER_CSV
        .iter()
        .map(|c| -> Result<Vec<String>> {
            let s = frame.column(c)?.as_materialized_series();
            let s = match s.dtype() {
                DataType::Datetime(_, _) => {
                    s.cast(&DataType::Int64)?.i64()?.iter().map(|v| v.map(ts_text).unwrap_or_default()).collect()
                }
                DataType::Date => s
                    .to_physical_repr()
                    .cast(&DataType::Int32)?
                    .i32()?
                    .iter()
                    .map(|v| v.map(|d| calendar::date_of_day(d as i64).to_string()).unwrap_or_default())
                    .collect(),
                DataType::Float64 => {
                    s.f64()?.iter().map(|v| v.map(|x| format!("{x:.4}")).unwrap_or_default()).collect()
                }
                _ => s.cast(&DataType::String)?.str()?.iter().map(|v| csv_cell(v.unwrap_or(""))).collect(),
            };
            Ok(s)
        })
        .collect::<Result<_>>()?;
    let mut index = csv_line(&SELLER_INDEX.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    // Bodies are built in parallel but files created one at a time: parallel creates in one
    // directory contend on its lock and were ten times slower than a single thread.
    let risk = frame.column("risk")?.f64()?;
    let risk: Vec<f64> = risk.iter().map(|v| v.unwrap_or(0.0)).collect();
    let entries: Vec<(&String, &String)> = files.iter().collect();
    let bodies: Vec<(usize, String)> = entries
        .par_iter()
        .map(|(id, _)| {
            let mut rows = rows_by_seller.get(id.as_str()).cloned().unwrap_or_default();
            rows.sort_by(|&a, &b| severity[a].cmp(&severity[b]).then(risk[b].total_cmp(&risk[a])).then(a.cmp(&b)));
            let mut body = header.clone();
            for r in &rows {
                body.push_str(&csv_line(&text.iter().map(|c| c[*r].clone()).collect::<Vec<_>>()));
            }
            (rows.len(), body)
        })
        .collect();
    let folder = io::NewFiles::open(dir)?;
    for ((id, file), (n, body)) in entries.iter().zip(&bodies) {
        // seller_files only yields plain names, but a name must never leave sellers/ (`write`
        // refuses one that would) nor replace another seller's file (nor does it).
        folder.write(file, body.as_bytes())?;
        index.push_str(&csv_line(&[
            csv_cell(id),
            csv_cell(file),
            n.to_string(),
            suppressed.get(*id).copied().unwrap_or(0).to_string(),
        ]));
    }
    folder.write("index.csv", index.as_bytes())?;
    Ok(files.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_seller_ids_give_safe_distinct_names() {
        let ids = [
            "../../etc",
            "a/b",
            "",
            "a_b",
            "a\u{0}b",
            "a\nb",
            "..",
            ".",
            "Ünïcødé 販売者",
            &"x".repeat(10_000),
            "-2+3",
            "--help",
            "-",
            "_-_x",
            ".hidden",
            "=cmd|' /C calc'!A0",
            "Shop",
            "shop",
            "shop_-",
            "shop-_",
        ];
        let files = seller_files(ids.iter().copied());
        let names: HashSet<&String> = files.values().collect();
        assert_eq!(names.len(), ids.len(), "{files:?}");
        // Distinct where letter case does not count, too.
        let folded: HashSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        assert_eq!(folded.len(), ids.len(), "{files:?}");
        // 32 hex digits of the id's hash end every name.
        for (id, n) in &files {
            let h = blake3::hash(id.as_bytes()).to_hex();
            assert!(n.ends_with(&format!("-{}.csv", &h[..32])), "{n}");
        }
        for n in names {
            assert!(!n.contains('/') && !n.contains('\\') && !n.contains(".."), "{n}");
            assert!(!n.starts_with('.') && !n.starts_with('-'), "{n}");
            // A file name never needs neutralising as a CSV cell.
            assert_eq!(csv_cell(n), *n, "{n}");
            assert!(n.chars().all(|c| !c.is_control()), "{n:?}");
            assert!(n.len() < 120, "{n}");
            assert!(n.ends_with(".csv"));
        }
    }
}
