//! `loadgen merge A.json B.json … [--json OUT] [--html OUT]`, or `-` for a
//! stream of reports on stdin: the fleet's parts as one report.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use loadgen::report::merge::{Input, merge};
use loadgen::report::reports_in;

use super::cli::MergeArgs;
use super::exit::{self, Cause};
use super::{output, usage};

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
    // Reports that are not the parts of one fleet: bad usage.
    let merged = merge(&inputs).map_err(usage)?;
    let mut out = output::text_out(args.json.as_deref());
    write!(out, "{}", merged.text(args.latency))?;
    let mut doc = merged.report;
    output::judge(&args.thresholds, &mut doc, &mut out)?;
    out.flush()?;
    if let Some(path) = &args.json {
        output::write_json(path, &doc)?;
    }
    if let Some(path) = &args.html {
        output::write_html(path, &doc)?;
    }
    let causes: Vec<Cause> = Cause::of_thresholds(&doc.thresholds).into_iter().collect();
    Ok(exit::finish(&causes))
}
