//! The built-in target's own Prometheus metrics at `/metrics`: a request
//! counter by status code (`http_requests_total{code}`) and a latency
//! histogram (`http_request_duration_seconds`, from a request's parse to
//! its response being queued), the names most servers use, so
//! `loadgen --server-metrics` cross-checks against it with its defaults.
//! Each loop thread counts into its own atomics; a scrape sums them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::live::FixedHistogram;

/// Upper bounds of the latency buckets, s (plus +Inf): fine enough for a
/// server that answers in tens of microseconds.
pub const BUCKETS_S: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKETS: usize = BUCKETS_S.len() + 1;
const CODES: usize = 1000;

/// One loop thread's counts.
#[derive(Debug)]
pub struct ThreadMetrics {
    codes: Box<[AtomicU64]>,
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for ThreadMetrics {
    fn default() -> Self {
        ThreadMetrics {
            codes: (0..CODES).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl ThreadMetrics {
    /// Counts one response of `status` that took `elapsed`.
    #[inline]
    pub fn record(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self.codes.get(status as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let s = elapsed.as_secs_f64();
        let i = BUCKETS_S.partition_point(|&b| b < s);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The exposition (OpenMetrics text) of all threads' counts.
pub fn render<'a>(threads: impl Iterator<Item = &'a ThreadMetrics>) -> String {
    let mut codes = vec![0u64; CODES];
    let mut buckets = [0u64; BUCKETS];
    let mut sum_ns = 0u64;
    for t in threads {
        for (a, c) in codes.iter_mut().zip(t.codes.iter()) {
            *a += c.load(Ordering::Relaxed);
        }
        for (a, c) in buckets.iter_mut().zip(&t.buckets) {
            *a += c.load(Ordering::Relaxed);
        }
        sum_ns += t.sum_ns.load(Ordering::Relaxed);
    }
    let mut reg = Registry::default();
    let requests = Family::<Vec<(String, String)>, Counter>::default();
    for (code, &n) in codes.iter().enumerate().filter(|(_, n)| **n > 0) {
        requests
            .get_or_create(&vec![("code".to_string(), code.to_string())])
            .inc_by(n);
    }
    reg.register(
        "http_requests",
        "Requests answered, by status code (not counting /metrics and /__stats)",
        requests,
    );
    reg.register_with_unit(
        "http_request_duration",
        "From a request's parse to its response being queued",
        Unit::Seconds,
        FixedHistogram {
            sum: sum_ns as f64 / 1e9,
            count: buckets.iter().sum(),
            buckets: BUCKETS_S
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(buckets)
                .collect(),
        },
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::{Selector, histogram_quantile, parse};

    #[test]
    fn counts_by_code_and_latency() {
        let (a, b) = (ThreadMetrics::default(), ThreadMetrics::default());
        a.record(200, Duration::from_micros(20));
        a.record(200, Duration::from_micros(40));
        b.record(404, Duration::from_millis(3));
        let samples = parse(&render([&a, &b].into_iter())).unwrap();
        let sum = |s: &str| Selector::parse(s).unwrap().sum(&samples);
        assert_eq!(sum("http_requests_total"), Some(3.0));
        assert_eq!(sum("http_requests_total{code=\"404\"}"), Some(1.0));
        assert_eq!(sum("http_request_duration_seconds_count"), Some(3.0));
        let buckets = Selector::parse("http_request_duration_seconds")
            .unwrap()
            .buckets(&samples)
            .unwrap();
        let p50 = histogram_quantile(0.5, &buckets).unwrap();
        assert!(p50 > 0.000_025 && p50 <= 0.000_05, "{p50}");
    }
}
