//! One step of the search: the config at one rate, run, judged by the
//! SLOs and by whether the generator kept up.

use std::sync::atomic::AtomicBool;

use loadgen::config::{Config, Validated};
use loadgen::report::{self, Latency, Report};
use loadgen::schedule::Schedule;
use loadgen::stats::Errors;
use loadgen::threshold::{self, Outcome, Threshold};
use serde::Serialize;

use crate::cmd::cli::FindMaxArgs;
use crate::cmd::run::run_report;

/// A step must deliver this share of its target rate to pass.
const DELIVERED: f64 = 0.99;
/// Schedule lag p99 above this, or above a fifth of the tightest latency
/// SLO, means the generator fell behind enough to matter.
const LAG_LIMIT_US: f64 = 1000.0;

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub target_rps: f64,
    pub rps: f64,
    pub latency_us: Latency,
    pub errors: Errors,
    pub ok: bool,
    /// Why it failed, in words (SLOs that did not hold, rate not delivered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    pub generator_limited: bool,
    pub slo: Vec<Outcome>,
}

/// One measured step: the config with this load (`None`: closed loop),
/// run, reported.
pub fn run_step(
    base: &Config,
    rate: Option<f64>,
    args: &FindMaxArgs,
    stop: &'static AtomicBool,
) -> anyhow::Result<Report> {
    let mut cfg = base.clone();
    cfg.schedule = rate.map(Schedule::constant);
    cfg.duration = Some(args.step);
    cfg.requests = None;
    cfg.warmup = args.step_warmup;
    let cfg: Validated = cfg.validated()?;
    let out = loadgen::engine::run(&cfg, stop)?;
    Ok(Report::new(&run_report(&cfg, &out, &[])))
}

/// Judges a step at `target` req/s: every SLO holds and the rate was
/// delivered; a failure while the generator was busy or late may be the
/// generator's own.
pub fn judge(slos: &[Threshold], target: f64, r: &Report) -> anyhow::Result<StepReport> {
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

impl StepReport {
    /// The table's head, above the [`StepReport::line`]s.
    pub fn head() -> String {
        format!(
            "{:>5} {:>11} {:>11} {:>9} {:>9} {:>7}  result",
            "step", "target/s", "achieved/s", "p50", "p99", "errors"
        )
    }

    /// Its row in the table: number, rates, latencies, errors, result.
    pub fn line(&self, n: usize) -> String {
        let fmt = |us: u64| loadgen::units::format_time_us(us as f64);
        let result = if self.generator_limited {
            "generator limited".to_string()
        } else if self.ok {
            "pass".to_string()
        } else {
            format!("fail: {}", self.failed.join(", "))
        };
        format!(
            "{n:>5} {:>11.0} {:>11.0} {:>9} {:>9} {:>7}  {result}",
            self.target_rps,
            self.rps,
            fmt(self.latency_us.p50),
            fmt(self.latency_us.p99),
            self.errors.total(),
        )
    }
}
