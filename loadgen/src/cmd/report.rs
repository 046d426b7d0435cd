//! `loadgen report RUN.json [--html FILE] [--threshold EXPR]…`: a saved
//! report, drawn again or judged again. Everything comes from the JSON.

use std::process::ExitCode;

use super::cli::ReportArgs;
use super::exit::{self, Cause};
use super::output;

pub fn main(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let mut doc = super::compare::read_report(&args.report)?;
    output::judge(&args.thresholds, &mut doc, &mut std::io::stdout())?;
    match &args.html {
        Some(path) => {
            output::write_html(path, &doc)?;
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
    let causes: Vec<Cause> = Cause::of_thresholds(&doc.thresholds).into_iter().collect();
    Ok(exit::finish(&causes))
}
