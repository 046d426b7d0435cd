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
    // failed: then the failure may be its own, not the server's. Unless
    // the rate was delivered and every broken SLO is a latency bound
    // broken by more than the largest lag: then it is the server's.
    let ok = failed.is_empty();
    let lag_max = r.lag_us.map_or(0.0, |l| l.max as f64);
    let servers_alone = r.rps >= DELIVERED * target
        && outcomes
            .iter()
            .zip(slos)
            .all(|(o, t)| o.ok || t.broken_beyond_lag(o, lag_max));
    Ok(StepReport {
        target_rps: target,
        rps: r.rps,
        latency_us: r.latency_us,
        errors: r.errors,
        ok,
        failed,
        generator_limited: !ok && (busy || (lagging && !servers_alone)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A step at 100 req/s that delivered `rps`, with latency p99 and max
    /// `p99_us`, and a schedule lag whose p99 and max are `lag_us`.
    fn report(rps: f64, p99_us: u64, lag_us: u64) -> Report {
        Report {
            requests: 1000,
            rps,
            latency_us: Latency {
                p99: p99_us,
                max: p99_us,
                ..Latency::default()
            },
            lag_us: Some(Latency {
                p99: lag_us,
                max: lag_us,
                ..Latency::default()
            }),
            ..Report::default()
        }
    }

    fn slos(exprs: &[&str]) -> Vec<Threshold> {
        Threshold::parse_all(exprs).unwrap()
    }

    #[test]
    fn a_late_generator_limits_a_failure_it_could_have_caused() {
        // p99 3 ms against a 2 ms bound, with 5 ms of lag: the lag alone
        // could have broken it.
        let s = judge(&slos(&["p99<2ms"]), 100.0, &report(100.0, 3000, 5000)).unwrap();
        assert!(!s.ok && s.generator_limited, "{s:?}");
        // The rate not delivered while late: the generator's, maybe.
        let s = judge(&slos(&["p99<20ms"]), 100.0, &report(90.0, 3000, 5000)).unwrap();
        assert!(!s.ok && s.generator_limited, "{s:?}");
    }

    #[test]
    fn a_bound_broken_by_more_than_the_lag_is_the_servers() {
        // p99 50 ms against 1 µs, lag at most 5 ms: the server alone took
        // at least 45 ms.
        let s = judge(&slos(&["p99<1us"]), 100.0, &report(100.0, 50_000, 5000)).unwrap();
        assert!(!s.ok && !s.generator_limited, "{:?}", s.failed);
        // Every broken bound must be so: one the lag could explain keeps
        // the step generator-limited.
        let s = judge(
            &slos(&["p99<1us", "p99<48ms"]),
            100.0,
            &report(100.0, 50_000, 5000),
        )
        .unwrap();
        assert!(!s.ok && s.generator_limited, "{s:?}");
        // A lower bound (p50 > …) is not something lag breaks.
        let s = judge(&slos(&["p99>100ms"]), 100.0, &report(100.0, 50_000, 30_000)).unwrap();
        assert!(!s.ok && s.generator_limited, "{s:?}");
    }

    #[test]
    fn a_generator_on_time_is_never_the_limit() {
        let s = judge(&slos(&["p99<2ms"]), 100.0, &report(100.0, 3000, 10)).unwrap();
        assert!(!s.ok && !s.generator_limited);
    }
}
