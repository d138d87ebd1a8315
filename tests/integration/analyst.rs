//! The analyst kit: the HTML report in a real browser, and the notebooks executed headless.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::tools::{require_chromium, require_python};

/// Loads `page` in headless Chromium; returns the DOM after load and the browser's log.
fn load(browser: &Path, page: &Path) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Each `<figure data-plot=…>` in the DOM with the number of SVG shapes it holds.
fn plots(dom: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find("<figure data-plot=\"") {
        rest = &rest[i + 19..];
        let name = rest[..rest.find('"').unwrap()].to_string();
        let end = rest.find("</figure>").unwrap();
        let body = &rest[..end];
        let svg = body.find("<svg").map(|s| &body[s..]).unwrap_or("");
        let shapes =
            ["<rect", "<path", "<polyline", "<circle", "<line", "<text"].iter().map(|t| svg.matches(t).count()).sum();
        out.push((name, shapes));
        rest = &rest[end..];
    }
    out
}

fn assert_clean_log(log: &str, what: &str) {
    // The report has no scripts: any console output at all is an error on the page.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "{what}: console messages: {console:?}");
}

#[test]
fn report_opens_in_chromium_with_every_plot() {
    let Some(browser) = require_chromium() else { return };
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch(&[
        "run",
        "--config",
        repo().join("pipelines/sample.toml").to_str().unwrap(),
        "--input",
        sample_data().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    let night = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("as_of="))
        .unwrap();
    let page = night.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for fetch in ["src=\"http", "href=\"http", "url(http", "@import", "<script", "<link"] {
        assert!(!html.contains(fetch), "the report must be offline and script-free: found {fetch}");
    }
    let (dom, log) = load(&browser, &page);
    assert_clean_log(&log, "report.html");
    let found = plots(&dom);
    for want in [
        "alerts_by_kind",
        "top_sellers",
        "risk_distribution",
        "reliability",
        "pr_curve",
        "disrupted_lanes",
        "lane_heatmap",
    ] {
        let p = found.iter().find(|(n, _)| n == want).unwrap_or_else(|| panic!("plot {want} missing; found {found:?}"));
        assert!(p.1 > 10, "plot {want} is empty ({} shapes)", p.1);
    }
    // The sample night has disrupted lanes, so their chart shows bars, not "no data".
    let disrupted = &dom[dom.find("data-plot=\"disrupted_lanes\"").unwrap()..];
    assert!(!disrupted[..disrupted.find("</figure>").unwrap()].contains("no disrupted lanes"));
    assert!(dom.contains("Run summary"));
    // One night alone: the trends say there are no earlier runs instead of drawing empty charts.
    assert!(dom.contains("data-note=\"no-earlier-runs\""), "no 'no earlier runs' note");
    assert!(!found.iter().any(|(n, _)| n.starts_with("trend_")), "trend charts drawn for a single night");
    assert!(["logistic (chosen)", "forest (chosen)", "tree (chosen)", "gbdt (chosen)"].iter().any(|m| dom.contains(m)));

    // The backtest report too.
    let bt = tempfile::tempdir().unwrap();
    let o = lanewatch_fast(
        "backtest",
        small_input(),
        bt.path(),
        &["--from", "2026-09-01", "--to", "2026-09-20", "--every", "5"],
    );
    expect_code(&o, 0);
    let (dom, log) = load(&browser, &bt.path().join("backtest.html"));
    assert_clean_log(&log, "backtest.html");
    let found = plots(&dom);
    assert!(found.iter().any(|(n, s)| n == "alerts_per_night" && *s > 10), "{found:?}");
}

/// Measures the report as Chromium lays it out: a copy of the page with a script appended that
/// writes, for every figure, its row labels' and rows' vertical centres, its bars' drawn sizes,
/// its tick texts and its group labels, as JSON into the DOM.
fn measure(browser: &Path, page: &Path) -> serde_json::Value {
    const SCRIPT: &str = r#"<script>
const out = [];
for (const fig of document.querySelectorAll('figure[data-plot]')) {
  const f = {name: fig.dataset.plot, rows: [], bars: [], ticks: [], groups: [], points: []};
  const mid = r => (r.top + r.bottom) / 2;
  for (const lab of fig.querySelectorAll('text.row-label')) {
    const marks = [...fig.querySelectorAll('rect[data-row="' + lab.dataset.row + '"]')].map(e => e.getBoundingClientRect());
    if (!marks.length) continue;
    const top = Math.min(...marks.map(m => m.top)), bottom = Math.max(...marks.map(m => m.bottom));
    f.rows.push({label: lab.textContent, row: +lab.dataset.row, label_y: mid(lab.getBoundingClientRect()), row_y: (top + bottom) / 2});
  }
  for (const b of fig.querySelectorAll('rect.bar')) {
    const r = b.getBoundingClientRect();
    f.bars.push({row: b.dataset.row === undefined ? null : +b.dataset.row, group: b.dataset.group === undefined ? null : +b.dataset.group,
                 series: b.dataset.series || null, width: r.width, height: r.height});
  }
  for (const t of fig.querySelectorAll('text.tick')) f.ticks.push({axis: t.dataset.axis, text: t.textContent});
  for (const g of fig.querySelectorAll('text.group-label')) f.groups.push(g.textContent);
  for (const p of fig.querySelectorAll('circle.point[data-x]')) f.points.push({series: p.dataset.series, x: p.dataset.x, missing: p.classList.contains('missing')});
  out.push(f);
}
const pre = document.createElement('pre');
pre.id = 'measured';
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"#;
    let html = std::fs::read_to_string(page).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("measured.html");
    std::fs::write(&copy, html.replace("</body>", &format!("{SCRIPT}</body>"))).unwrap();
    let (dom, log) = load(browser, &copy);
    assert_clean_log(&log, "measured report");
    let tag = "<pre id=\"measured\">";
    let start = dom.find(tag).expect("the measuring script did not run") + tag.len();
    let json = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let json = json.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    serde_json::from_str(&json).unwrap()
}

fn figure_named<'a>(m: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    m.as_array().unwrap().iter().filter(|f| f["name"] == name).collect()
}

/// The report's charts show their data right, as drawn by Chromium: one bar per listed seller
/// proportional to its alerts (counted from alerts.parquet), a label for every alert kind
/// present, whole-number ticks on count axes, row labels level with their rows, and trends of
/// five nights after five nights.
#[test]
fn report_charts_draw_their_data_in_chromium() {
    let Some(browser) = require_chromium() else { return };
    let out = tempfile::tempdir().unwrap();
    let nights = ["2026-11-10", "2026-11-11", "2026-11-12", "2026-11-13", "2026-11-14"];
    for d in nights {
        expect_code(&lanewatch_fast("run", &sample_data(), out.path(), &["--as-of", d]), 0);
    }
    let run = out.path().join("as_of=2026-11-14");
    let m = measure(&browser, &run.join("report.html"));
    let alerts = read_parquet(&run.join("alerts.parquet"));
    let sellers = alerts.column("seller_id").unwrap().str().unwrap();
    let kinds = alerts.column("alert").unwrap().str().unwrap();
    let sev = alerts.column("severity").unwrap().str().unwrap();
    let mut per_seller: std::collections::BTreeMap<String, f64> = Default::default();
    let mut per_kind: std::collections::BTreeMap<(String, String), f64> = Default::default();
    for k in 0..alerts.height() {
        *per_seller.entry(sellers.get(k).unwrap().to_string()).or_default() += 1.0;
        *per_kind.entry((kinds.get(k).unwrap().to_string(), sev.get(k).unwrap().to_string())).or_default() += 1.0;
    }

    // Sellers: one bar per listed seller, the top sellers by count, widths proportional.
    let top = figure_named(&m, "top_sellers")[0];
    let rows = top["rows"].as_array().unwrap();
    let bars = top["bars"].as_array().unwrap();
    assert!(rows.len() >= 5, "only {} sellers listed", rows.len());
    assert_eq!(bars.len(), rows.len(), "one bar per listed seller");
    let max_other = per_seller.values().copied().fold(0.0, f64::max);
    let mut scale = None;
    for (r, b) in rows.iter().zip(bars) {
        let seller = r["label"].as_str().unwrap();
        let count = per_seller[seller];
        let ratio = b["width"].as_f64().unwrap() / count;
        let s = *scale.get_or_insert(ratio);
        assert!((ratio - s).abs() < 0.01 * s, "{seller}: bar {} px for {count} alerts (scale {s})", b["width"]);
        assert_eq!(b["row"], r["row"]);
    }
    let first = rows[0]["label"].as_str().unwrap();
    assert_eq!(per_seller[first], max_other, "the first listed seller has the most alerts");

    // Alert kinds: a label for every kind present; bar heights proportional to the counts.
    let by_kind = figure_named(&m, "alerts_by_kind")[0];
    let groups: Vec<&str> = by_kind["groups"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    for (kind, _) in per_kind.keys() {
        assert!(groups.contains(&kind.as_str()), "kind {kind} has no label: {groups:?}");
    }
    let mut scale = None;
    for b in by_kind["bars"].as_array().unwrap() {
        let kind = groups[b["group"].as_u64().unwrap() as usize];
        let n = per_kind.get(&(kind.to_string(), b["series"].as_str().unwrap().to_string())).copied().unwrap_or(0.0);
        let h = b["height"].as_f64().unwrap();
        if n == 0.0 {
            assert!(h < 0.5, "{kind}: a bar for no alerts");
            continue;
        }
        let s = *scale.get_or_insert(h / n);
        assert!((h / n - s).abs() < 0.01 * s, "{kind}: {h} px for {n} alerts");
    }

    // Count axes have whole-number ticks.
    for (name, axis) in [
        ("alerts_by_kind", "y"),
        ("top_sellers", "x"),
        ("risk_distribution", "y"),
        ("trend_alerts", "y"),
        ("trend_disrupted", "y"),
    ] {
        for f in figure_named(&m, name) {
            let ticks: Vec<&str> = f["ticks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["axis"] == axis)
                .map(|t| t["text"].as_str().unwrap())
                .collect();
            assert!(ticks.len() >= 2, "{name}: ticks {ticks:?}");
            for t in &ticks {
                assert!(t.parse::<i64>().is_ok(), "{name}: tick {t:?} on a count axis");
            }
        }
    }

    // Row labels sit level with their rows, in every chart that has them.
    let mut checked = 0;
    for name in ["lane_heatmap", "top_sellers", "disrupted_lanes", "lane_percentiles"] {
        for f in figure_named(&m, name) {
            for r in f["rows"].as_array().unwrap() {
                let (a, b) = (r["label_y"].as_f64().unwrap(), r["row_y"].as_f64().unwrap());
                assert!((a - b).abs() <= 1.5, "{name}: label {} at y {a}, its row at {b}", r["label"]);
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} row labels checked");

    // Five nights: five points per series in every trend chart. At-risk precision needs known
    // outcomes, which tonight's alerts cannot have yet: its point is drawn hollow, "not known".
    for name in ["trend_alerts", "trend_precision", "trend_on_time", "trend_disrupted"] {
        let f = figure_named(&m, name);
        assert_eq!(f.len(), 1, "{name} missing");
        let points = f[0]["points"].as_array().unwrap();
        let mut series: std::collections::BTreeMap<&str, Vec<&serde_json::Value>> = Default::default();
        for p in points {
            series.entry(p["series"].as_str().unwrap()).or_default().push(p);
        }
        assert!(!series.is_empty(), "{name}: no points");
        for (s, pts) in &series {
            assert_eq!(pts.len(), 5, "{name}/{s}: {} points", pts.len());
            let missing: Vec<bool> = pts.iter().map(|p| p["missing"].as_bool().unwrap()).collect();
            if name == "trend_precision" {
                assert_eq!(missing, [false, false, false, false, true], "{name}: {missing:?}");
            } else {
                assert!(missing.iter().all(|m| !m), "{name}/{s}: {missing:?}");
            }
        }
    }
    assert_eq!(figure_named(&m, "trend_alerts")[0]["points"].as_array().unwrap().len(), 15);
}

/// The notebooks run headless on sample_data through the repository's runner script.
#[test]
fn notebooks_execute_without_errors() {
    let Some(py) = require_python(&["nbclient", "nbformat", "ipykernel", "polars", "duckdb", "matplotlib", "pyarrow"])
    else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(py)
        .current_dir(repo())
        .args(["scripts/run_notebooks.py", "--bin", bin().to_str().unwrap(), "--out", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    for nb in ["01_sample_data_and_lanes", "02_run_outputs_and_one_seller", "03_backtest"] {
        let executed = out.path().join(format!("executed/{nb}.ipynb"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&executed).unwrap()).unwrap();
        let errors = v["cells"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["outputs"].as_array().cloned().unwrap_or_default())
            .filter(|o| o["output_type"] == "error")
            .count();
        assert_eq!(errors, 0, "{nb} has error outputs");
        let images = v["cells"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["outputs"].as_array().cloned().unwrap_or_default())
            .filter(|o| o["data"]["image/png"].is_string())
            .count();
        assert!(images >= 3, "{nb} drew {images} plots");
    }
    // The notebooks in the repository stay output-free.
    for e in std::fs::read_dir(repo().join("notebooks")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ipynb") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            assert!(
                v["cells"].as_array().unwrap().iter().all(|c| c["outputs"].as_array().is_none_or(|o| o.is_empty())),
                "{} is committed with outputs",
                p.display()
            );
        }
    }
}
