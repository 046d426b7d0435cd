//! `loadgen find-max URL --slo EXPR…`: the highest open-loop rate at which
//! every SLO holds and the schedule is delivered. A closed-loop step finds
//! the neighbourhood, then `search::Search` decides each open-loop step;
//! this file runs them and reports.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::cli::FindMaxArgs;
use loadgen::config::{Config, Validated};
use loadgen::report::html::SearchPoint;
use loadgen::report::{self, Latency, Report, RunReport};
use loadgen::schedule::Schedule;
use loadgen::search::{Search, Step, Verdict};
use loadgen::stats::Errors;
use loadgen::threshold::{self, Outcome, Threshold};

/// A step must deliver this share of its target rate to pass.
const DELIVERED: f64 = 0.99;
/// Schedule lag p99 above this, or above a fifth of the tightest latency
/// SLO, means the generator fell behind enough to matter.
const LAG_LIMIT_US: f64 = 1000.0;

#[derive(Debug, Serialize)]
struct StepReport {
    target_rps: f64,
    rps: f64,
    latency_us: Latency,
    errors: Errors,
    ok: bool,
    /// Why it failed, in words (SLOs that did not hold, rate not delivered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<String>,
    generator_limited: bool,
    slo: Vec<Outcome>,
}

#[derive(Debug, Serialize)]
struct FindMaxReport {
    url: String,
    /// The answer: the highest rate that held, confirmed (`null` if none).
    max_rate: Option<f64>,
    /// `max_rate`, `none_passes`, `generator_limited` or `out_of_steps`.
    verdict: &'static str,
    slo: Vec<String>,
    /// The closed-loop step that set the first rate, if one was run.
    closed_loop_rps: Option<f64>,
    steps: Vec<StepReport>,
    interrupted: bool,
}

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

/// One measured step: the config with this load, run, reported.
fn run_step(base: &Config, rate: Option<f64>, args: &FindMaxArgs) -> anyhow::Result<Report> {
    let mut cfg = base.clone();
    cfg.schedule = rate.map(Schedule::constant);
    cfg.duration = Some(args.step);
    cfg.requests = None;
    cfg.warmup = args.step_warmup;
    let cfg: Validated = cfg.validated()?;
    let stop = loadgen::signal::install();
    let out = loadgen::engine::run(&cfg, stop)?;
    let rep = RunReport::new(
        &cfg,
        &out,
        cfg.engine.name(),
        loadgen::signal::interrupted(),
    );
    Ok(Report::new(&rep))
}

fn judge(slos: &[Threshold], target: f64, r: &Report) -> anyhow::Result<StepReport> {
    let outcomes = threshold::eval_all(slos, r)?;
    let mut failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.expr.clone())
        .collect();
    if r.rps < DELIVERED * target {
        failed.push(format!(
            "achieved {:.0} req/s < {:.0}% of the target",
            r.rps,
            100.0 * DELIVERED
        ));
    }
    let busy = r
        .client_cpu
        .per_shard_busy
        .iter()
        .any(|&b| b > report::BUSY_LIMIT);
    let budget = slos
        .iter()
        .filter_map(Threshold::latency_bound_us)
        .fold(f64::INFINITY, f64::min);
    let lag_limit = LAG_LIMIT_US.max(budget / 5.0);
    let lagging = r.lag_us.is_some_and(|l| l.p99 as f64 > lag_limit);
    // A generator that was busy or late only matters when the step
    // failed: then the failure may be its own, not the server's.
    let ok = failed.is_empty();
    Ok(StepReport {
        target_rps: target,
        rps: r.rps,
        latency_us: r.latency_us,
        errors: r.errors,
        ok,
        failed,
        generator_limited: !ok && (busy || lagging),
        slo: outcomes,
    })
}

pub fn main(args: &FindMaxArgs) -> anyhow::Result<ExitCode> {
    for (given, flag) in [
        (args.run.rate.is_some(), "-R/--rate"),
        (args.run.stages.is_some(), "--stages"),
        (args.run.requests.is_some(), "-n/--requests"),
        (args.run.duration.is_some(), "-d/--duration (use --step)"),
        (args.run.runs > 1, "--runs"),
        (args.run.wants_profile(), "--profile"),
        (args.run.baseline.is_some(), "--baseline"),
        (!args.run.thresholds.is_empty(), "--threshold (use --slo)"),
        (args.run.metrics_listen.is_some(), "--metrics-listen"),
        (args.run.server_metrics.is_some(), "--server-metrics"),
        (args.run.hdr_log.is_some(), "--hdr-log"),
        (args.run.percentiles.is_some(), "--percentiles"),
    ] {
        if given {
            eprintln!(
                "loadgen: find-max does not take {flag}: it sets each step's rate and length itself; drop it"
            );
            return Ok(ExitCode::from(2));
        }
    }
    if args.run.part.is_some() || args.run.start_at.is_some() {
        eprintln!(
            "loadgen: find-max searches from one process, step by step: drop --part and --start-at"
        );
        return Ok(ExitCode::from(2));
    }
    if !(0.1..=100.0).contains(&args.precision) {
        eprintln!("loadgen: --precision must be a percentage between 0.1 and 100, e.g. 5");
        return Ok(ExitCode::from(2));
    }
    let cfg = match super::setup::run_config(&args.run) {
        Ok(cfg) => cfg.into_inner(),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Err(e) = super::setup::raise_file_limit(&cfg) {
        eprintln!("loadgen: {e}");
        return Ok(ExitCode::from(2));
    }
    for t in &args.slos {
        if let Err(e) = t.check_inputs(!cfg.expect_status.is_empty()) {
            eprintln!("loadgen: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    let json_to_stdout = args
        .run
        .json
        .as_deref()
        .is_some_and(|p| p.as_os_str() == "-");
    let mut out = Transcript {
        to: if json_to_stdout {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        },
        text: String::new(),
    };
    let slo_text: Vec<String> = args.slos.iter().map(|t| t.expr.clone()).collect();
    writeln!(
        out,
        "Finding the highest rate @ {} where {} hold ({} s steps, {} s warm-up each, precision {}%)",
        cfg.url.raw,
        slo_text.join(", "),
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
    let (start, closed_loop_rps) = match args.start_rate {
        Some(r) => (r as f64, None),
        None => {
            let r = run_step(&cfg, None, args)?;
            writeln!(
                out,
                "  closed loop: {:.0} req/s, p99 {}; starting at half of it",
                r.rps,
                loadgen::units::format_time_us(r.latency_us.p99 as f64)
            )?;
            ((r.rps / 2.0).max(1.0), Some(r.rps))
        }
    };
    writeln!(
        out,
        "{:>5} {:>11} {:>11} {:>9} {:>9} {:>7}  result",
        "step", "target/s", "achieved/s", "p50", "p99", "errors"
    )?;
    out.flush()?;
    let mut search = Search::new(start, args.precision / 100.0, 1.0, args.max_steps);
    let mut steps = Vec::new();
    while let Some(rate) = search.next_rate() {
        if loadgen::signal::interrupted() {
            break;
        }
        let r = run_step(&cfg, Some(rate), args)
            .with_context(|| format!("the step at {rate:.0} req/s failed to run"))?;
        let s = judge(&args.slos, rate, &r)?;
        let fmt = |us: u64| loadgen::units::format_time_us(us as f64);
        writeln!(
            out,
            "{:>5} {:>11.0} {:>11.0} {:>9} {:>9} {:>7}  {}",
            steps.len() + 1,
            rate,
            s.rps,
            fmt(s.latency_us.p50),
            fmt(s.latency_us.p99),
            s.errors.total(),
            if s.generator_limited {
                "generator limited".to_string()
            } else if s.ok {
                "pass".to_string()
            } else {
                format!("fail: {}", s.failed.join(", "))
            }
        )?;
        out.flush()?;
        search.record(Step {
            target: rate,
            ok: s.ok,
            generator_limited: s.generator_limited,
        });
        steps.push(s);
    }
    let interrupted = loadgen::signal::interrupted();
    let verdict = search.verdict();
    let code = verdict.as_ref().map_or(1, Verdict::exit_code);
    let (max_rate, name) = match verdict {
        Some(Verdict::MaxRate(r)) => {
            writeln!(
                out,
                "Maximum rate: {r:.0} req/s with {} holding (confirmed)",
                slo_text.join(", ")
            )?;
            (Some(r), "max_rate")
        }
        Some(Verdict::NonePasses { lowest }) => {
            writeln!(
                out,
                "No rate held: even {lowest:.0} req/s failed ({})",
                steps
                    .last()
                    .map_or(String::new(), |s: &StepReport| s.failed.join(", "))
            )?;
            (None, "none_passes")
        }
        Some(Verdict::GeneratorLimited { at, passed }) => {
            writeln!(
                out,
                "Stopped at {at:.0} req/s: the generator, not the server, was the limit (busy shards or schedule lag); add shards (-t), CPUs or hosts.{}",
                passed.map_or(String::new(), |p| format!(
                    " The server held {p:.0} req/s, so its maximum is at least that."
                ))
            )?;
            (passed, "generator_limited")
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
            (passed, "out_of_steps")
        }
        None => {
            writeln!(out, "Interrupted before an answer.")?;
            (None, "interrupted")
        }
    };
    if let Some(path) = &args.run.html {
        let points: Vec<SearchPoint> = steps
            .iter()
            .map(|s| SearchPoint {
                target_rps: s.target_rps,
                p99_us: s.latency_us.p99 as f64,
                ok: s.ok,
            })
            .collect();
        let slo_us = args
            .slos
            .iter()
            .find(|t| t.metric == loadgen::threshold::Metric::Quantile(0.99))
            .and_then(Threshold::latency_bound_us);
        let html = loadgen::report::html::render_search(
            &format!("loadgen find-max: {}", cfg.url.raw),
            &out.text,
            &points,
            slo_us,
            max_rate,
        )?;
        std::fs::write(path, html)
            .with_context(|| format!("cannot write the HTML page to {}", path.display()))?;
    }
    if let Some(path) = &args.run.json {
        let doc = FindMaxReport {
            url: cfg.url.raw.clone(),
            max_rate,
            verdict: name,
            slo: slo_text,
            closed_loop_rps,
            steps,
            interrupted,
        };
        super::report::write_json(path, &doc)?;
    }
    Ok(ExitCode::from(code))
}
