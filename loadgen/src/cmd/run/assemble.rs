//! The report of a run (or of several runs in a row), printed as it is
//! put together: the summary, the server's count beside ours, the
//! profile; each run's own entry; the target's seconds joined to ours.

use std::io::Write;

use loadgen::config::Config;
use loadgen::metrics::{ClientCount, ServerCheck, Window};
use loadgen::profile::{self, Profile};
use loadgen::report::{self, Report, RunEntry, RunReport};
use loadgen::stats::RunOutput;

use super::repeat::Runs;

/// The report of all the runs: one run's own, or several runs' merged
/// totals over their seconds, one run after another.
pub fn run_report<'a>(
    cfg: &'a Config,
    total: &'a RunOutput,
    per_run: &[RunReport<'_>],
) -> RunReport<'a> {
    let engine = cfg.engine.name();
    let interrupted = loadgen::signal::interrupted();
    if per_run.is_empty() {
        RunReport::new(cfg, total, engine, interrupted)
    } else {
        RunReport::from_runs(cfg, total, engine, interrupted, per_run)
    }
}

/// The document, from the summary on: `header` and the summary printed
/// make its stored text.
pub fn document(
    rep: &RunReport<'_>,
    header: &str,
    latency: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Report> {
    let summary = report::summary(rep, latency);
    write!(out, "{summary}")?;
    let mut doc = Report::new(rep);
    doc.summary_text = format!("{header}{summary}");
    doc.host = loadgen::sys::host_name();
    Ok(doc)
}

/// `--server-metrics`: the server's count and latency over the runs'
/// windows, beside ours, with what does not add up.
pub fn server_metrics(
    doc: &mut Report,
    check: &ServerCheck,
    windows: &[Window],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (m, warnings) = check.evaluate(
        windows,
        ClientCount {
            requests: doc.requests,
            duration_s: doc.duration_s,
        },
    );
    write!(out, "{}", m.text())?;
    for w in &warnings {
        writeln!(out, "{w}")?;
    }
    doc.warnings.extend(warnings);
    doc.server_metrics = Some(m);
    Ok(())
}

/// The profile (printed, and in the report), each run's own entry, and
/// the target's seconds joined to the client's.
pub fn runs_and_profile(
    doc: &mut Report,
    runs: &Runs,
    per_run: &[RunReport<'_>],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if let Some(p) = &runs.profile {
        write!(out, "{}", p.summary())?;
    }
    out.flush()?;
    doc.profile = runs.profile.as_ref().map(Profile::report);
    doc.runs = per_run
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut report = Report::new(r);
            report.profile = runs.run_profiles.get(i).cloned().flatten();
            RunEntry { run: i + 1, report }
        })
        .collect();
    join_targets(doc, &runs.targets);
    Ok(())
}

/// A run's per-second target figures and where they start relative to
/// the client's measured window.
pub struct TargetRun {
    seconds: Vec<profile::TargetSecond>,
    /// Client window start − profile window start, in whole seconds.
    shift: i64,
    off_cpu: bool,
}

impl TargetRun {
    pub fn of(p: &Profile, started_at: std::time::SystemTime) -> TargetRun {
        let gap = p
            .attached_at
            .map_or(0.0, |a| match started_at.duration_since(a) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            });
        TargetRun {
            seconds: p.seconds.clone(),
            shift: gap.round() as i64,
            off_cpu: p.off_cpu.is_some(),
        }
    }
}

/// Joins each run's target seconds to its seconds in the series (and in
/// its own entry of `runs`).
fn join_targets(doc: &mut Report, targets: &[Option<TargetRun>]) {
    if doc.runs.is_empty() {
        if let Some(Some(t)) = targets.first() {
            report::join_target(&mut doc.series, &t.seconds, t.shift, t.off_cpu);
        }
        return;
    }
    let mut at = 0;
    for (entry, t) in doc.runs.iter_mut().zip(targets) {
        let n = entry.report.series.len();
        if let Some(t) = t {
            report::join_target(&mut entry.report.series, &t.seconds, t.shift, t.off_cpu);
            if let Some(slice) = doc.series.get_mut(at..at + n) {
                report::join_target(slice, &t.seconds, t.shift, t.off_cpu);
            }
        }
        at += n;
    }
}
