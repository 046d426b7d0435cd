//! `loadgen compare` and `loadgen diff-flame`.

use std::path::Path;
use std::process::ExitCode;

use super::cli::{CompareArgs, DiffFlameArgs};
use super::exit::{self, Cause};
use super::{output, usage};
use anyhow::Context;
use loadgen::compare::runs;
use loadgen::profile::Folded;
use loadgen::profile::diff;
use loadgen::report::Report;

pub fn read_report(path: &Path) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a loadgen JSON report", path.display()))
}

fn read_folded(path: &Path) -> anyhow::Result<Folded> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Folded::read(std::io::BufReader::new(f))?)
}

/// Prints the comparison; exit 3 when slower than the gate allows.
pub fn report_comparison(
    base: &Report,
    new: &Report,
    alpha: f64,
    json: bool,
    gate: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let c = runs::compare(base, new, alpha)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c.report())?);
    } else {
        print!("{}", c.text());
    }
    let causes: Vec<Cause> = gate
        .filter(|&pct| c.slower_than(pct))
        .map(|pct| Cause::Slower { pct })
        .into_iter()
        .collect();
    Ok(exit::finish(&causes))
}

pub fn compare(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..1.0).contains(&args.alpha) || args.alpha == 0.0 {
        return Err(usage("--alpha must be between 0 and 1, e.g. 0.05"));
    }
    let base = read_report(&args.base)?;
    let new = read_report(&args.new)?;
    report_comparison(&base, &new, args.alpha, args.json, args.fail_if_slower)
}

pub fn requests_of(path: &Option<std::path::PathBuf>) -> anyhow::Result<Option<u64>> {
    match path {
        Some(p) => Ok(Some(read_report(p)?.requests).filter(|&n| n > 0)),
        None => Ok(None),
    }
}

pub fn diff_flame(args: &DiffFlameArgs) -> anyhow::Result<ExitCode> {
    let base = read_folded(&args.base)?;
    let new = read_folded(&args.new)?;
    let requests = requests_of(&args.base_report)?.zip(requests_of(&args.new_report)?);
    let d = diff::diff(&base, &new, requests);
    let title = format!("{} → {}", args.base.display(), args.new.display());
    output::write_file(&args.output, "the differential flamegraph", |w| {
        diff::render(&base, &new, &title, w)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d.to_json())?);
    } else {
        print!("{}", d.text());
        println!(
            "Differential flamegraph written to {}",
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
