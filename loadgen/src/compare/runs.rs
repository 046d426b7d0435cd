//! `loadgen compare BASE.json NEW.json`: did the change make it faster?
//!
//! Samples are the runs (`--runs K`, when both sides have at least 3),
//! otherwise the per-second series. For throughput and p50/p90/p99/p99.9
//! latency: medians, relative change, a 95 % bootstrap interval for it, a
//! p-value (Welch's t-test when both sides pass Shapiro–Wilk at α, else
//! Mann–Whitney U), and a verdict. Scenario runs (`--scenario`) compared
//! run by run also get throughput, p50 and p99 per request name. Reports
//! with an off-CPU profile on both sides (`--off-cpu`) also compare the
//! target's off-CPU time per request and its run-queue p99.

use serde::Serialize;

use crate::report::{
    Baseline, ComparisonRow, Distribution, Latency, MetricUnit as Unit, Report, SampleKind,
    SecondReport, Test, Verdict,
};
use crate::sample::{
    bootstrap_delta_pct, cv, mann_whitney_min_p, mann_whitney_u, median, shapiro_wilk, welch_t,
};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(
        "{0} has no samples for {1}: it needs `runs` (from --runs) or a per-second `series` (loadgen ≥ this version)"
    )]
    NoSamples(String, &'static str),
}

struct Metric {
    name: &'static str,
    unit: Unit,
    /// The metric of a run, or of one request of a run.
    of_run: fn(rps: f64, latency: &Latency) -> f64,
    /// The metric of one second of the series.
    of_second: fn(&SecondReport) -> f64,
    higher_is_better: bool,
    /// Also compared per scenario request.
    per_request: bool,
}

const METRICS: [Metric; 5] = [
    Metric {
        name: "throughput",
        unit: Unit::PerSecond,
        of_run: |rps, _| rps,
        of_second: |s| s.rate,
        higher_is_better: true,
        per_request: true,
    },
    Metric {
        name: "p50 latency",
        unit: Unit::Micros,
        of_run: |_, l| l.p50 as f64,
        of_second: |s| s.p50_us as f64,
        higher_is_better: false,
        per_request: true,
    },
    Metric {
        name: "p90 latency",
        unit: Unit::Micros,
        of_run: |_, l| l.p90 as f64,
        of_second: |s| s.p90_us as f64,
        higher_is_better: false,
        per_request: false,
    },
    Metric {
        name: "p99 latency",
        unit: Unit::Micros,
        of_run: |_, l| l.p99 as f64,
        of_second: |s| s.p99_us as f64,
        higher_is_better: false,
        per_request: true,
    },
    Metric {
        name: "p99.9 latency",
        unit: Unit::Micros,
        of_run: |_, l| l.p99_9 as f64,
        of_second: |s| s.p99_9_us as f64,
        higher_is_better: false,
        per_request: false,
    },
];

/// A figure of the target's profile (`--off-cpu`), compared when both
/// reports have it: per run from each run's profile, per second from the
/// series.
struct TargetMetric {
    name: &'static str,
    of_run: fn(&Report) -> Option<f64>,
    of_second: fn(&SecondReport) -> Option<f64>,
}

const TARGET_METRICS: [TargetMetric; 2] = [
    TargetMetric {
        // Per request, not raw µs: a faster run serves more requests and
        // waits more in total.
        name: "off-CPU per request",
        of_run: |r| {
            let total = match r.profile.as_ref().and_then(|p| p.off_cpu.as_ref()) {
                Some(o) => o.total_us,
                None => {
                    let ms: Vec<f64> = r
                        .series
                        .iter()
                        .filter_map(|s| s.target_off_cpu_ms)
                        .collect();
                    if ms.is_empty() {
                        return None;
                    }
                    ms.iter().sum::<f64>() * 1000.0
                }
            };
            (r.requests > 0).then(|| total / r.requests as f64)
        },
        of_second: |s| {
            let ms = s.target_off_cpu_ms?;
            (s.requests > 0).then(|| ms * 1000.0 / s.requests as f64)
        },
    },
    TargetMetric {
        name: "run-queue p99",
        of_run: |r| {
            let p = r.profile.as_ref()?.sched.as_ref()?;
            (p.runq_waits > 0).then_some(p.runq_latency_us.p99 as f64)
        },
        of_second: |s| s.target_runq_p99_us.map(|v| v as f64),
    },
];

fn target_samples(doc: &Report, m: &TargetMetric, kind: SampleKind) -> Vec<f64> {
    match kind {
        SampleKind::Runs => {
            let v: Vec<f64> = doc
                .runs
                .iter()
                .filter_map(|r| (m.of_run)(&r.report))
                .collect();
            // All runs or none: a run without it would bias the median.
            if v.len() == doc.runs.len() {
                v
            } else {
                Vec::new()
            }
        }
        SampleKind::Seconds => {
            let rows = &doc.series;
            let full = rows.len().saturating_sub(usize::from(rows.len() > 1));
            rows[..full].iter().filter_map(m.of_second).collect()
        }
    }
}

/// What a row compares.
struct What {
    name: &'static str,
    unit: Unit,
    higher_is_better: bool,
}

impl From<&Metric> for What {
    fn from(m: &Metric) -> What {
        What {
            name: m.name,
            unit: m.unit,
            higher_is_better: m.higher_is_better,
        }
    }
}

fn samples(doc: &Report, m: &Metric, kind: SampleKind) -> Vec<f64> {
    match kind {
        SampleKind::Runs => doc
            .runs
            .iter()
            .map(|r| (m.of_run)(r.report.rps, &r.report.latency_us))
            .collect(),
        SampleKind::Seconds => {
            let rows = &doc.series;
            // A last partial second has too few requests to be a fair sample.
            let full = rows.len().saturating_sub(usize::from(rows.len() > 1));
            rows[..full]
                .iter()
                .filter(|r| r.requests > 0)
                .map(m.of_second)
                .collect()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Comparison {
    pub kind: SampleKind,
    pub rows: Vec<ComparisonRow>,
    pub warnings: Vec<String>,
    pub alpha: f64,
}

/// The comparison as `loadgen compare --json` prints it.
#[derive(Debug, Serialize)]
pub struct ComparisonReport<'a> {
    pub samples: SampleKind,
    pub alpha: f64,
    pub ci: &'static str,
    pub metrics: &'a [ComparisonRow],
    pub warnings: &'a [String],
}

/// Runs when both sides have at least 3, else seconds.
fn sample_kind(base: &Report, new: &Report) -> SampleKind {
    if base.runs.len() >= 3 && new.runs.len() >= 3 {
        SampleKind::Runs
    } else {
        SampleKind::Seconds
    }
}

/// The samples each total metric is compared on, base and new, as
/// [`compare`] takes them (for plotting the two distributions).
pub fn distributions(base: &Report, new: &Report) -> Vec<Distribution> {
    let kind = sample_kind(base, new);
    METRICS
        .iter()
        .map(|m| Distribution {
            metric: m.name.to_string(),
            unit: m.unit,
            base: samples(base, m, kind),
            new: samples(new, m, kind),
        })
        .collect()
}

/// `--baseline`'s comparison of `new` with `base` (read from `path`) as
/// the report holds it; a profile's part is the caller's to add.
pub fn baseline(path: &str, base: &Report, new: &Report, c: &Comparison) -> Baseline {
    Baseline {
        path: path.to_string(),
        samples: c.kind,
        alpha: c.alpha,
        metrics: c.rows.clone(),
        warnings: c.warnings.clone(),
        distributions: distributions(base, new),
        ..Baseline::default()
    }
}

pub fn compare(base: &Report, new: &Report, alpha: f64) -> Result<Comparison, CompareError> {
    let kind = sample_kind(base, new);
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    for m in &METRICS {
        let a = samples(base, m, kind);
        let b = samples(new, m, kind);
        if a.is_empty() {
            return Err(CompareError::NoSamples("BASE".into(), m.name));
        }
        if b.is_empty() {
            return Err(CompareError::NoSamples("NEW".into(), m.name));
        }
        rows.push(row(&m.into(), None, &a, &b, alpha, &mut warnings));
    }
    for m in &TARGET_METRICS {
        let a = target_samples(base, m, kind);
        let b = target_samples(new, m, kind);
        if !a.is_empty() && !b.is_empty() {
            let what = What {
                name: m.name,
                unit: Unit::Micros,
                higher_is_better: false,
            };
            rows.push(row(&what, None, &a, &b, alpha, &mut warnings));
        }
    }
    if kind == SampleKind::Runs {
        for name in request_names(base) {
            for m in METRICS.iter().filter(|m| m.per_request) {
                let a = request_samples(base, &name, m);
                let b = request_samples(new, &name, m);
                // A name missing on one side, or a request never answered
                // in some run, has nothing to compare.
                if a.len() == base.runs.len() && b.len() == new.runs.len() && !b.is_empty() {
                    rows.push(row(
                        &m.into(),
                        Some(name.clone()),
                        &a,
                        &b,
                        alpha,
                        &mut warnings,
                    ));
                }
            }
        }
    }
    let n = rows.first().map_or(0, |r| r.n_base.min(r.n_new));
    if n < 5 {
        warnings.insert(
            0,
            format!(
                "only {n} samples on one side: tests have little power; use --runs 5 or longer runs"
            ),
        );
    }
    Ok(Comparison {
        kind,
        rows,
        warnings,
        alpha,
    })
}

/// Scenario request names of a report's first run, in file order.
fn request_names(doc: &Report) -> Vec<String> {
    doc.runs.first().map_or_else(Vec::new, |r| {
        r.report.by_request.iter().map(|q| q.name.clone()).collect()
    })
}

/// One sample per run of metric `m` for request `name`; runs where it got
/// no response are left out.
fn request_samples(doc: &Report, name: &str, m: &Metric) -> Vec<f64> {
    doc.runs
        .iter()
        .filter_map(|r| {
            let q = r.report.by_request.iter().find(|q| q.name == name)?;
            (q.requests > 0).then(|| (m.of_run)(q.rps, &q.latency_us))
        })
        .collect()
}

/// Compares the samples `a` (base) and `b` (new) of one metric.
fn row(
    m: &What,
    request: Option<String>,
    a: &[f64],
    b: &[f64],
    alpha: f64,
    warnings: &mut Vec<String>,
) -> ComparisonRow {
    let (ma, mb) = (median(a), median(b));
    let delta = if ma != 0.0 {
        100.0 * (mb - ma) / ma
    } else {
        0.0
    };
    let normal = |x: &[f64]| shapiro_wilk(x).is_some_and(|(_, p)| p > alpha);
    let both_normal = normal(a) && normal(b);
    // With 3 samples a side the rank test cannot reach α = 0.05 whatever
    // the data: then Welch's t, which can, and a warning that it assumed
    // normal samples.
    let rank_can_reject = mann_whitney_min_p(a.len(), b.len()) < alpha;
    let (test, p) = if a.len() >= 2 && b.len() >= 2 && (both_normal || !rank_can_reject) {
        if !both_normal {
            let label = match &request {
                Some(name) => format!("{name}: {}", m.name),
                None => m.name.to_string(),
            };
            warnings.push(format!(
                "{label}: {} and {} samples are too few for a rank test to reach α = {alpha}, and they do not look normal; Welch's t was used, which assumes they are: more runs make the verdict robust",
                a.len(),
                b.len()
            ));
        }
        (Test::Welch, welch_t(a, b).2)
    } else {
        (Test::MannWhitney, mann_whitney_u(a, b).1)
    };
    let verdict = if p < alpha && delta != 0.0 {
        if (delta > 0.0) == m.higher_is_better {
            Verdict::Faster
        } else {
            Verdict::Slower
        }
    } else {
        Verdict::NoDifference
    };
    let row = ComparisonRow {
        metric: m.name.to_string(),
        request,
        unit: m.unit,
        base_median: ma,
        new_median: mb,
        delta_pct: delta,
        ci95_pct: bootstrap_delta_pct(a, b, 2000, 0x5eed),
        p_value: p,
        test,
        verdict,
        n_base: a.len(),
        n_new: b.len(),
    };
    for (side, x) in [("BASE", a), ("NEW", b)] {
        let c = cv(x);
        if c > 0.05 {
            warnings.push(format!(
                "{} of {side} varies a lot (coefficient of variation {:.1}% > 5%): the machine was noisy or the run unstable; more runs narrow the interval",
                row.label(),
                100.0 * c
            ));
        }
    }
    row
}

impl Comparison {
    pub fn text(&self) -> String {
        let what = match self.kind {
            SampleKind::Runs => self.kind.describe().to_string(),
            SampleKind::Seconds => format!("{} (no --runs on both sides)", self.kind.describe()),
        };
        let mut s = format!(
            "Samples: {what}; 95% CI: bootstrap of the median's relative change; alpha {}\n",
            self.alpha
        );
        let width = self
            .rows
            .iter()
            .map(|r| r.label().chars().count())
            .max()
            .unwrap_or(0)
            .max(14);
        s.push_str(&format!(
            "{:<width$} {:>12} {:>12} {:>9} {:>22} {:>10}  {:<15} {}\n",
            "metric", "base", "new", "delta", "95% CI", "p-value", "test", "verdict"
        ));
        for r in &self.rows {
            let unit = |v: f64| r.unit.format(v);
            s.push_str(&format!(
                "{:<width$} {:>12} {:>12} {:>+8.2}% {:>22} {:>10.4}  {:<15} {}\n",
                r.label(),
                unit(r.base_median),
                unit(r.new_median),
                r.delta_pct,
                format!("[{:+.2}%, {:+.2}%]", r.ci95_pct.0, r.ci95_pct.1),
                r.p_value,
                r.test.text(),
                r.verdict.text()
            ));
        }
        for w in &self.warnings {
            s.push_str(&format!("WARNING: {w}\n"));
        }
        s
    }

    pub fn report(&self) -> ComparisonReport<'_> {
        ComparisonReport {
            samples: self.kind,
            alpha: self.alpha,
            ci: "bootstrap, 2000 resamples, percentile",
            metrics: &self.rows,
            warnings: &self.warnings,
        }
    }

    /// True when a metric got significantly slower by at least `pct` %.
    pub fn slower_than(&self, pct: f64) -> bool {
        self.rows
            .iter()
            .any(|r| r.verdict == Verdict::Slower && r.delta_pct.abs() >= pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn typed(v: Value) -> Report {
        serde_json::from_value(v).unwrap()
    }

    /// A report with `k` runs whose throughput and latencies are drawn
    /// around `rps` and `lat_us` with relative noise `noise`.
    fn report(k: usize, rps: f64, lat_us: f64, noise: f64, seed: u64) -> Value {
        let mut state = seed;
        let mut gauss = move || {
            // Sum of 12 uniforms − 6: close enough to a standard normal.
            (0..12)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 11) as f64 / (1u64 << 53) as f64
                })
                .sum::<f64>()
                - 6.0
        };
        let runs: Vec<Value> = (0..k)
            .map(|_| {
                let f = 1.0 + noise * gauss();
                let l = lat_us * (1.0 + noise * gauss());
                let l = |k: f64| (l * k).round() as u64;
                json!({"rps": rps * f, "latency_us": {"p50": l(1.0), "p90": l(1.5), "p99": l(3.0), "p99_9": l(5.0)}})
            })
            .collect();
        json!({ "runs": runs })
    }

    #[test]
    fn scenario_requests_are_compared_by_name() {
        let with_requests = |heavy_p99: f64, seed: u64, names: &[&str]| {
            let mut doc = report(5, 1000.0, 100.0, 0.01, seed);
            let mut state = seed;
            for r in doc["runs"].as_array_mut().unwrap() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let jitter = 1.0 + 0.01 * ((state >> 40) as f64 / (1u64 << 24) as f64 - 0.5);
                let by: Vec<Value> = names
                    .iter()
                    .map(|&n| {
                        let p99 = if n == "heavy" { heavy_p99 } else { 50.0 } * jitter;
                        json!({"name": n, "requests": 10, "rps": 500.0 * jitter,
                               "latency_us": {"p50": (p99 / 2.0) as u64, "p99": p99 as u64}})
                    })
                    .collect();
                r["by_request"] = Value::Array(by);
            }
            doc
        };
        let base = with_requests(1000.0, 1, &["light", "heavy", "gone"]);
        let new = with_requests(2000.0, 2, &["light", "heavy"]);
        let c = compare(&typed(base), &typed(new), 0.05).unwrap();
        let find = |label: &str| c.rows.iter().find(|r| r.label() == label);
        assert_eq!(find("heavy: p99 latency").unwrap().verdict, Verdict::Slower);
        assert!(find("heavy: p99 latency").unwrap().delta_pct > 90.0);
        assert_eq!(
            find("light: p99 latency").unwrap().verdict,
            Verdict::NoDifference
        );
        assert!(
            find("gone: throughput").is_none(),
            "a name missing in NEW is skipped"
        );
        assert_eq!(c.rows.iter().filter(|r| r.request.is_some()).count(), 6);
        assert!(c.text().contains("heavy: p99 latency"));
        let v = serde_json::to_value(c.report()).unwrap();
        assert_eq!(v["metrics"][5]["request"], "light");
        assert_eq!(v["metrics"][5]["verdict"], "no significant difference");
        assert_eq!(v["metrics"][0]["unit"], "req/s");
        assert_eq!(v["samples"], "runs");
        // Totals keep their rows first, without a request.
        assert!(v["metrics"][0].get("request").is_none());
        assert!(c.slower_than(50.0));
    }

    #[test]
    fn same_distribution_is_mostly_no_difference() {
        let mut significant = 0;
        for seed in 0..40 {
            let c = compare(
                &typed(report(10, 1000.0, 500.0, 0.02, seed)),
                &typed(report(10, 1000.0, 500.0, 0.02, seed + 1000)),
                0.05,
            )
            .unwrap();
            if c.rows[0].verdict != Verdict::NoDifference {
                significant += 1;
            }
        }
        // α = 0.05: about 2 of 40 by chance; 6 would be very unlikely.
        assert!(
            significant <= 6,
            "{significant} of 40 seeds called a difference"
        );
    }

    #[test]
    fn ten_percent_slower_is_detected_with_the_right_sign_and_interval() {
        let c = compare(
            &typed(report(10, 1000.0, 500.0, 0.01, 7)),
            &typed(report(10, 900.0, 550.0, 0.01, 8)),
            0.05,
        )
        .unwrap();
        let t = &c.rows[0];
        assert_eq!(t.verdict, Verdict::Slower);
        assert!(t.delta_pct < -5.0, "{t:?}");
        // The interval covers the true change of −10 %.
        assert!(t.ci95_pct.0 <= -10.0 && -10.0 <= t.ci95_pct.1, "{t:?}");
        let p99 = &c.rows[3];
        assert_eq!(p99.verdict, Verdict::Slower);
        assert!(p99.delta_pct > 5.0);
        assert!(c.slower_than(5.0));
        assert!(!c.slower_than(50.0));
        assert_eq!(c.kind, SampleKind::Runs);
    }

    #[test]
    fn three_runs_a_side_can_still_differ() {
        // Not normal-looking (two alike, one apart), and too few for the
        // rank test to reach 5 %: Welch's t decides, with a warning.
        let what = What {
            name: "latency p99",
            unit: Unit::Micros,
            higher_is_better: false,
        };
        let mut warnings = Vec::new();
        let r = row(
            &what,
            None,
            &[1000.0, 1001.0, 2000.0],
            &[3000.0, 3001.0, 4000.0],
            0.05,
            &mut warnings,
        );
        assert_eq!(r.test, Test::Welch);
        assert_eq!(r.verdict, Verdict::Slower, "p = {}", r.p_value);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("too few for a rank test")),
            "{warnings:?}"
        );
        // With enough samples the rank test stays in charge.
        let a: Vec<f64> = (0..10).map(|i| 1000.0 + f64::from(i * i * i)).collect();
        let b: Vec<f64> = a.iter().map(|v| v + 5000.0).collect();
        let mut warnings = Vec::new();
        let r = row(&what, None, &a, &b, 0.05, &mut warnings);
        assert_eq!(r.test, Test::MannWhitney);
        assert_eq!(r.verdict, Verdict::Slower);
    }

    #[test]
    fn warns_on_noise_and_few_samples() {
        let c = compare(
            &typed(report(3, 1000.0, 500.0, 0.2, 1)),
            &typed(report(3, 1000.0, 500.0, 0.2, 2)),
            0.05,
        )
        .unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("coefficient of variation"))
        );
        assert!(c.warnings.iter().any(|w| w.contains("only 3 samples")));
    }

    #[test]
    fn off_cpu_per_request_and_run_queue_are_compared_when_both_have_them() {
        let with_profile = |off_us: f64, p99: u64, seed: u64| {
            let mut doc = report(5, 1000.0, 500.0, 0.01, seed);
            let mut state = seed;
            for r in doc["runs"].as_array_mut().unwrap() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let j = 1.0 + 0.02 * ((state >> 40) as f64 / (1u64 << 24) as f64 - 0.5);
                r["requests"] = json!(10_000);
                r["profile"] = json!({
                    "off_cpu": {"total_us": off_us * 10_000.0 * j},
                    "sched": {"runq_latency_us": {"p99": (p99 as f64 * j) as u64}, "runq_waits": 100},
                });
            }
            typed(doc)
        };
        let c = compare(
            &with_profile(50.0, 100, 1),
            &with_profile(100.0, 400, 2),
            0.05,
        )
        .unwrap();
        let off = c
            .rows
            .iter()
            .find(|r| r.metric == "off-CPU per request")
            .unwrap();
        assert_eq!(off.verdict, Verdict::Slower);
        assert!((off.delta_pct - 100.0).abs() < 5.0, "{off:?}");
        assert!((off.base_median - 50.0).abs() < 2.0);
        let rq = c.rows.iter().find(|r| r.metric == "run-queue p99").unwrap();
        assert_eq!(rq.verdict, Verdict::Slower);
        assert!(c.text().contains("off-CPU per request"));
        // Without a profile on one side there is nothing to compare.
        let plain = typed(report(5, 1000.0, 500.0, 0.01, 3));
        let c = compare(&plain, &with_profile(50.0, 100, 4), 0.05).unwrap();
        assert!(c.rows.iter().all(|r| r.metric != "off-CPU per request"));
        // Per second, from the series.
        let series = |ms: f64| -> Report {
            let rows: Vec<Value> = (0..12)
                .map(|i| json!({"requests": 1000, "rate": 1000.0, "p50_us": 10, "p90_us": 20, "p99_us": 30, "p99_9_us": 40,
                                "target_off_cpu_ms": ms + (i % 3) as f64, "target_runq_p99_us": 50}))
                .collect();
            typed(json!({ "series": rows }))
        };
        let c = compare(&series(100.0), &series(50.0), 0.05).unwrap();
        let off = c
            .rows
            .iter()
            .find(|r| r.metric == "off-CPU per request")
            .unwrap();
        assert_eq!(off.verdict, Verdict::Faster);
        assert!(
            (off.base_median - 101.0).abs() < 1e-9,
            "µs per request: {off:?}"
        );
    }

    #[test]
    fn falls_back_to_per_second_samples() {
        let series = |rate: f64| -> Report {
            let rows: Vec<Value> = (0..12)
                .map(|i| json!({"requests": 100, "rate": rate + (i % 3) as f64, "p50_us": 10, "p90_us": 20, "p99_us": 30, "p99_9_us": 40}))
                .collect();
            typed(json!({ "series": rows }))
        };
        let c = compare(&series(1000.0), &series(1100.0), 0.05).unwrap();
        assert_eq!(c.kind, SampleKind::Seconds);
        assert_eq!(
            c.rows[0].n_base, 11,
            "the last (partial) second is left out"
        );
        assert_eq!(c.rows[0].verdict, Verdict::Faster);
        assert!(compare(&Report::default(), &series(1.0), 0.05).is_err());
    }
}
