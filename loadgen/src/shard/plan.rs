//! What each shard is asked to do, and what it tells the outside while it
//! runs.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Config;
use crate::stats::ShardStats;

/// One shard's share of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    pub index: usize,
    /// CPU to pin to, if any.
    pub cpu: Option<usize>,
    pub connections: usize,
    /// Requests to complete (`-n`), or `None` to run until the deadline.
    pub requests: Option<u64>,
}

/// Splits connections (and `-n` requests) evenly, the remainder going to
/// the first shards.
pub fn plan(cfg: &Config) -> Vec<ShardPlan> {
    let t = cfg.shards.max(1);
    (0..t)
        .map(|i| ShardPlan {
            index: i,
            cpu: (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]),
            connections: cfg.connections / t + usize::from(i < cfg.connections % t),
            requests: cfg
                .requests
                .map(|n| n / t as u64 + u64::from((i as u64) < n % t as u64)),
        })
        .collect()
}

/// Live numbers one shard publishes once per second (for the progress
/// line); padded so shards never share a cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct ShardProgress {
    pub responses: AtomicU64,
    pub errors: AtomicU64,
    /// p99 latency (µs) of the last completed second.
    pub last_p99_us: AtomicU64,
    pub seconds: AtomicU64,
}

impl ShardProgress {
    pub(crate) fn publish(&self, stats: &ShardStats) {
        self.responses.store(stats.responses, Ordering::Relaxed);
        self.errors.store(stats.errors.total(), Ordering::Relaxed);
        let p99 = stats.seconds.last().map_or(0, |s| s.p99_us);
        self.last_p99_us.store(p99, Ordering::Relaxed);
        self.seconds
            .store(stats.seconds.len() as u64, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::Url;

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
}
