//! The answer of a search, said and written (`--json`, `--html`).

use std::io::Write;
use std::path::Path;

use loadgen::report::html::SearchPoint;
use loadgen::search::Verdict;
use loadgen::threshold::{Metric, Threshold};
use serde::Serialize;

use super::step::StepReport;
use crate::cmd::cli::FindMaxArgs;
use crate::cmd::output;

#[derive(Debug, Serialize)]
pub struct FindMaxReport {
    pub url: String,
    /// The answer: the highest rate that held, confirmed (`null` if none).
    pub max_rate: Option<f64>,
    /// [`Verdict::name`], or `interrupted`.
    pub verdict: &'static str,
    pub slo: Vec<String>,
    /// The closed-loop step that set the first rate, if one was run.
    pub closed_loop_rps: Option<f64>,
    pub steps: Vec<StepReport>,
    pub interrupted: bool,
}

/// Says the verdict; returns the rate the report gives and the
/// verdict's name.
pub fn say(
    out: &mut dyn Write,
    verdict: Option<&Verdict>,
    steps: &[StepReport],
    slo: &[String],
    args: &FindMaxArgs,
) -> std::io::Result<(Option<f64>, &'static str)> {
    match verdict.cloned() {
        Some(Verdict::MaxRate(r)) => {
            writeln!(
                out,
                "Maximum rate: {r:.0} req/s with {} holding (confirmed)",
                slo.join(", ")
            )?;
        }
        Some(Verdict::NonePasses { lowest }) => {
            writeln!(
                out,
                "No rate held: even {lowest:.0} req/s failed ({})",
                steps.last().map_or(String::new(), |s| s.failed.join(", "))
            )?;
        }
        Some(Verdict::GeneratorLimited { at, passed }) => {
            writeln!(
                out,
                "Stopped at {at:.0} req/s: the generator, not the server, was the limit (busy shards or schedule lag); add shards (-t), CPUs or hosts.{}",
                passed.map_or(String::new(), |p| format!(
                    " The server held {p:.0} req/s, so its maximum is at least that."
                ))
            )?;
        }
        Some(Verdict::OutOfSteps { passed }) => {
            writeln!(
                out,
                "Out of steps (--max-steps {}): {}",
                args.max_steps,
                passed.map_or("no rate held yet".to_string(), |p| format!(
                    "{p:.0} req/s held, not confirmed"
                ))
            )?;
        }
        None => {
            writeln!(out, "Interrupted before an answer.")?;
        }
    }
    Ok((
        verdict.and_then(Verdict::rate),
        verdict.map_or("interrupted", Verdict::name),
    ))
}

/// `--html` (the page: what was printed, and each step's p99 against its
/// rate) and `--json`.
pub fn write_outputs(args: &FindMaxArgs, doc: &FindMaxReport, text: &str) -> anyhow::Result<()> {
    if let Some(path) = &args.run.html {
        write_page(path, doc, &args.slos, text)?;
    }
    if let Some(path) = &args.run.json {
        output::write_json(path, doc)?;
    }
    Ok(())
}

fn write_page(
    path: &Path,
    doc: &FindMaxReport,
    slos: &[Threshold],
    text: &str,
) -> anyhow::Result<()> {
    let points: Vec<SearchPoint> = doc
        .steps
        .iter()
        .map(|s| SearchPoint {
            target_rps: s.target_rps,
            p99_us: s.latency_us.p99 as f64,
            ok: s.ok,
        })
        .collect();
    let slo_us = slos
        .iter()
        .find(|t| t.metric == Metric::Quantile(0.99))
        .and_then(Threshold::latency_bound_us);
    let html = loadgen::report::html::render_search(
        &format!("loadgen find-max: {}", doc.url),
        text,
        &points,
        slo_us,
        doc.max_rate,
    )?;
    output::write_file(path, "the HTML page", |w| w.write_all(html.as_bytes()))
}
