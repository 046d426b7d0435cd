//! `--server-metrics URL`: the server's own count beside ours. The target's
//! exposition is scraped right before and right after each measured
//! window; the counter's increase (summed over its series, or those a
//! label filter picks) is the server's count, and a latency histogram's
//! bucket increases give its p50/p99. Whatever goes wrong with the
//! scrapes, the load result stands: failures become one warning.

use serde::{Deserialize, Serialize};

use super::MetricsError;
use super::exposition::{Sample, Selector, histogram_quantile, parse};
use crate::url::Url;

/// The server's count (and latency) over the measured window(s), beside
/// the client's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerMetrics {
    pub url: String,
    /// The counter as given (`--server-counter`).
    pub counter: String,
    /// Set when the cross-check could not be made; nothing else is then
    /// meaningful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The counter's increase over the measured window(s).
    pub requests: f64,
    /// `requests` over the client's measured time.
    pub rps: f64,
    /// The client's completed responses, and its rate.
    pub client_requests: u64,
    pub client_rps: f64,
    /// (server − client) / client, in percent.
    pub difference_pct: f64,
    /// The difference allowed: 1 % of the client's count plus the
    /// requests that could be in flight at the window's edges.
    pub margin: f64,
    /// Whether the two counts agree within `margin`.
    pub agrees: bool,
    /// Time between the scrapes, summed over runs, s.
    pub window_s: f64,
    /// `--server-histogram`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// Quantiles from the histogram's bucket increases, in its own unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// The same in µs when the histogram's name gives its unit
    /// (`_seconds`, `_milliseconds`, `_microseconds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
}

/// What to scrape and what to take from it.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    pub url: Url,
    pub counter: Selector,
    pub histogram: Option<Selector>,
    pub timeout: std::time::Duration,
}

/// One scrape: when it was taken and what it said.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub at: std::time::Instant,
    pub result: Result<Vec<Sample>, MetricsError>,
}

/// The two edges of one measured window.
#[derive(Debug, Clone)]
pub struct Window {
    pub before: Scrape,
    pub after: Scrape,
    /// Requests that could be in flight at the edges together.
    pub in_flight: u64,
}

/// What the client measured, to set beside the server's numbers.
#[derive(Debug, Clone, Copy)]
pub struct ClientCount {
    pub requests: u64,
    pub duration_s: f64,
}

/// Histogram unit → µs factor, from the name's suffix.
fn micros_per_unit(name: &str) -> Option<f64> {
    let n = name.strip_suffix("_bucket").unwrap_or(name);
    if n.ends_with("_seconds") {
        Some(1e6)
    } else if n.ends_with("_milliseconds") || n.ends_with("_ms") {
        Some(1e3)
    } else if n.ends_with("_microseconds") || n.ends_with("_us") {
        Some(1.0)
    } else {
        None
    }
}

impl ServerCheck {
    pub fn new(
        url: &str,
        counter: &str,
        histogram: Option<&str>,
    ) -> Result<ServerCheck, MetricsError> {
        let parsed =
            Url::parse(url).map_err(|e| MetricsError::Scrape(url.to_string(), e.to_string()))?;
        Ok(ServerCheck {
            url: parsed,
            counter: Selector::parse(counter)?,
            histogram: histogram.map(Selector::parse).transpose()?,
            timeout: std::time::Duration::from_secs(2),
        })
    }

    /// Scrapes now (blocking, bounded by the timeout).
    pub fn scrape(&self) -> Scrape {
        let result = super::scrape::get(&self.url, self.timeout).and_then(|t| parse(&t));
        Scrape {
            at: std::time::Instant::now(),
            result,
        }
    }

    fn failed(&self, why: String) -> ServerMetrics {
        ServerMetrics {
            url: self.url.raw.clone(),
            counter: self.counter.to_string(),
            error: Some(why),
            histogram: self.histogram.as_ref().map(Selector::to_string),
            ..ServerMetrics::default()
        }
    }

    /// The cross-check over `windows` (one per run). Returns the numbers
    /// and the warnings to print (at most one per problem).
    pub fn evaluate(
        &self,
        windows: &[Window],
        client: ClientCount,
    ) -> (ServerMetrics, Vec<String>) {
        let mut requests = 0.0;
        let mut in_flight = 0u64;
        let mut window_s = 0.0;
        let mut buckets: Option<Vec<(f64, f64)>> = self.histogram.as_ref().map(|_| Vec::new());
        let mut hist_problem: Option<String> = None;
        for w in windows {
            let (before, after) = match (&w.before.result, &w.after.result) {
                (Ok(b), Ok(a)) => (b, a),
                (Err(e), _) | (_, Err(e)) => {
                    let m = self.failed(e.to_string());
                    return (
                        m,
                        vec![format!(
                            "WARNING: --server-metrics: {e}; the load result is kept"
                        )],
                    );
                }
            };
            // A series that first appears during the run started from 0
            // (a server creates a status code's series on its first use).
            let (b, Some(a)) = (
                self.counter.sum(before).unwrap_or(0.0),
                self.counter.sum(after),
            ) else {
                let why = format!(
                    "{} has no counter {} (pick one with --server-counter NAME or NAME{{label=\"value\"}})",
                    self.url.raw, self.counter
                );
                return (
                    self.failed(why.clone()),
                    vec![format!(
                        "WARNING: --server-metrics: {why}; the load result is kept"
                    )],
                );
            };
            if a < b {
                let why = format!(
                    "the server's {} went down ({b} → {a}) during the run: it restarted or reset its metrics",
                    self.counter
                );
                return (
                    self.failed(why.clone()),
                    vec![format!(
                        "WARNING: --server-metrics: {why}; the load result is kept"
                    )],
                );
            }
            requests += a - b;
            in_flight += w.in_flight;
            window_s += w
                .after
                .at
                .saturating_duration_since(w.before.at)
                .as_secs_f64();
            if let (Some(sel), Some(acc)) = (&self.histogram, buckets.as_mut()) {
                let after_b = sel.buckets(after);
                let before_b = sel.buckets(before).or_else(|| {
                    after_b
                        .as_ref()
                        .map(|a| a.iter().map(|&(le, _)| (le, 0.0)).collect())
                });
                match (before_b, after_b) {
                    (Some(b), Some(a)) if b.len() == a.len() => {
                        for (i, ((le, na), (_, nb))) in a.iter().zip(&b).enumerate() {
                            let d = (na - nb).max(0.0);
                            match acc.get_mut(i) {
                                Some((_, n)) => *n += d,
                                None => acc.push((*le, d)),
                            }
                        }
                    }
                    (Some(_), Some(_)) => {
                        hist_problem = Some(format!("the buckets of {sel} changed during the run"));
                    }
                    _ => {
                        hist_problem = Some(format!(
                            "{} has no histogram {sel} (no {}_bucket series)",
                            self.url.raw, sel.name
                        ));
                    }
                }
            }
        }
        let c = client.requests as f64;
        let margin = 0.01 * c + in_flight as f64;
        let diff = requests - c;
        let per_s = |n: f64| {
            if client.duration_s > 0.0 {
                n / client.duration_s
            } else {
                0.0
            }
        };
        let mut m = ServerMetrics {
            url: self.url.raw.clone(),
            counter: self.counter.to_string(),
            error: None,
            requests,
            rps: per_s(requests),
            client_requests: client.requests,
            client_rps: per_s(c),
            difference_pct: if c > 0.0 { 100.0 * diff / c } else { 0.0 },
            margin,
            agrees: diff.abs() <= margin,
            window_s,
            histogram: self.histogram.as_ref().map(Selector::to_string),
            ..ServerMetrics::default()
        };
        let mut warnings = Vec::new();
        if !m.agrees {
            warnings.push(format!(
                "WARNING: the server counted {requests:.0} requests ({}) and loadgen {}: {:+.2}%, beyond 1% plus {in_flight} in flight at the edges; {}",
                m.counter,
                client.requests,
                m.difference_pct,
                if diff > 0.0 {
                    "other clients may be loading it, or the counter counts more than these requests (filter it: NAME{label=\"value\"})"
                } else {
                    "the counter may miss some of these requests (another path or status?), or responses were lost"
                }
            ));
        }
        if let Some(why) = hist_problem {
            warnings.push(format!("WARNING: --server-histogram: {why}"));
        } else if let (Some(sel), Some(b)) = (&self.histogram, buckets) {
            // Increases of cumulative counts, summed over windows, are
            // cumulative counts of the windows together.
            m.p50 = histogram_quantile(0.5, &b);
            m.p99 = histogram_quantile(0.99, &b);
            if let Some(f) = micros_per_unit(&sel.name) {
                m.p50_us = m.p50.map(|v| v * f);
                m.p99_us = m.p99.map(|v| v * f);
            }
            if m.p50.is_none() {
                warnings.push(format!(
                    "WARNING: --server-histogram: {sel} recorded nothing during the run"
                ));
            }
        }
        (m, warnings)
    }
}

impl ServerMetrics {
    /// The lines under the summary.
    pub fn text(&self) -> String {
        use crate::units::format_time_us;
        if self.error.is_some() {
            return String::new();
        }
        let mut s = format!(
            "  Server's count ({}): {:.0} requests, {:.2} req/s; loadgen {} ({:+.2}%, {} 1% + in flight = {:.0})\n",
            self.counter,
            self.requests,
            self.rps,
            self.client_requests,
            self.difference_pct,
            if self.agrees { "within" } else { "beyond" },
            self.margin
        );
        if let (Some(h), Some(p50), Some(p99)) = (&self.histogram, self.p50, self.p99) {
            let (a, b) = match (self.p50_us, self.p99_us) {
                (Some(a), Some(b)) => (format_time_us(a), format_time_us(b)),
                _ => (format!("{p50:.4}"), format!("{p99:.4}")),
            };
            s.push_str(&format!("  Server's latency ({h}): p50 {a}, p99 {b}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn scrape(text: &str, at: Instant) -> Scrape {
        Scrape {
            at,
            result: parse(text),
        }
    }

    fn window(before: &str, after: &str, in_flight: u64) -> Window {
        let t = Instant::now();
        Window {
            before: scrape(before, t),
            after: scrape(after, t + Duration::from_secs(2)),
            in_flight,
        }
    }

    fn check(counter: &str, hist: Option<&str>) -> ServerCheck {
        ServerCheck::new("http://127.0.0.1:9/metrics", counter, hist).unwrap()
    }

    const BEFORE: &str = "c_total{code=\"200\"} 100\nc_total{code=\"404\"} 7\nh_seconds_bucket{le=\"0.001\"} 10\nh_seconds_bucket{le=\"0.002\"} 10\nh_seconds_bucket{le=\"+Inf\"} 10\n";
    const AFTER: &str = "c_total{code=\"200\"} 1100\nc_total{code=\"404\"} 17\nh_seconds_bucket{le=\"0.001\"} 510\nh_seconds_bucket{le=\"0.002\"} 1010\nh_seconds_bucket{le=\"+Inf\"} 1010\n";

    #[test]
    fn counts_rates_and_quantiles_from_the_increases() {
        let client = ClientCount {
            requests: 1005,
            duration_s: 2.0,
        };
        let (m, w) =
            check("c_total", Some("h_seconds")).evaluate(&[window(BEFORE, AFTER, 8)], client);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(m.requests, 1010.0);
        assert_eq!(m.rps, 505.0);
        assert!(m.agrees, "5 apart, margin 10.05 + 8");
        assert!((m.margin - 18.05).abs() < 1e-9);
        // 1000 new observations: 500 ≤ 1 ms, 500 in (1, 2] ms.
        assert!((m.p50_us.unwrap() - 1000.0).abs() < 1e-6);
        assert!((m.p99_us.unwrap() - 1980.0).abs() < 1e-6);
        assert!(m.text().contains("within"), "{}", m.text());
        let (m, _) =
            check("c_total{code=\"200\"}", None).evaluate(&[window(BEFORE, AFTER, 0)], client);
        assert_eq!(m.requests, 1000.0);
    }

    #[test]
    fn a_series_born_during_the_run_counts_from_zero() {
        let client = ClientCount {
            requests: 1117,
            duration_s: 2.0,
        };
        let (m, w) = check("c_total", Some("h_seconds")).evaluate(&[window("", AFTER, 8)], client);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(m.requests, 1117.0);
        assert!(m.p50_us.is_some());
    }

    #[test]
    fn disagreement_beyond_the_margin_warns() {
        let client = ClientCount {
            requests: 900,
            duration_s: 2.0,
        };
        let (m, w) = check("c_total", None).evaluate(&[window(BEFORE, AFTER, 8)], client);
        assert!(!m.agrees);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("beyond 1% plus 8 in flight"), "{}", w[0]);
    }

    #[test]
    fn windows_of_several_runs_add_up() {
        let client = ClientCount {
            requests: 2010,
            duration_s: 4.0,
        };
        let ws = [window(BEFORE, AFTER, 4), window(BEFORE, AFTER, 4)];
        let (m, w) = check("c_total", Some("h_seconds")).evaluate(&ws, client);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(m.requests, 2020.0);
        assert!((m.window_s - 4.0).abs() < 1e-6);
        assert!((m.p50_us.unwrap() - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn each_failure_is_one_warning() {
        let client = ClientCount {
            requests: 10,
            duration_s: 1.0,
        };
        for (c, before, after, says) in [
            ("nope_total", BEFORE, AFTER, "has no counter nope_total"),
            ("c_total", "garbage here\n", AFTER, "malformed"),
            ("c_total", AFTER, BEFORE, "went down"),
        ] {
            let (m, w) = check(c, None).evaluate(&[window(before, after, 0)], client);
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(w[0].contains(says), "{}", w[0]);
            assert!(w[0].contains("the load result is kept"), "{}", w[0]);
            assert!(m.error.is_some());
            assert!(m.text().is_empty());
        }
        let (_, w) = check("c_total", Some("nohist_seconds")).evaluate(
            &[window(BEFORE, AFTER, 0)],
            ClientCount {
                requests: 1010,
                duration_s: 1.0,
            },
        );
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("no histogram"), "{}", w[0]);
    }
}
