//! The files a run writes once its report is complete.

use loadgen::config::Config;
use loadgen::profile::Profile;
use loadgen::report::{self, Report, RunReport};
use std::path::Path;

use crate::cmd::cli::RunArgs;
use crate::cmd::output;

/// `--json`, `--html`, `--hdr-log`, `--percentiles`, and the profile's.
pub fn write_outputs(
    args: &RunArgs,
    doc: &Report,
    rep: &RunReport<'_>,
    profile: Option<&Profile>,
) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        output::write_json(path, doc)?;
    }
    if let Some(path) = &args.html {
        output::write_html(path, doc)?;
    }
    let total = rep.out;
    if let Some(path) = &args.hdr_log {
        output::write_file(path, "the HdrHistogram log", |f| {
            report::write_interval_log(f, &rep.series, total.started_at, total.total.elapsed)
        })?;
    }
    if let Some(path) = &args.percentiles {
        output::write_file(path, "the percentile distribution", |f| {
            report::write_percentiles(f, &total.total.latency)
        })?;
    }
    if let Some(p) = profile {
        let what = load_name(rep.cfg);
        write_profile_files(p, args.flamegraph.as_deref(), args.folded.as_deref(), &what)?;
        write_off_cpu_files(
            p,
            args.off_cpu_flamegraph.as_deref(),
            args.off_cpu_folded.as_deref(),
            &what,
        )?;
    }
    Ok(())
}

/// "1000 req/s on http://…" or "64 connections on http://…".
pub fn load_name(cfg: &Config) -> String {
    match &cfg.schedule {
        Some(s) if s.stages.len() == 1 => {
            format!("{:.0} req/s on {}", s.stages[0].from, cfg.url.raw)
        }
        Some(_) => format!("staged load on {}", cfg.url.raw),
        None => format!("{} connections on {}", cfg.connections, cfg.url.raw),
    }
}

/// `--flamegraph` and `--folded`; `what` names the load in the title.
pub fn write_profile_files(
    p: &Profile,
    flamegraph: Option<&Path>,
    folded: Option<&Path>,
    what: &str,
) -> anyhow::Result<()> {
    if let Some(path) = folded {
        output::write_at(path, "the folded stacks", |path| p.write_folded(path))?;
    }
    let Some(path) = flamegraph else {
        return Ok(());
    };
    if p.samples == 0 {
        eprintln!(
            "loadgen: no samples, so no flamegraph written to {}",
            path.display()
        );
        return Ok(());
    }
    output::write_at(path, "the flamegraph", |path| {
        p.write_flamegraph(path, what)
    })
}

/// `--off-cpu-folded` and `--off-cpu-flamegraph`.
pub fn write_off_cpu_files(
    p: &Profile,
    flamegraph: Option<&Path>,
    folded: Option<&Path>,
    what: &str,
) -> anyhow::Result<()> {
    if p.off_cpu.is_none() {
        if let Some(path) = folded.or(flamegraph) {
            eprintln!(
                "loadgen: no off-CPU profile (see the warning above), so nothing written to {}",
                path.display()
            );
        }
        return Ok(());
    }
    if let Some(path) = folded {
        output::write_at(path, "the off-CPU folded stacks", |path| {
            p.write_off_cpu_folded(path)
        })?;
    }
    let Some(path) = flamegraph else {
        return Ok(());
    };
    if !p.has_off_cpu_stacks() {
        eprintln!(
            "loadgen: no off-CPU waits, so no flamegraph written to {}",
            path.display()
        );
        return Ok(());
    }
    output::write_at(path, "the off-CPU flamegraph", |path| {
        p.write_off_cpu_flamegraph(path, what)
    })
}
