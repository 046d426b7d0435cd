//! What each shard is asked to do, and what it tells the outside while it
//! runs.

use std::sync::atomic::{AtomicU64, Ordering};

use super::quic_progress::QuicProgress;
use crate::config::Config;
use crate::stats::{ErrorKind, ShardStats};

/// One shard's share of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    pub index: usize,
    /// CPU to pin to, if any.
    pub cpu: Option<usize>,
    pub connections: usize,
    /// Requests to complete (`-n`), or `None` to run until the deadline.
    pub requests: Option<u64>,
    /// How long the load runs before measurement starts: `--warmup`, or
    /// with `--start-at` the time left until the start, which the engine
    /// sets when its shard starts (the core reads no clock).
    pub warmup: std::time::Duration,
}

/// Splits connections (this part's already) and `-n` requests evenly, the
/// remainder going to the first shards. `-n` is the fleet's: this part
/// takes its share first ([`crate::fleet::Part::share`]), and with the
/// fleet numbering the shards of all parts render `{{seq}}` 0…N−1 once.
pub fn plan(cfg: &Config) -> Vec<ShardPlan> {
    let t = cfg.shards.max(1);
    let requests = cfg.part_requests();
    (0..t)
        .map(|i| ShardPlan {
            index: i,
            cpu: (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]),
            connections: cfg.connections / t + usize::from(i < cfg.connections % t),
            requests: requests.map(|n| n / t as u64 + u64::from((i as u64) < n % t as u64)),
            warmup: cfg.warmup,
        })
        .collect()
}

/// Upper bounds (µs) of the buckets live latency histograms are published
/// in (Prometheus `le`, in seconds there), plus an implicit +Inf. The
/// counts come exactly from the shard's HdrHistogram, once per second.
pub const LIVE_BUCKETS_US: [u64; 22] = [
    25, 50, 100, 200, 300, 500, 750, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 50_000,
    100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];
/// Buckets including +Inf.
pub const LIVE_BUCKETS: usize = LIVE_BUCKETS_US.len() + 1;

/// A histogram as published: per-bucket (not cumulative) counts by
/// [`LIVE_BUCKETS_US`], the sum of the values (µs) and their count.
#[derive(Debug, Default)]
pub struct LiveBuckets {
    pub counts: [AtomicU64; LIVE_BUCKETS],
    pub sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl LiveBuckets {
    /// One pass over the recorded values (a few thousand slots at most).
    pub(super) fn publish(&self, h: &hdrhistogram::Histogram<u64>) {
        let mut counts = [0u64; LIVE_BUCKETS];
        for v in h.iter_recorded() {
            let value = v.value_iterated_to();
            let i = LIVE_BUCKETS_US.partition_point(|&b| b < value);
            counts[i] += v.count_at_value();
        }
        for (slot, n) in self.counts.iter().zip(counts) {
            slot.store(n, Ordering::Relaxed);
        }
        let sum = if h.is_empty() {
            0.0
        } else {
            h.mean() * h.len() as f64
        };
        self.sum_us.store(sum as u64, Ordering::Relaxed);
        self.count.store(h.len(), Ordering::Relaxed);
    }
}

/// Live numbers one shard publishes once per second (for the progress
/// line and `--metrics-listen`); padded so shards never share a cache
/// line. Only the shard writes; readers are threads that are not shards.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct ShardProgress {
    pub responses: AtomicU64,
    pub errors: AtomicU64,
    /// p99 latency (µs) of the last completed second.
    pub last_p99_us: AtomicU64,
    pub seconds: AtomicU64,
    /// Responses by status class: index 1–5 for 1xx–5xx, 0 for others.
    pub status_class: [AtomicU64; 6],
    /// Errors by kind, in [`ErrorKind::ALL`] order.
    pub error_kinds: [AtomicU64; ErrorKind::ALL.len()],
    /// `--grpc`: calls by status code.
    pub grpc_status: [AtomicU64; crate::grpc::status::CODES],
    /// Latency (corrected in open loop) of the measured responses so far.
    pub latency: LiveBuckets,
    /// Open loop: schedule lag of the requests sent so far.
    pub lag: LiveBuckets,
    /// Connections open at the last publication.
    pub connections: AtomicU64,
    /// Responses per scenario request (empty unless the run reports by
    /// name).
    pub by_request: Box<[AtomicU64]>,
    /// `--http3`: what QUIC did so far.
    pub quic: QuicProgress,
}

impl ShardProgress {
    /// Progress with a slot for each of `named` scenario requests.
    pub fn with_requests(named: usize) -> ShardProgress {
        ShardProgress {
            by_request: (0..named).map(|_| AtomicU64::new(0)).collect(),
            ..ShardProgress::default()
        }
    }

    /// Once per second, from the shard: the stats so far. The work is a
    /// pass over the two histograms and the status table, never per
    /// request (public for its benchmark; only the shard core calls it).
    pub fn publish(&self, stats: &ShardStats) {
        self.responses.store(stats.responses, Ordering::Relaxed);
        self.errors.store(stats.errors.total(), Ordering::Relaxed);
        let p99 = stats.seconds.last().map_or(0, |s| s.p99_us);
        self.last_p99_us.store(p99, Ordering::Relaxed);
        for (class, slot) in self.status_class.iter().enumerate() {
            let n = if class == 0 {
                stats.status[..100].iter().sum::<u64>() + stats.status[600..].iter().sum::<u64>()
            } else {
                stats.status_class(class)
            };
            slot.store(n, Ordering::Relaxed);
        }
        for (slot, (_, n)) in self.error_kinds.iter().zip(stats.errors.iter()) {
            slot.store(n, Ordering::Relaxed);
        }
        if let Some(g) = stats.grpc.as_deref() {
            for (slot, &n) in self.grpc_status.iter().zip(&g.status) {
                slot.store(n, Ordering::Relaxed);
            }
        }
        self.latency.publish(&stats.latency);
        self.lag.publish(&stats.lag);
        for (slot, r) in self.by_request.iter().zip(&stats.by_request) {
            slot.store(r.responses, Ordering::Relaxed);
        }
        if let Some(q) = stats.quic.as_deref() {
            self.quic.publish(q);
        }
        self.seconds
            .store(stats.seconds.len() as u64, Ordering::Release);
    }

    /// Once per second, from the shard: its open connections.
    pub(crate) fn publish_connections(&self, open: usize) {
        self.connections.store(open as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::Url;

    #[test]
    fn published_buckets_come_from_the_histogram() {
        let mut stats = ShardStats::with_requests(2);
        for (which, status, us) in [
            (0, 200, 10),
            (0, 200, 100),
            (1, 404, 101),
            (1, 503, 20_000_000),
        ] {
            stats.record_request(which, status, us);
        }
        stats.errors.timeout = 3;
        let p = ShardProgress::with_requests(2);
        p.publish(&stats);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counts: Vec<u64> = p.latency.counts.iter().map(load).collect();
        assert_eq!(counts[0], 1, "10 µs ≤ 25 µs");
        assert_eq!(counts[2], 1, "100 µs ≤ 100 µs");
        assert_eq!(counts[3], 1, "101 µs ≤ 200 µs");
        assert_eq!(counts[LIVE_BUCKETS - 1], 1, "20 s is past the last bound");
        assert_eq!(load(&p.latency.count), 4);
        assert_eq!(
            (
                load(&p.status_class[2]),
                load(&p.status_class[4]),
                load(&p.status_class[5])
            ),
            (2, 1, 1)
        );
        assert_eq!(load(&p.error_kinds[ErrorKind::Timeout as usize]), 3);
        assert_eq!(load(&p.errors), 3);
        assert_eq!((load(&p.by_request[0]), load(&p.by_request[1])), (2, 2));
    }

    #[test]
    fn connections_and_requests_split_evenly() {
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let addr = url.resolve().unwrap();
        let mut cfg = Config::for_url(url, addr);
        cfg.shards = 3;
        cfg.connections = 10;
        cfg.duration = None;
        cfg.requests = Some(100);
        cfg.cpus = vec![4, 5];
        let p = plan(&cfg);
        let conns: Vec<usize> = p.iter().map(|s| s.connections).collect();
        let reqs: Vec<u64> = p.iter().filter_map(|s| s.requests).collect();
        let cpus: Vec<Option<usize>> = p.iter().map(|s| s.cpu).collect();
        assert_eq!(conns, [4, 3, 3]);
        assert_eq!(reqs, [34, 33, 33]);
        assert_eq!(cpus, [Some(4), Some(5), Some(4)]);
    }

    /// `-n` is the fleet's: every part's shards together send exactly N,
    /// and with the fleet numbering their `{{seq}}` values are 0…N−1.
    #[test]
    fn a_fleets_requests_add_up_to_n_and_number_densely() {
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let addr = url.resolve().unwrap();
        let n = 3001u64;
        let mut seqs = Vec::new();
        for (k, shards) in [(1u32, 2usize), (2, 1), (3, 3)] {
            let mut cfg = Config::for_url(url.clone(), addr);
            cfg.part = crate::fleet::Part { index: k, of: 3 };
            cfg.shards = shards;
            cfg.duration = None;
            cfg.requests = Some(n);
            for p in plan(&cfg) {
                let st = cfg.part.stream(p.index, cfg.shards);
                seqs.extend((0..p.requests.unwrap()).map(|j| st.offset + st.stride * j));
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..n).collect::<Vec<_>>());
    }
}
