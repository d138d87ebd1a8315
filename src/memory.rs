//! Process memory: readings for logs and the manifest, handing freed memory back, and the
//! prefetch hints of passes that read memory out of order.

/// Peak resident set size of this process so far, in MB (None where there is no /proc).
pub fn peak_rss_mb() -> Option<f64> {
    status_kb("VmHWM:").map(|kb| (kb / 1024.0).round())
}

/// Whether this process has started a child whose memory its readings count (`started_steps`).
static STEPS_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called before an out-of-core night starts its steps: from then on `children_peak_rss_mb`
/// reads the children's peak.
pub fn started_steps() {
    STEPS_STARTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Peak resident set size of the largest child process this process has waited for (the
/// steps of an out-of-core night), in MB; None before any, or without `getrusage`. Only once
/// the steps started: the kernel keeps the children's peak across `exec`, so a night started
/// by `cargo run` after a build (cargo execs the binary) read rustc's 1.4 GB as its own peak.
pub fn children_peak_rss_mb() -> Option<f64> {
    if !STEPS_STARTED.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
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

/// Memory the system can give without swapping (`MemAvailable`), in bytes; None where there is
/// no /proc.
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb.saturating_mul(1024))
}

fn status_kb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(key))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Asks for the cache line at `p` ahead of its use (a hint: no effect on results).
#[inline]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `prefetch` of every cache line `v` spans.
#[inline]
pub fn prefetch_all<T>(v: &T) {
    let p = v as *const T as *const u8;
    let mut at = 0;
    while at < std::mem::size_of::<T>() {
        prefetch(p.wrapping_add(at));
        at += 64;
    }
    // The last byte's line, where `v` does not start on a line.
    prefetch(p.wrapping_add(std::mem::size_of::<T>().saturating_sub(1)));
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

/// Requests at least this large are mapped on their own and unmapped when freed
/// (`bound_heap_reuse`).
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Fixes glibc's mmap threshold at `MMAP_THRESHOLD`, once, at the start of the process (before
/// its threads). By default glibc serves requests from its heaps below a threshold that rises
/// to the largest mapped block freed so far, up to 32 MiB. A night allocates and frees buffers
/// of every size up to hundreds of MB, so the threshold soon sits at 32 MiB, and buffers of
/// tens of MB freed into the heaps stay there, fragmented: the same 10M night peaked anywhere
/// between 3,912 and 4,031 MiB. With a fixed threshold such buffers go back to the system when
/// freed, and it peaked at 3,840 MiB in both runs (BENCHMARKS.md, 2026-12-03 (late)); the cost
/// is page faults for each fresh mapping (more system time, the same wall time at 1M). Left
/// alone when the person set the threshold themselves (`MALLOC_MMAP_THRESHOLD_`, or
/// `GLIBC_TUNABLES` naming it). Returns whether it set it.
pub fn bound_heap_reuse() -> bool {
    if mmap_threshold_set_by_person() {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; M_MMAP_THRESHOLD takes any
    // value up to 32 MiB.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Whether the person set glibc's mmap threshold themselves (then lanewatch leaves it).
fn mmap_threshold_set_by_person() -> bool {
    std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"))
}

/// Whether the person set either of the thresholds `keep_freed_memory` sets.
fn heap_set_by_person() -> bool {
    mmap_threshold_set_by_person()
        || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("trim_threshold"))
}

/// A night whose estimated need (`budget::night_need_gb`) is at most this many GB keeps what it
/// frees for its later steps (`keep_freed_memory`), when the memory budget leaves it room
/// (`keeps_freed`). About 2M shipments; the 10M night (6.4 GB estimated) stays bounded.
pub const KEEP_FREED_BELOW_GB: f64 = 2.0;

/// How far above its estimated need a night keeping its freed memory may peak, as a share of
/// the need: it must still fit `input.max_memory_gb` then. At 1M shipments (0.87 GB estimated)
/// keeping it raised the measured peak from 412–415 to 559–576 MB on the incremental night and
/// from 678–681 to 794–798 MB on its full refresh.
const KEPT_FREED_GROWTH: f64 = 1.5;

/// Whether a night needing `need_gb` under a budget of `budget_gb` (0: no limit, in which case
/// its need is not estimated and it stays bounded) keeps its freed memory.
pub fn keeps_freed(need_gb: f64, budget_gb: f64) -> bool {
    budget_gb > 0.0 && need_gb <= KEEP_FREED_BELOW_GB && need_gb * KEPT_FREED_GROWTH <= budget_gb
}

static KEEP_FREED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For a night small enough (`keeps_freed`): the memory its steps free stays with the
/// allocator for the steps after them, rather than going back to the system to be faulted in
/// again. The steps of a night touch far more fresh pages than its peak holds, and on the
/// benchmark VM a page fault costs microseconds: at 1M shipments 21 % of an incremental night's
/// CPU was page faults. Keeping freed memory took that night from 1.74–1.85 to 1.54–1.65 s
/// (system time 0.76–0.81 → 0.44–0.46 s) and its full refresh from 8.07–9.45 to 7.15–7.27 s
/// (BENCHMARKS.md, "session 59"). Blocks up to 32 MiB then come from the heaps, which are no
/// longer trimmed (`release_free_memory` does nothing). Left alone when the person set the
/// thresholds themselves. Returns whether it changed them.
pub fn keep_freed_memory() -> bool {
    if heap_set_by_person() {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters (under its own lock); both values
    // are in range (the mmap threshold at most 32 MiB).
    unsafe {
        let kept =
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1;
        KEEP_FREED.store(kept, std::sync::atomic::Ordering::Relaxed);
        kept
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Hands memory freed by a finished step back to the system. glibc keeps freed heap pages, per
/// thread arena, so the next step (often on other rayon threads) would otherwise grow the
/// process rather than reuse them; this keeps the peak near what is live. Nothing for a night
/// that keeps its freed memory (`keep_freed_memory`).
pub fn release_free_memory() {
    if KEEP_FREED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases unused pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn small_nights_within_their_budget_keep_freed_memory_and_large_ones_do_not() {
        // 1M shipments and 9.2M events: 0.91 GB estimated.
        let one_m = crate::budget::night_need_gb(1_000_000, 9_200_000);
        assert!(keeps_freed(one_m, 16.0));
        // 10M: 6.4 GB, bounded whatever the budget (the night must stay within 4 GiB).
        let ten_m = crate::budget::night_need_gb(10_000_000, 92_000_000);
        assert!(!keeps_freed(ten_m, 16.0) && !keeps_freed(ten_m, 64.0));
        // A budget the grown peak would not fit, or no budget (no estimate), keeps it bounded.
        assert!(!keeps_freed(one_m, one_m * 1.2));
        assert!(!keeps_freed(one_m, 0.0));
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Whether glibc mapped this block on its own: such a block starts 16 bytes (its header)
    /// into a page; a block carved from a heap lands there only by chance (1 in 256).
    fn mapped(v: &[u64]) -> bool {
        v.as_ptr() as usize % 4096 == 16
    }

    /// Set in the process the test below starts for itself.
    const ALONE: &str = "LANEWATCH_MEMORY_TEST_ALONE";

    #[test]
    fn buffers_above_the_threshold_stay_mapped_after_a_larger_one_is_freed() {
        // The threshold is only consulted when a heap has no free chunk for a request: under
        // `cargo test` other tests' threads free blocks of every size into the heaps meanwhile,
        // and a 5 MiB request served from one of them fails the check at random (CI, stop 43).
        // So the check runs in a process of its own: this test binary again, this test alone.
        if std::env::var_os(ALONE).is_none() {
            let name = "memory::tests::buffers_above_the_threshold_stay_mapped_after_a_larger_one_is_freed";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1", "--nocapture"])
                .env(ALONE, "1")
                .env_remove("MALLOC_MMAP_THRESHOLD_")
                .env_remove("GLIBC_TUNABLES")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "the check in a process of its own failed or did not run:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        assert!(bound_heap_reuse(), "the threshold was not set");
        // Freeing a 16 MiB mapped block is what raises glibc's default threshold to its size
        // (a block above 32 MiB does not); the 5 MiB blocks after it would come from a heap.
        drop(std::hint::black_box(vec![1u64; 2 << 20]));
        let blocks: Vec<Vec<u64>> = (0..8).map(|i| std::hint::black_box(vec![i as u64; (5 << 20) / 8])).collect();
        let heap = blocks.iter().filter(|b| !mapped(b)).count();
        assert_eq!(heap, 0, "{heap} of 8 blocks of 5 MiB came from a heap");
    }
}
