//! Threshold expressions: `p99<5ms`, `p99.9<=20ms`, `mean<1ms`,
//! `rps>=10000`, `errors<0.1%`, `errors==0`, `unexpected==0`. Parsed once
//! (before a run, so a typo is a usage error and not a failed gate after a
//! 10-minute load) and evaluated against a finished [`Report`]. Pure: no
//! I/O, no clocks; `--threshold` and the rate search both use it.
//!
//! Grammar: `METRIC OP NUMBER[UNIT]`, spaces allowed around each part.
//! - latency metrics (`pN` for any percentile N in (0, 100], `p(N)` as in
//!   k6, `mean`/`avg`, `min`, `max`): units `us`/`µs`, `ms`, `s`; a bare
//!   number is ms, as in k6;
//! - `rps`: responses per second; `k`/`M` suffixes allowed;
//! - `errors` (every counted failure, connect errors included), `non2xx`
//!   (responses not 2xx or 3xx), `unexpected` (responses outside
//!   `--expect-status`), `nonok` (gRPC calls: those whose gRPC status is not
//!   OK): a count, or with `%` a share: errors of requests attempted
//!   (responses + errors), nonok of calls, the others of responses;
//! - `requests`: completed responses, a count.
//!
//! Operators: `<`, `<=`, `>`, `>=`, `==`, `!=`.

use std::fmt;

use crate::report::Report;
// The JSON report holds the outcomes; these are their names here.
pub use crate::report::{ThresholdOutcome as Outcome, ThresholdUnit as Unit};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error(
        "bad --threshold {0:?}: {1}; write METRIC OP VALUE, e.g. p99<10ms, p99.9<=20ms, mean<1ms, rps>=10000, errors<0.1%, errors==0, unexpected==0"
    )]
    Parse(String, String),
    #[error("--threshold {0:?} needs {1}")]
    Needs(String, &'static str),
}

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Latency at this quantile (0.99 for `p99`).
    Quantile(f64),
    Mean,
    Min,
    Max,
    Rps,
    Errors,
    Non2xx,
    /// `--grpc` calls whose status was not OK.
    NonOk,
    Unexpected,
    Requests,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
            Op::Eq => value == bound,
            Op::Ne => value != bound,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written (trimmed).
    pub expr: String,
    pub metric: Metric,
    pub op: Op,
    /// The bound, in `unit`.
    pub bound: f64,
    pub unit: Unit,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

fn metric(name: &str) -> Option<Metric> {
    let n = name.to_ascii_lowercase();
    Some(match n.as_str() {
        "mean" | "avg" => Metric::Mean,
        "min" => Metric::Min,
        "max" => Metric::Max,
        "rps" => Metric::Rps,
        "errors" => Metric::Errors,
        "non2xx" => Metric::Non2xx,
        "nonok" | "non_ok" => Metric::NonOk,
        "unexpected" => Metric::Unexpected,
        "requests" => Metric::Requests,
        "med" | "median" => Metric::Quantile(0.5),
        _ => {
            let p = n.strip_prefix('p')?;
            let p = p
                .strip_prefix('(')
                .and_then(|x| x.strip_suffix(')'))
                .unwrap_or(p);
            let pct: f64 = p.parse().ok().filter(|v: &f64| v.is_finite())?;
            if !(pct > 0.0 && pct <= 100.0) || p.starts_with(['+', '-']) {
                return None;
            }
            Metric::Quantile(pct / 100.0)
        }
    })
}

fn is_latency(m: Metric) -> bool {
    matches!(
        m,
        Metric::Quantile(_) | Metric::Mean | Metric::Min | Metric::Max
    )
}

/// Splits `NUMBER[UNIT]`.
fn number(s: &str) -> Option<(f64, &str)> {
    let end = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit()
                || c == '.'
                || (i > 0
                    && (c == 'e' || c == 'E')
                    && s[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
                || (i == 0 && (c == '+' || c == '-')))
        })
        .map_or(s.len(), |(i, _)| i);
    let v: f64 = s[..end].parse().ok().filter(|v: &f64| v.is_finite())?;
    Some((v, s[end..].trim()))
}

impl Threshold {
    /// Parses one expression.
    pub fn parse(expr: &str) -> Result<Threshold, ThresholdError> {
        let text = expr.trim();
        let bad = |why: &str| ThresholdError::Parse(text.to_string(), why.to_string());
        let at = text
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| bad("no comparison operator"))?;
        let (name, rest) = (text[..at].trim(), &text[at..]);
        let (op, rest) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find_map(|(t, op)| rest.strip_prefix(t).map(|r| (op, r)))
        .ok_or_else(|| bad("the operator must be one of < <= > >= == !="))?;
        if name.is_empty() {
            return Err(bad("no metric before the operator"));
        }
        let metric = metric(name).ok_or_else(|| {
            bad(&format!(
                "unknown metric {name:?} (metrics: pN such as p50, p99.9, mean, min, max, rps, errors, non2xx, nonok, unexpected, requests)"
            ))
        })?;
        let (value, unit_text) =
            number(rest.trim()).ok_or_else(|| bad("no number after the operator"))?;
        let unit = match (metric, unit_text.to_ascii_lowercase().as_str()) {
            (m, "") if is_latency(m) => Unit::Millis,
            (m, "us" | "µs") if is_latency(m) => Unit::Micros,
            (m, "ms") if is_latency(m) => Unit::Millis,
            (m, "s") if is_latency(m) => Unit::Seconds,
            (m, _) if is_latency(m) => {
                return Err(bad(&format!(
                    "unknown time unit {unit_text:?}: use us, ms or s"
                )));
            }
            (Metric::Rps, "" | "/s" | "req/s") => Unit::PerSecond,
            (Metric::Rps, "k" | "k/s") => {
                return Threshold::finish(text, metric, op, value * 1e3, Unit::PerSecond);
            }
            (Metric::Rps, "m" | "m/s") => {
                return Threshold::finish(text, metric, op, value * 1e6, Unit::PerSecond);
            }
            (Metric::Rps, _) => {
                return Err(bad(&format!(
                    "unknown rate unit {unit_text:?}: use a number, 10k or 1M"
                )));
            }
            (Metric::Errors | Metric::Non2xx | Metric::NonOk | Metric::Unexpected, "%") => {
                Unit::Percent
            }
            (
                Metric::Errors
                | Metric::Non2xx
                | Metric::NonOk
                | Metric::Unexpected
                | Metric::Requests,
                "",
            ) => Unit::Count,
            _ => {
                return Err(bad(&format!(
                    "{name} takes a count{}, not {unit_text:?}",
                    if metric == Metric::Requests {
                        ""
                    } else {
                        " or a percentage"
                    }
                )));
            }
        };
        if value < 0.0 {
            return Err(bad("the value must not be negative"));
        }
        Threshold::finish(text, metric, op, value, unit)
    }

    fn finish(
        text: &str,
        metric: Metric,
        op: Op,
        bound: f64,
        unit: Unit,
    ) -> Result<Threshold, ThresholdError> {
        if unit == Unit::Percent && bound > 100.0 {
            return Err(ThresholdError::Parse(
                text.to_string(),
                "a percentage is at most 100%".into(),
            ));
        }
        Ok(Threshold {
            expr: text.to_string(),
            metric,
            op,
            bound,
            unit,
        })
    }

    /// Parses every expression, stopping at the first bad one.
    pub fn parse_all<S: AsRef<str>>(exprs: &[S]) -> Result<Vec<Threshold>, ThresholdError> {
        exprs.iter().map(|e| Threshold::parse(e.as_ref())).collect()
    }

    /// Whether the threshold can be judged on a run with this much
    /// configured: `unexpected` needs `--expect-status`, `nonok` gRPC
    /// calls.
    pub fn check_inputs(&self, expect_status: bool, grpc: bool) -> Result<(), ThresholdError> {
        if self.metric == Metric::Unexpected && !expect_status {
            return Err(ThresholdError::Needs(
                self.expr.clone(),
                "--expect-status (nothing is unexpected without it)",
            ));
        }
        if self.metric == Metric::NonOk && !grpc {
            return Err(ThresholdError::Needs(
                self.expr.clone(),
                "--grpc, or grpc = requests in the --scenario (it counts gRPC statuses; HTTP's are non2xx)",
            ));
        }
        Ok(())
    }

    /// The metric's value in the report, in the threshold's unit; `None`
    /// when the report has nothing to measure it on.
    pub fn measure(&self, r: &Report) -> Result<Option<f64>, ThresholdError> {
        let attempted = r.requests + r.errors.requests();
        let share = |n: u64, of: u64| (of > 0).then(|| 100.0 * n as f64 / of as f64);
        let count_or_share = |n: u64, of: u64| match self.unit {
            Unit::Percent => share(n, of),
            _ => Some(n as f64),
        };
        let latency = |us: f64| (r.requests > 0).then(|| us / self.unit.micros());
        Ok(match self.metric {
            Metric::Quantile(q) => {
                let us = match r.latency_quantile(q) {
                    Some(v) => v,
                    None => {
                        return Err(ThresholdError::Needs(
                            self.expr.clone(),
                            "a report with its latency histogram (this one has only p50/p75/p90/p99/p99.9/p99.99)",
                        ));
                    }
                };
                latency(us as f64)
            }
            Metric::Mean => latency(r.latency_us.mean),
            Metric::Min => latency(r.latency_us.min as f64),
            Metric::Max => latency(r.latency_us.max as f64),
            Metric::Rps => Some(r.rps),
            Metric::Requests => Some(r.requests as f64),
            Metric::Errors => count_or_share(r.errors.total(), attempted + r.errors.connect),
            Metric::Non2xx => count_or_share(r.status.non_2xx_3xx(), r.requests),
            Metric::NonOk => match &r.grpc {
                Some(g) => {
                    // Of the calls: a scenario's plain requests are not.
                    let non_ok = g.status.iter().filter(|(n, _)| *n != "OK").map(|(_, c)| c);
                    count_or_share(non_ok.sum(), g.status.values().sum())
                }
                None => {
                    return Err(ThresholdError::Needs(
                        self.expr.clone(),
                        "a run with gRPC calls",
                    ));
                }
            },
            Metric::Unexpected => match r.unexpected {
                Some(n) => count_or_share(n, r.requests),
                None => {
                    return Err(ThresholdError::Needs(
                        self.expr.clone(),
                        "a run with --expect-status",
                    ));
                }
            },
        })
    }

    /// Judges the report.
    pub fn eval(&self, r: &Report) -> Result<Outcome, ThresholdError> {
        let value = self.measure(r)?;
        Ok(Outcome {
            expr: self.expr.clone(),
            value,
            ok: value.is_some_and(|v| self.op.holds(v, self.bound)),
            unit: self.unit,
        })
    }

    /// The bound in µs, for a latency threshold.
    pub fn latency_bound_us(&self) -> Option<f64> {
        matches!(
            self.metric,
            Metric::Quantile(_) | Metric::Mean | Metric::Min | Metric::Max
        )
        .then(|| self.bound * self.unit.micros())
    }

    /// Whether `outcome` broke this upper latency bound (`p99 < 10ms`) by
    /// more than `lag_us`. Open-loop latencies count from each request's
    /// intended time, so a generator running late adds at most its largest
    /// lag to any of them: past that, the server broke the bound alone.
    pub fn broken_beyond_lag(&self, outcome: &Outcome, lag_us: f64) -> bool {
        let (Some(bound), Some(value)) = (self.latency_bound_us(), outcome.value) else {
            return false;
        };
        matches!(self.op, Op::Lt | Op::Le)
            && !self.op.holds(value * self.unit.micros() - lag_us, bound)
    }

    /// `p99 < 10ms` with the bound as parsed (for tables).
    pub fn canonical(&self) -> String {
        format!("{} {}", self.op.text(), self.unit.format(self.bound))
    }
}

/// Evaluates every threshold.
pub fn eval_all(thresholds: &[Threshold], r: &Report) -> Result<Vec<Outcome>, ThresholdError> {
    thresholds.iter().map(|t| t.eval(r)).collect()
}

/// The pass/fail table printed after the summary.
pub fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.expr.chars().count())
        .max()
        .unwrap_or(0)
        .max(9);
    let mut s = format!(
        "Thresholds:\n    {:<width$}  {:>14}  result\n",
        "threshold", "value"
    );
    for o in outcomes {
        let value = o.value_text();
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!(
                "    {:<width$}  {:>14}  {}\n",
                o.expr,
                value,
                if o.ok { "pass" } else { "FAIL" }
            ),
        );
    }
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    if failed > 0 {
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!("  {failed} of {} thresholds failed\n", outcomes.len()),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;
    use crate::stats::Errors;

    fn p(s: &str) -> Threshold {
        Threshold::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn report() -> Report {
        Report {
            requests: 9990,
            rps: 12_000.0,
            latency_us: Latency {
                min: 40,
                mean: 800.0,
                max: 25_000,
                p50: 500,
                p75: 700,
                p90: 1500,
                p99: 4200,
                p99_9: 15_000,
                p99_99: 24_000,
                ..Latency::default()
            },
            errors: Errors {
                timeout: 10,
                ..Errors::default()
            },
            ..Report::default()
        }
    }

    #[test]
    fn parses_the_documented_forms() {
        let t = p("p99<5ms");
        assert_eq!(
            (t.metric, t.op, t.bound, t.unit),
            (Metric::Quantile(0.99), Op::Lt, 5.0, Unit::Millis)
        );
        let t = p(" p99.9 <= 20ms ");
        assert_eq!(t.expr, "p99.9 <= 20ms");
        assert!(matches!(t.metric, Metric::Quantile(q) if (q - 0.999).abs() < 1e-12));
        assert_eq!(t.op, Op::Le);
        assert_eq!(p("mean<1ms").metric, Metric::Mean);
        assert_eq!(p("avg<1ms").metric, Metric::Mean);
        assert_eq!(
            p("p(95)<200").unit,
            Unit::Millis,
            "a bare time is ms, as in k6"
        );
        assert_eq!(p("p50<250us").unit, Unit::Micros);
        assert_eq!(p("p50<250µs").unit, Unit::Micros);
        assert_eq!(p("max<2s").unit, Unit::Seconds);
        let t = p("rps>=10000");
        assert_eq!(
            (t.metric, t.op, t.bound, t.unit),
            (Metric::Rps, Op::Ge, 10_000.0, Unit::PerSecond)
        );
        assert_eq!(p("rps>2.5k").bound, 2500.0);
        assert_eq!(p("rps>1M").bound, 1e6);
        let t = p("errors<0.1%");
        assert_eq!(
            (t.metric, t.bound, t.unit),
            (Metric::Errors, 0.1, Unit::Percent)
        );
        let t = p("errors==0");
        assert_eq!((t.op, t.unit), (Op::Eq, Unit::Count));
        assert_eq!(p("unexpected==0").metric, Metric::Unexpected);
        assert_eq!(p("non2xx!=0").op, Op::Ne);
        assert_eq!(p("requests>100").metric, Metric::Requests);
        assert_eq!(p("P99<1e3us").bound, 1000.0);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (bad, why) in [
            ("p99", "no comparison operator"),
            ("p99<", "no number"),
            ("<5ms", "no metric"),
            ("p99=5ms", "operator must be"),
            ("p99=<5ms", "operator must be"),
            ("latency<5ms", "unknown metric"),
            ("p0<5ms", "unknown metric"),
            ("p101<5ms", "unknown metric"),
            ("p99<5parsecs", "unknown time unit"),
            ("p99<5%", "unknown time unit"),
            ("rps>5ms", "unknown rate unit"),
            ("errors<5ms", "takes a count or a percentage"),
            ("requests>5%", "takes a count"),
            ("errors<101%", "at most 100%"),
            ("errors<-1", "negative"),
            ("p99<fast", "no number"),
        ] {
            let e = Threshold::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("e.g. p99<10ms"), "{e}");
        }
    }

    #[test]
    fn every_operator_passes_and_fails() {
        let r = report();
        // p99 is 4.2 ms.
        for (expr, ok) in [
            ("p99<5ms", true),
            ("p99<4.2ms", false),
            ("p99<=4.2ms", true),
            ("p99<=4199us", false),
            ("p99>4ms", true),
            ("p99>4.2ms", false),
            ("p99>=4.2ms", true),
            ("p99>=5ms", false),
            ("p99==4200us", true),
            ("p99==4ms", false),
            ("p99!=4ms", true),
            ("p99!=4200us", false),
        ] {
            assert_eq!(p(expr).eval(&r).unwrap().ok, ok, "{expr}");
        }
    }

    #[test]
    fn units_convert_and_the_value_is_reported_in_the_threshold_unit() {
        let r = report();
        let o = p("p99.9<=20ms").eval(&r).unwrap();
        assert_eq!((o.value, o.ok, o.unit), (Some(15.0), true, Unit::Millis));
        assert_eq!(p("p99.9<0.01s").eval(&r).unwrap().value, Some(0.015));
        assert_eq!(p("mean<1000us").eval(&r).unwrap().value, Some(800.0));
        assert!(!p("max<20ms").eval(&r).unwrap().ok);
        assert!(p("min<=40us").eval(&r).unwrap().ok);
        assert!(p("rps>=10000").eval(&r).unwrap().ok);
        assert!(!p("rps>=12.5k").eval(&r).unwrap().ok);
        // 10 errors of 10000 attempted: 0.1 %.
        let o = p("errors<0.1%").eval(&r).unwrap();
        assert_eq!((o.value, o.ok), (Some(0.1), false));
        assert!(p("errors<=0.1%").eval(&r).unwrap().ok);
        assert!(!p("errors==0").eval(&r).unwrap().ok);
        assert!(p("errors<=10").eval(&r).unwrap().ok);
        assert!(p("requests>=9990").eval(&r).unwrap().ok);
    }

    #[test]
    fn status_metrics() {
        let mut r = report();
        let mut codes = [0; crate::stats::STATUS_CODES];
        // 2xx and 3xx succeed; a 4xx, and a code past 599, do not.
        (codes[200], codes[302], codes[404], codes[799]) = (8000, 1000, 985, 5);
        r.status = crate::report::Status::of(&codes);
        assert_eq!(p("non2xx==990").eval(&r).unwrap().value, Some(990.0));
        assert!(p("non2xx<10%").eval(&r).unwrap().ok);
        let e = p("unexpected==0").eval(&r).unwrap_err();
        assert!(e.to_string().contains("--expect-status"), "{e}");
        assert!(p("unexpected==0").check_inputs(false, false).is_err());
        assert!(p("unexpected==0").check_inputs(true, false).is_ok());
        assert!(p("nonok<1%").check_inputs(false, false).is_err());
        assert!(p("nonok<1%").check_inputs(false, true).is_ok());
        r.unexpected = Some(0);
        assert!(p("unexpected==0").eval(&r).unwrap().ok);
        r.unexpected = Some(999);
        assert!(!p("unexpected==0").eval(&r).unwrap().ok);
        assert_eq!(
            p("unexpected<=10%").eval(&r).unwrap().value,
            Some(100.0 * 999.0 / 9990.0)
        );
        // gRPC: the calls whose status is not OK, of all calls.
        assert!(p("nonok==0").eval(&r).is_err(), "not a gRPC run");
        let mut g = crate::grpc::GrpcStats::default();
        for (code, n) in [(0, 9000), (3, 900), (14, 90)] {
            for _ in 0..n {
                g.record(code, 10, true);
            }
        }
        r.grpc = Some(crate::report::GrpcReport::of(&g));
        assert_eq!(p("nonok==990").eval(&r).unwrap().value, Some(990.0));
        assert!(p("non_ok<10%").eval(&r).unwrap().ok);
        assert!(!p("nonok<5%").eval(&r).unwrap().ok);
        // A scenario's plain requests beside the calls change no share.
        r.requests *= 2;
        assert_eq!(
            p("nonok<10%").eval(&r).unwrap().value,
            Some(100.0 * 990.0 / 9990.0)
        );
    }

    #[test]
    fn no_responses_fail_latency_thresholds() {
        let r = Report::default();
        let o = p("p99<5ms").eval(&r).unwrap();
        assert_eq!((o.value, o.ok), (None, false));
        assert!(
            !p("errors<1%").eval(&r).unwrap().ok,
            "no requests: no share to judge"
        );
        assert!(p("errors==0").eval(&r).unwrap().ok);
        assert!(table(&[o]).contains("no data"));
    }

    #[test]
    fn other_percentiles_need_the_histogram() {
        let r = report();
        assert!(
            p("p99.99<=24ms").eval(&r).unwrap().ok,
            "a stored percentile"
        );
        assert!(
            p("p95<5ms").eval(&r).is_err(),
            "no histogram in this report"
        );
        let mut h = crate::histogram::new_latency_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let mut r = report();
        r.set_latency_histograms(&h, None);
        let o = p("p95<=950us").eval(&r).unwrap();
        assert_eq!((o.value, o.ok), (Some(950.0), true));
        assert!(!p("p95<950us").eval(&r).unwrap().ok);
    }

    #[test]
    fn the_table_marks_failures() {
        let r = report();
        let outs = eval_all(&[p("p99<5ms"), p("errors==0")], &r).unwrap();
        let t = table(&outs);
        assert!(t.contains("p99<5ms"), "{t}");
        assert!(t.contains("4.200ms"), "{t}");
        assert!(t.contains("pass") && t.contains("FAIL"), "{t}");
        assert!(t.contains("1 of 2 thresholds failed"), "{t}");
        let v = serde_json::to_value(&outs[0]).unwrap();
        assert_eq!(v["expr"], "p99<5ms");
        assert_eq!(v["ok"], true);
        assert_eq!(v["value"], 4.2);
        assert_eq!(v["unit"], "ms");
    }
}
