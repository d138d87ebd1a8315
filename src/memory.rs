//! Process memory: readings for logs and the manifest, and handing freed memory back.

/// Peak resident set size of this process so far, in MB (None where there is no /proc).
pub fn peak_rss_mb() -> Option<f64> {
    status_kb("VmHWM:").map(|kb| (kb / 1024.0).round())
}

/// Peak resident set size of the largest child process this process has waited for (the
/// steps of an out-of-core night), in MB; None before any, or without `getrusage`.
pub fn children_peak_rss_mb() -> Option<f64> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage = unsafe { std::mem::zeroed::<libc::rusage>() };
        if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } == 0 && usage.ru_maxrss > 0 {
            return Some((usage.ru_maxrss as f64 / 1024.0).round());
        }
    }
    None
}

/// Current resident set size, in MB.
pub fn rss_mb() -> Option<f64> {
    status_kb("VmRSS:").map(|kb| (kb / 1024.0).round())
}

fn status_kb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(key))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// A debug log line for a step inside a stage: seconds since the stage began, and the current
/// and peak resident memory, which is how the steps that hold memory are found.
pub fn log_step(stage: &str, step: &str, since: std::time::Instant) {
    tracing::debug!(
        stage,
        step,
        seconds = since.elapsed().as_secs_f64(),
        rss_mb = rss_mb(),
        peak_rss_mb = peak_rss_mb(),
        "step done"
    );
}

/// Hands memory freed by a finished step back to the system. glibc keeps freed heap pages, per
/// thread arena, so the next step (often on other rayon threads) would otherwise grow the
/// process rather than reuse them; this keeps the peak near what is live.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases unused pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}
