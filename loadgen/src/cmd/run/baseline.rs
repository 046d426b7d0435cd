//! `--baseline FILE`: this run against a saved one, by the statistics of
//! `loadgen compare`, and with a profile on both sides by the difference
//! of their stacks.

use std::io::Write;
use std::path::Path;

use loadgen::compare::runs;
use loadgen::profile::diff::{self, FlameDiff};
use loadgen::profile::{Folded, Profile};
use loadgen::report::{Baseline, Report};

use crate::cmd::cli::RunArgs;
use crate::cmd::exit::Cause;
use crate::cmd::output;

/// Prints the comparison and keeps it in `doc` (for the HTML page);
/// `--fail-if-slower`'s cause when this run is slower than it allows.
pub fn compare(
    args: &RunArgs,
    base_path: &Path,
    doc: &mut Report,
    profile: Option<&Profile>,
    out: &mut dyn Write,
) -> anyhow::Result<Option<Cause>> {
    let base = crate::cmd::compare::read_report(base_path)?;
    writeln!(out, "Compared with {}:", base_path.display())?;
    out.flush()?;
    let c = runs::compare(&base, doc, 0.05)?;
    write!(out, "{}", c.text())?;
    let mut b = runs::baseline(&base_path.display().to_string(), &base, doc, &c);
    if let Some(p) = profile {
        let requests = Some((base.requests, doc.requests)).filter(|&(b, n)| b > 0 && n > 0);
        let sides = Sides {
            base: &base,
            base_path,
            requests,
        };
        sides.on_cpu(p, args.diff_flamegraph.as_deref(), &mut b, out)?;
        sides.off_cpu(p, out)?;
    }
    doc.baseline = Some(b);
    Ok(args
        .fail_if_slower
        .filter(|&pct| c.slower_than(pct))
        .map(|pct| Cause::Slower { pct }))
}

/// The baseline's side of a stack difference.
struct Sides<'a> {
    base: &'a Report,
    base_path: &'a Path,
    /// Requests on each side, to compare samples per request.
    requests: Option<(u64, u64)>,
}

impl Sides<'_> {
    /// The difference of `lines` (the baseline's stacks) and `new`.
    fn diff(&self, lines: &[String], new: &Folded) -> anyhow::Result<(Folded, FlameDiff)> {
        let base = Folded::read(lines.join("\n").as_bytes())?;
        let d = diff::diff(&base, new, self.requests);
        Ok((base, d))
    }

    /// On-CPU: printed, kept for the page, drawn with `--diff-flamegraph`.
    fn on_cpu(
        &self,
        p: &Profile,
        draw: Option<&Path>,
        b: &mut Baseline,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let Some(lines) = self.base.folded() else {
            return Ok(());
        };
        let (base_f, d) = self.diff(lines, &p.folded)?;
        write!(out, "{}", d.text())?;
        b.flame_diff = Some(d.to_json());
        b.base_folded = lines.to_vec();
        if let Some(path) = draw {
            let title = format!("{} → this run", self.base_path.display());
            output::write_file(path, "the differential flamegraph", |w| {
                diff::render(&base_f, &p.folded, &title, w)
            })?;
            writeln!(out, "Differential flamegraph written to {}", path.display())?;
        }
        Ok(())
    }

    /// Off-CPU: the wait per request, by blocking site, printed.
    fn off_cpu(&self, p: &Profile, out: &mut dyn Write) -> anyhow::Result<()> {
        let (Some(o), Some(lines)) = (&p.off_cpu, self.base.off_cpu_folded()) else {
            return Ok(());
        };
        let (_, d) = self.diff(lines, &o.folded())?;
        writeln!(out, "Off-CPU, compared with the baseline's:")?;
        write!(out, "{}", d.text())?;
        Ok(())
    }
}
