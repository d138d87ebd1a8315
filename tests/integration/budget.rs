//! A night above `input.max_memory_gb` runs out of core (src/budget.rs) within the budget, its
//! peak memory measured by the kernel, with the in-memory run's outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::common::*;

const AS_OF: &str = "2026-06-20";

/// The budget, in MB: well below what this input needs in memory (1.3 GB estimated from its
/// rows; 490–545 MB measured since the state keeps the shipments sorted, 580 before); the
/// in-memory run's measured peak is asserted to be 1.25 times the budget or more, so the budget
/// binds. (The smallest budget this night can be split for is about 365 MB: its shipments are
/// one part's floor.)
const BUDGET_MB: f64 = 380.0;

/// How far above the budget the in-memory run must peak for the budget to bind.
const BINDS: f64 = 1.25;

/// A million shipments, 9.2 million events, generated once per test binary.
fn large_input() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        fixture("large", |dir| {
            lanewatch::generate::generate(
                &lanewatch::generate::GenerateParams::new(1_000_000, 5, date("2026-01-01"), 180),
                dir,
            )
            .unwrap();
        })
    })
}

/// Waits for a command and prints its exit code and peak RSS (KB) from `wait4`, which covers the
/// process and every child it waited for. The measurer is a small fresh process: a child's
/// peak counts the memory of the process it was forked from, and this test binary is large.
const MEASURE: &str = "import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)";

/// `lanewatch run` of the night into `out` with these settings; its exit code, stderr and peak
/// resident memory in MB of 10^6 bytes (the kernel's, allocator included: the largest of the
/// process and the children it waited for; its parent, waiting, holds tens of MB more).
fn run_measured(py: &Path, input: &Path, out: &Path, env: &[(&str, &str)]) -> (i32, String, f64) {
    let cfg = fast_config();
    let mut cmd = Command::new(py);
    cmd.args(["-c", MEASURE]).arg(bin());
    cmd.args(["run", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--as-of", AS_OF])
        .args(["--config", cfg.to_str().unwrap()]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LANEWATCH_")) {
        cmd.env_remove(k);
    }
    let o = cmd.envs(env.iter().copied()).stdin(Stdio::null()).output().expect("run the measurer");
    let said = String::from_utf8_lossy(&o.stdout);
    let (code, kb) =
        said.trim().rsplit_once('\n').map_or(said.trim(), |(_, l)| l).split_once(' ').expect("code and KB");
    // ru_maxrss is in KiB.
    (code.parse().unwrap(), String::from_utf8_lossy(&o.stderr).into_owned(), kb.parse::<f64>().unwrap() * 1024.0 / 1e6)
}

#[test]
fn a_night_above_the_memory_budget_runs_out_of_core_within_it() {
    let Some(py) = crate::tools::require_python(&["os"]) else { return };
    let input = large_input();
    let events = lanewatch::ingest::footer_rows(input, lanewatch::schema::Table::Events).unwrap();
    assert!(events > 9_000_000, "{events} events");
    let (whole, parted) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, err, whole_mb) = run_measured(&py, input, whole.path(), &[("LANEWATCH_INPUT__MAX_MEMORY_GB", "0")]);
    assert_eq!(code, 0, "{err}");
    let budget = format!("{}", BUDGET_MB / 1000.0);
    let (code, err, parted_mb) =
        run_measured(&py, input, parted.path(), &[("LANEWATCH_INPUT__MAX_MEMORY_GB", &budget)]);
    assert_eq!(code, 0, "{err}");
    eprintln!("peak RSS: {whole_mb:.0} MB in memory, {parted_mb:.0} MB out of core (budget {BUDGET_MB} MB)");
    assert!(whole_mb > BINDS * BUDGET_MB, "the in-memory run needs {whole_mb:.0} MB: the budget does not bind");
    assert!(parted_mb <= BUDGET_MB, "out of core: {parted_mb:.0} MB, above the budget of {BUDGET_MB} MB");

    let run = parted.path().join(format!("as_of={AS_OF}"));
    let said = manifest_warnings(&run).into_iter().find(|w| w.contains("out of core in")).expect("no out-of-core line");
    let parts: u32 = said.split("out of core in ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(parts >= 2, "{said}");
    assert_same_data(&whole.path().join(format!("as_of={AS_OF}")), &run, "out of core against in memory");
    // The manifest's stage peaks count the steps (child processes), not only the parent.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    let peak = |stage: &str| -> f64 {
        let stages = m["timings"]["stages"].as_array().unwrap();
        stages.iter().find(|s| s["stage"] == stage).and_then(|s| s["peak_rss_mb"].as_f64()).unwrap() * 1.048576
    };
    assert!(peak("parts") >= 0.9 * parted_mb, "manifest: parts {:.0} MB, measured {parted_mb:.0} MB", peak("parts"));
    // The parts were scratch in the staging folder: only the run folder and the lock remain
    // (the state is neither read nor written by an out-of-core night).
    let left: Vec<String> = std::fs::read_dir(parted.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, [".lanewatch.lock".to_string(), format!("as_of={AS_OF}")]);
}

/// A step of an out-of-core night that dies (a round's process killed) fails the night loudly
/// (exit 70, naming the step) and leaves the earlier output as it was, scratch included; the
/// same night rerun completes with the in-memory run's outputs. The small input goes out of
/// core under a 0.2 GB budget (its estimate carries the 0.3 GB base).
#[test]
fn an_out_of_core_step_that_dies_fails_the_night_and_leaves_the_earlier_output() {
    let out = tempfile::tempdir().unwrap();
    let night = run_night(small_input(), out.path(), SMALL_AS_OF, &[]);
    let kept = tempfile::tempdir().unwrap();
    copy_tree(&night, kept.path());
    let mut before = tree(out.path());
    before.remove(".lanewatch.lock");

    let budget = ("LANEWATCH_INPUT__MAX_MEMORY_GB", "0.2");
    let run =
        |env: &[(&str, &str)]| lanewatch_fast_env("run", small_input(), out.path(), &["--as-of", SMALL_AS_OF], env);
    let o = run(&[budget, ("LANEWATCH_FAULT", "kill:round:advice")]);
    expect_code(&o, 70);
    let line = stderr(&o).lines().last().unwrap_or_default().to_string();
    assert!(line.contains("out-of-core step `lanewatch run --shard 0/") && line.contains("--round advice`"), "{line}");
    assert!(line.contains("killed by signal 9"), "{line}");
    let mut after = tree(out.path());
    after.remove(".lanewatch.lock");
    assert!(after == before, "the failed night changed the output folder");

    expect_code(&run(&[budget]), 0);
    let said = manifest_warnings(&night);
    assert!(said.iter().any(|w| w.contains("run out of core in 2 parts")), "{said:?}");
    assert_same_data(kept.path(), &night, "out of core against in memory, small input");
}

/// The rounds an out-of-core night runs train every night: a training schedule is refused
/// with the budget named, before anything is read.
#[test]
fn an_out_of_core_night_refuses_a_training_schedule() {
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch_fast_env(
        "run",
        small_input(),
        out.path(),
        &["--as-of", SMALL_AS_OF],
        &[("LANEWATCH_INPUT__MAX_MEMORY_GB", "0.2"), ("LANEWATCH_MODEL__RETRAIN_EVERY_DAYS", "7")],
    );
    expect_code(&o, 78);
    let line = stderr(&o).lines().last().unwrap_or_default().to_string();
    assert!(line.contains("input.max_memory_gb") && line.contains("retrain_every_days"), "{line}");
}

/// A step reads the run's effective config, not the variables again: a flag that overrode a
/// variable (`--seed` over LANEWATCH_SEED) holds in every part, as in the in-memory run.
#[test]
fn an_out_of_core_night_keeps_a_flag_over_a_variable() {
    let (whole, parted) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--as-of", SMALL_AS_OF, "--seed", "2"];
    let env = [("LANEWATCH_SEED", "1"), ("LANEWATCH_LOG_FORMAT", "json")];
    expect_code(&lanewatch_fast_env("run", small_input(), whole.path(), &flags, &env), 0);
    let budget = [env[0], env[1], ("LANEWATCH_INPUT__MAX_MEMORY_GB", "0.2")];
    expect_code(&lanewatch_fast_env("run", small_input(), parted.path(), &flags, &budget), 0);
    let night = format!("as_of={SMALL_AS_OF}");
    assert!(manifest_warnings(&parted.path().join(&night)).iter().any(|w| w.contains("out of core")));
    assert_same_data(&whole.path().join(&night), &parted.path().join(&night), "--seed over LANEWATCH_SEED");
}

/// The processes whose parent is `pid`, with their command lines (from /proc).
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if stat_fields(child).is_some_and(|f| f[1] == pid.to_string()) {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            out.push((child, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    out
}

/// The fields of `/proc/PID/stat` after the command name (state, ppid, …), if it is there
/// (the name, in parentheses, may hold spaces and parentheses itself).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')').map_or(0, |i| i + 1)..].split_whitespace().map(str::to_string).collect())
}

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped).
fn ended(pid: u32) -> bool {
    stat_fields(pid).is_none_or(|f| f[0] == "Z")
}

/// Process `pid`'s CPU time so far (user + system, in clock ticks).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?)
}

/// An out-of-core night killed while a step runs (cron's timeout sends SIGTERM) takes the step
/// with it: left running, a step went on writing into the dead night's staging folder, which
/// the next night clears as stale. The step here stops responding (`hang:`) in the advice
/// round, and the night is killed once the step has used no CPU for a second (it is in the
/// hang): a step killed while it still logs dies of its closed stderr anyway, so only the
/// night's death can end this one within the test.
#[test]
fn an_out_of_core_step_ends_when_its_night_is_killed() {
    let out = tempfile::tempdir().unwrap();
    let cfg = fast_config();
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--input", small_input().to_str().unwrap(), "--out", out.path().to_str().unwrap()])
        .args(["--as-of", SMALL_AS_OF, "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LANEWATCH_")) {
        cmd.env_remove(k);
    }
    cmd.env("LANEWATCH_INPUT__MAX_MEMORY_GB", "0.2").env("LANEWATCH_FAULT", "hang:round:advice");
    let mut night = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    let step = loop {
        let steps = children_of(night.id());
        // Not `--round advice-pools`, the round before.
        if let Some((pid, _)) = steps.iter().find(|(_, c)| c.contains("--round advice ")) {
            break *pid;
        }
        if let Some(status) = night.try_wait().unwrap() {
            panic!("the night ended ({status}) before its advice round");
        }
        assert!(started.elapsed().as_secs() < 300, "no advice round after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut last = (cpu_ticks(step), std::time::Instant::now());
    while last.1.elapsed().as_millis() < 1000 {
        assert!(!ended(step), "the advice step ended by itself");
        assert!(started.elapsed().as_secs() < 300, "the advice step still busy after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = cpu_ticks(step);
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
    }
    // SAFETY: a signal to a child process this test started and has not reaped.
    unsafe {
        libc::kill(night.id() as libc::pid_t, libc::SIGTERM);
    }
    night.wait().unwrap();
    let killed = std::time::Instant::now();
    while !ended(step) && killed.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let alive = !ended(step);
    if alive {
        // SAFETY: as above, for the step the test found running.
        unsafe {
            libc::kill(step as libc::pid_t, libc::SIGKILL);
        }
    }
    assert!(!alive, "the advice step (pid {step}) was still running 20 s after its night was killed");
}
