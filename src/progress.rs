//! Progress spinners for long stages: shown on an interactive terminal only, never in logs.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns spinners on when stderr is a terminal and logs are human-readable.
pub fn enable_if_terminal(json_logs: bool) {
    ENABLED.store(!json_logs && std::io::stderr().is_terminal(), Ordering::Relaxed);
}

pub fn spinner(stage: &str) -> ProgressBar {
    if !ENABLED.load(Ordering::Relaxed) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(stage.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
