//! `loadgen report RUN.json [--html FILE] [--threshold EXPR]…`: a saved
//! report, drawn again or judged again. Everything comes from the JSON.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use loadgen::report::Report;
use loadgen::threshold::{self, Threshold};

use super::cli::ReportArgs;

/// Writes `doc` as pretty JSON to `path`, or to stdout when `path` is `-`.
pub fn write_json<T: serde::Serialize>(path: &Path, doc: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(doc)?;
    text.push('\n');
    if path.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(())
    } else {
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))
    }
}

/// Writes the HTML page of `doc`.
pub fn write_html(path: &Path, doc: &Report) -> anyhow::Result<()> {
    let html = loadgen::report::html::render(doc)?;
    std::fs::write(path, html)
        .with_context(|| format!("cannot write the HTML report to {}", path.display()))
}

/// Evaluates the thresholds, prints the table; `Ok(None)` when a threshold
/// cannot be judged on this report (said on stderr: a usage error).
pub fn judge(thresholds: &[Threshold], doc: &Report) -> Option<Vec<threshold::Outcome>> {
    match threshold::eval_all(thresholds, doc) {
        Ok(o) => Some(o),
        Err(e) => {
            eprintln!("loadgen: {e}");
            None
        }
    }
}

pub fn main(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let mut doc = super::compare::read_report(&args.report)?;
    let mut code = ExitCode::SUCCESS;
    if !args.thresholds.is_empty() {
        let Some(outcomes) = judge(&args.thresholds, &doc) else {
            return Ok(ExitCode::from(2));
        };
        print!("{}", threshold::table(&outcomes));
        if outcomes.iter().any(|o| !o.ok) {
            code = ExitCode::from(5);
        }
        doc.thresholds = outcomes;
    }
    match &args.html {
        Some(path) => {
            write_html(path, &doc)?;
            println!("HTML report written to {}", path.display());
        }
        None if args.thresholds.is_empty() => {
            if doc.summary_text.is_empty() {
                println!(
                    "{}: {} requests, {:.2} req/s (a report of an older loadgen: no summary text stored); use --html FILE to draw it",
                    args.report.display(),
                    doc.requests,
                    doc.rps
                );
            } else {
                print!("{}", doc.summary_text);
            }
        }
        None => {}
    }
    Ok(code)
}
