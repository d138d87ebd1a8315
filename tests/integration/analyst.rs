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
