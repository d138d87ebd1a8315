//! `lanewatch backtest`: replays nightly runs over history, each strictly point-in-time, and
//! scores their alerts against the outcomes later in the same data.

use std::borrow::Cow;

use crate::alerts::Previous;
use crate::error::Result;
use crate::evaluate::{self, AdviceBacktest, Backtest, BacktestSummary};
use crate::features::reuse::Kept;
use crate::night::{self, Timings};
use crate::output;
use crate::settings::Settings;

pub fn backtest(s: &Settings) -> Result<BacktestSummary> {
    let range = s.backtest()?;
    let out = s.out()?;
    // Held until the three files are in place: a second backtest on the same folder exits 75
    // instead of interleaving its renames with these.
    // The input is checked first: a missing input (66) leaves no output folder or lock file.
    crate::ingest::check_input_folder(&s.input)?;
    let _lock = output::OutputLock::acquire_file(out, output::BACKTEST_LOCK_FILE, &output::manifest::now())?;
    let mut t = Timings::default();
    let (_, clean) = night::load_timed(s, &mut t)?;
    let finals = evaluate::final_outcomes(&clean)?;
    let truth = evaluate::read_disruptions(&s.input)?;

    let mut acc = Backtest::default();
    let mut advice = AdviceBacktest::default();
    let mut prev = Previous::default();
    // Each night hands its lane tables and series days on to the next, as the nightly job's
    // state does: a later night takes the ones whose cutoff it shares (exact, see
    // `features::reuse`). `state.incremental = false` computes every night from scratch.
    let mut kept = s.config.state.incremental.then(Kept::default);
    // Likewise the model of the training night, when the model is trained on a schedule.
    let mut kept_model = None;
    let mut n = range.from;
    while n <= range.to {
        let started = std::time::Instant::now();
        let mut nt = Timings::quiet();
        let from = night::ModelFrom::Schedule { kept: kept_model.as_ref(), digest: None };
        let mut res = night::compute(
            s,
            Cow::Borrowed(&clean),
            n,
            &prev,
            from,
            night::Then::Evaluate,
            kept.as_ref(),
            None,
            &mut nt,
        )?;
        if kept.is_some() {
            let r = &mut res.features.reused;
            // One input for every night: what this night knew before a cutoff up to its own,
            // the next night knows too.
            kept = Some(Kept {
                tables: std::mem::take(&mut r.keep),
                days: std::mem::take(&mut r.keep_days),
                holds_until: Some(n.cutoff()),
            });
            kept_model = res.trained.take().map(|t| t.kept());
        }
        // The next night carries first_alerted_on from this one, as the nightly job does.
        prev = Previous::from_alerts(&res.alerts.frame()?, n.as_of())?.with_capped(&res.alerts.capped)?;
        let seconds = started.elapsed().as_secs_f64();
        acc.add(&res.features, &res.model, &res.risk, &res.alerts, &finals, seconds)?;
        advice.add(n, range.every, &res.advice, &s.advice.advice.weight_bands_g, &clean, &finals)?;
        tracing::info!(
            as_of = %n,
            scored = res.features.score.len(),
            alerts = res.alerts.alerts.len(),
            seconds = format!("{seconds:.2}"),
            "backtest night"
        );
        n = n.after(range.every as u64);
    }
    let summary =
        acc.finish(advice.finish(), range.from, range.to, range.every, &finals, truth.as_deref(), out.to_path_buf());
    output::write_backtest(&summary, &acc.nights, out)?;
    let total: f64 = acc.nights.iter().map(|r| r.seconds).sum();
    tracing::info!(nights = acc.nights.len(), total_seconds = format!("{total:.1}"), "backtest done");
    Ok(summary)
}
