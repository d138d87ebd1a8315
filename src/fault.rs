//! Fault injection for the operations tests, from `LANEWATCH_FAULT`: a comma-separated list of
//! `panic:<point>` (panic there), `kill:<point>` (SIGKILL this process there), `hang:<point>`
//! (stop there for two minutes, as a process that no longer responds) and
//! `no_exchange` (behave as on a file system without an atomic exchange of two paths).
//! Points are stage names (as the stage starts) and `commit:begin`, `commit:success`,
//! `commit:migrate`, `commit:swapped` inside the commit of a run folder, `state:segments`,
//! `state:generation`, `state:current`, `state:published` while the state is written, `partial:json`
//! before a shard's partial is published, `round:<name>` before a round's file is
//! published (`rounds`), and `fit:<candidate>`
//! as a model candidate's fit starts (`fit:simple_logistic`: the floor's). Unset, it costs one
//! environment lookup per point.

fn directives() -> Vec<String> {
    std::env::var("LANEWATCH_FAULT")
        .map(|v| v.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect())
        .unwrap_or_default()
}

/// Panics or kills the process if `LANEWATCH_FAULT` names this point.
pub fn point(name: &str) {
    for d in directives() {
        if d.strip_prefix("panic:") == Some(name) {
            panic!("injected fault in stage {name}");
        }
        if d.strip_prefix("hang:") == Some(name) {
            std::thread::sleep(std::time::Duration::from_secs(120));
        }
        if d.strip_prefix("kill:") == Some(name) {
            // SAFETY: raising a signal at the calling process has no memory-safety conditions.
            #[cfg(unix)]
            unsafe {
                libc::raise(libc::SIGKILL);
            }
            // Where there is no SIGKILL, the nearest: the process ends at once, unwinding nothing.
            #[cfg(not(unix))]
            std::process::abort();
        }
    }
}

/// Whether `LANEWATCH_FAULT` sets the flag `name` (e.g. `no_exchange`).
pub fn flag(name: &str) -> bool {
    directives().iter().any(|d| d == name)
}
