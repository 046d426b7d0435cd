//! `loadgen find-max URL --slo EXPR…`: the highest open-loop rate at which
//! every SLO holds and the schedule is delivered. A closed-loop step finds
//! the neighbourhood, then `search::Search` decides each open-loop step;
//! this module runs them (`step.rs`) and reports (`answer.rs`).

mod answer;
mod step;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use loadgen::config::Config;
use loadgen::search::{Search, Step, Verdict};

use super::cli::FindMaxArgs;
use super::setup::Prepared;
use super::usage;
use answer::FindMaxReport;
use step::{StepReport, judge, run_step};

/// What find-max prints, also kept for its HTML page.
struct Transcript {
    to: Box<dyn Write>,
    text: String,
}

impl Write for Transcript {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.push_str(&String::from_utf8_lossy(buf));
        self.to.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.to.flush()
    }
}

pub fn main(args: &FindMaxArgs) -> anyhow::Result<ExitCode> {
    refuse_flags(args)?;
    let Prepared { cfg, out } = Prepared::new(&args.run, &args.slos)?;
    let cfg = cfg.into_inner();
    let stop = loadgen::signal::install();
    let mut out = Transcript {
        to: out,
        text: String::new(),
    };
    let slo: Vec<String> = args.slos.iter().map(|t| t.expr.clone()).collect();
    say_plan(&mut out, &cfg, args, &slo)?;
    let (start, closed_loop_rps) = first_rate(&cfg, args, stop, &mut out)?;
    writeln!(out, "{}", StepReport::head())?;
    out.flush()?;
    let mut search = Search::new(start, args.precision / 100.0, 1.0, args.max_steps);
    let steps = run_steps(&mut search, &cfg, args, stop, &mut out)?;
    let verdict = search.verdict();
    let (max_rate, name) = answer::say(&mut out, verdict.as_ref(), &steps, &slo, args)?;
    let doc = FindMaxReport {
        url: cfg.url.raw.clone(),
        max_rate,
        verdict: name,
        slo,
        closed_loop_rps,
        steps,
        interrupted: loadgen::signal::interrupted(),
    };
    answer::write_outputs(args, &doc, &out.text)?;
    Ok(ExitCode::from(
        verdict.as_ref().map_or(1, Verdict::exit_code),
    ))
}

/// The search sets each step's load and length itself: flags that would
/// set them, or that belong to one run, are refused.
fn refuse_flags(args: &FindMaxArgs) -> anyhow::Result<()> {
    let run = &args.run;
    for (given, flag) in [
        (run.rate.is_some(), "-R/--rate"),
        (run.stages.is_some(), "--stages"),
        (run.requests.is_some(), "-n/--requests"),
        (run.duration.is_some(), "-d/--duration (use --step)"),
        (run.runs > 1, "--runs"),
        (run.wants_profile(), "--profile"),
        (run.baseline.is_some(), "--baseline"),
        (!run.thresholds.is_empty(), "--threshold (use --slo)"),
        (run.metrics_listen.is_some(), "--metrics-listen"),
        (run.server_metrics.is_some(), "--server-metrics"),
        (run.hdr_log.is_some(), "--hdr-log"),
        (run.percentiles.is_some(), "--percentiles"),
        (run.request_log.is_some(), "--request-log"),
    ] {
        if given {
            return Err(usage(format!(
                "find-max does not take {flag}: it sets each step's rate and length itself; drop it"
            )));
        }
    }
    if run.part.is_some() || run.start_at.is_some() {
        return Err(usage(
            "find-max searches from one process, step by step: drop --part and --start-at",
        ));
    }
    if !(0.1..=100.0).contains(&args.precision) {
        return Err(usage(
            "--precision must be a percentage between 0.1 and 100, e.g. 5",
        ));
    }
    Ok(())
}

/// What is searched for, and with what.
fn say_plan(
    out: &mut dyn Write,
    cfg: &Config,
    args: &FindMaxArgs,
    slo: &[String],
) -> anyhow::Result<()> {
    writeln!(
        out,
        "Finding the highest rate @ {} where {} hold ({} s steps, {} s warm-up each, precision {}%)",
        cfg.url.raw,
        slo.join(", "),
        args.step.as_secs_f64(),
        args.step_warmup.as_secs_f64(),
        args.precision
    )?;
    writeln!(
        out,
        "  {} threads and {} connections{}",
        cfg.shards,
        cfg.connections,
        if cfg.pipeline > 1 {
            format!(", pipeline depth {}", cfg.pipeline)
        } else {
            String::new()
        }
    )?;
    Ok(())
}

/// `--start-rate`, or half of what a closed-loop step achieves (also
/// returned, for the report).
fn first_rate(
    cfg: &Config,
    args: &FindMaxArgs,
    stop: &'static AtomicBool,
    out: &mut dyn Write,
) -> anyhow::Result<(f64, Option<f64>)> {
    if let Some(r) = args.start_rate {
        return Ok((r as f64, None));
    }
    let r = run_step(cfg, None, args, stop)?;
    writeln!(
        out,
        "  closed loop: {:.0} req/s, p99 {}; starting at half of it",
        r.rps,
        loadgen::units::format_time_us(r.latency_us.p99 as f64)
    )?;
    Ok(((r.rps / 2.0).max(1.0), Some(r.rps)))
}

/// The steps `search` asks for, each run, judged and printed, until it
/// has its answer or Ctrl-C.
fn run_steps(
    search: &mut Search,
    cfg: &Config,
    args: &FindMaxArgs,
    stop: &'static AtomicBool,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<StepReport>> {
    let mut steps = Vec::new();
    while let Some(rate) = search.next_rate() {
        if loadgen::signal::interrupted() {
            break;
        }
        let r = run_step(cfg, Some(rate), args, stop)
            .with_context(|| format!("the step at {rate:.0} req/s failed to run"))?;
        let s = judge(&args.slos, rate, &r)?;
        writeln!(out, "{}", s.line(steps.len() + 1))?;
        out.flush()?;
        search.record(Step {
            target: rate,
            ok: s.ok,
            generator_limited: s.generator_limited,
        });
        steps.push(s);
    }
    Ok(steps)
}
