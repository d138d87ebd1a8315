//! External tools some tests drive: Python with the analyst packages, headless Chromium, and the
//! shared contract checks beside the repository. A test that needs a missing tool fails with
//! what to install; only an explicit opt-out variable turns that into a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::repo;

/// Opt-outs, for a machine that cannot have the tool (README, "Tests").
pub const SKIP_PYTHON: &str = "LANEWATCH_SKIP_PYTHON_TESTS";
pub const SKIP_BROWSER: &str = "LANEWATCH_SKIP_BROWSER_TESTS";
pub const SKIP_SHARED: &str = "LANEWATCH_SKIP_SHARED_TESTS";
pub const SKIP_SPARK: &str = "LANEWATCH_SKIP_SPARK_TESTS";

fn opted_out(var: &str, what: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED ({var}=1): {what}");
        return true;
    }
    false
}

/// The interpreter the tests use: `LANEWATCH_PYTHON`, else the repository's `.venv`, else
/// `python3` on the PATH.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("LANEWATCH_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python3");
    if venv.is_file() { venv } else { PathBuf::from("python3") }
}

/// The interpreter, if it imports every module in `modules`. Otherwise the test fails naming
/// what to install, unless `LANEWATCH_SKIP_PYTHON_TESTS=1` (then `None`: skip).
pub fn require_python(modules: &[&str]) -> Option<PathBuf> {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(py);
    }
    if opted_out(SKIP_PYTHON, &format!("{} cannot import {modules:?}", py.display())) {
        return None;
    }
    panic!(
        "this test needs Python with {modules:?} ({} cannot import them). Run .ci/run, or \
         `python3 -m venv .venv && .venv/bin/pip install -r notebooks/requirements.txt` (or point \
         LANEWATCH_PYTHON at an interpreter that has them); set {SKIP_PYTHON}=1 to skip such tests",
        py.display()
    )
}

/// Python with PySpark and a Java runtime (Spark in local mode needs nothing else), or a
/// failure naming what to install, unless `LANEWATCH_SKIP_SPARK_TESTS=1`.
pub fn require_spark() -> Option<PathBuf> {
    let py = python();
    let pyspark = Command::new(&py).args(["-c", "import pyspark, pyarrow"]).output().is_ok_and(|o| o.status.success());
    let java = Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    if pyspark && java {
        return Some(py);
    }
    if opted_out(SKIP_SPARK, "no PySpark or no Java") {
        return None;
    }
    panic!(
        "this test runs Spark in local mode: it needs Java 17 (`apt-get install openjdk-17-jre-headless`; \
         java found: {java}) and PySpark ({} imports it: {pyspark}; run .ci/run, or pip install -r \
         notebooks/requirements.txt); set {SKIP_SPARK}=1 to skip",
        py.display()
    )
}

/// Headless Chromium from the PATH, or a failure naming the package, unless
/// `LANEWATCH_SKIP_BROWSER_TESTS=1`.
pub fn require_chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("sh").args(["-c", &format!("command -v {name}")]).output() {
            if o.status.success() {
                return Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            }
        }
    }
    if opted_out(SKIP_BROWSER, "no chromium on the PATH") {
        return None;
    }
    panic!(
        "this test needs headless Chromium on the PATH: run .ci/run or `apt-get install chromium` \
         (Debian); set {SKIP_BROWSER}=1 to skip browser tests"
    )
}

/// The shared folder beside the repository (`../shared`: the contract checks and the Cargo 2000
/// data), found at `LANEWATCH_SHARED` or in a parent folder of the repository; a failure
/// otherwise, unless `LANEWATCH_SKIP_SHARED_TESTS=1`.
pub fn require_shared() -> Option<PathBuf> {
    let marker = |p: &Path| p.join("checks/contract.py").is_file();
    if let Ok(p) = std::env::var("LANEWATCH_SHARED") {
        let p = PathBuf::from(p);
        assert!(marker(&p), "LANEWATCH_SHARED={} has no checks/contract.py", p.display());
        return Some(p);
    }
    let found = repo().ancestors().skip(1).map(|a| a.join("shared")).find(|p| marker(p));
    if found.is_some() {
        return found;
    }
    if opted_out(SKIP_SHARED, "no shared/checks/contract.py beside the repository") {
        return None;
    }
    panic!(
        "this test needs the shared checks beside the repository (../shared/checks/contract.py); \
         set LANEWATCH_SHARED to their folder, or {SKIP_SHARED}=1 to skip"
    )
}

/// Runs `python3 shared/checks/contract.py ARGS…` and returns its stdout; fails on a non-zero exit.
pub fn contract(args: &[&str]) -> Option<String> {
    let shared = require_shared()?;
    let py = require_python(&["pyarrow"])?;
    let o = Command::new(py).arg(shared.join("checks/contract.py")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "contract.py {args:?} failed:\n{text}");
    Some(text)
}
