//! `loadgen merge A.json B.json … [--json OUT] [--html OUT]`, or `-` for a
//! stream of reports on stdin: the fleet's parts as one report.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use loadgen::report::merge::{Input, merge};
use loadgen::report::reports_in;

use super::cli::MergeArgs;

/// The reports the arguments name, in order.
fn read_inputs(args: &MergeArgs) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in &args.reports {
        let (text, name) = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the reports on stdin")?;
            (text, "stdin".to_string())
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (text, path.display().to_string())
        };
        let found = reports_in(&text, &name)?;
        let one = found.len() == 1 && name != "stdin";
        for (source, report) in found {
            // A file of one report is named by its path alone.
            let source = if one { name.clone() } else { source };
            inputs.push(Input { source, report });
        }
    }
    Ok(inputs)
}

pub fn main(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let inputs = read_inputs(args)?;
    let merged = match merge(&inputs) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let json_to_stdout = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let mut out: Box<dyn Write> = if json_to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    write!(out, "{}", merged.text(args.latency))?;
    let mut doc = merged.report;
    let mut code = ExitCode::SUCCESS;
    if !args.thresholds.is_empty() {
        let Some(outcomes) = super::report::judge(&args.thresholds, &doc) else {
            return Ok(ExitCode::from(2));
        };
        write!(out, "{}", loadgen::threshold::table(&outcomes))?;
        if outcomes.iter().any(|o| !o.ok) {
            eprintln!(
                "loadgen: {} of {} thresholds failed",
                outcomes.iter().filter(|o| !o.ok).count(),
                outcomes.len()
            );
            code = ExitCode::from(5);
        }
        doc.thresholds = outcomes;
    }
    out.flush()?;
    if let Some(path) = &args.json {
        super::report::write_json(path, &doc)?;
    }
    if let Some(path) = &args.html {
        super::report::write_html(path, &doc)?;
    }
    Ok(code)
}
