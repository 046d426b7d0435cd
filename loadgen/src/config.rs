//! A validated description of one run; everything downstream trusts it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::{Engine, RingMode};
use std::sync::Arc;

use crate::http::RequestSpec;
use crate::scenario::{Scenario, ScenarioError};
use crate::schedule::Schedule;
use crate::url::Url;

/// Upper bounds that catch typos (`-c 1000000000`) before they exhaust the
/// machine.
pub const MAX_CONNECTIONS: usize = 1_000_000;
pub const MAX_SHARDS: usize = 1024;
pub const MAX_PIPELINE: usize = 4096;

#[derive(Debug, Clone)]
pub struct Config {
    pub url: Url,
    pub addr: SocketAddr,
    pub shards: usize,
    pub connections: usize,
    /// Run length (`-d`); `None` with `requests` set.
    pub duration: Option<Duration>,
    /// Exact number of requests (`-n`).
    pub requests: Option<u64>,
    /// Open loop (`-R`/`--stages`): requests follow this schedule, and
    /// latency is measured from their intended send time.
    pub schedule: Option<Schedule>,
    /// Load without recording before the measurement starts.
    pub warmup: Duration,
    pub pipeline: usize,
    pub timeout: Duration,
    /// What to send: one request or a weighted mix, compiled.
    pub scenario: Arc<Scenario>,
    /// `--scenario FILE`, for the report.
    pub scenario_file: Option<std::path::PathBuf>,
    /// `--expect-status`: responses with other statuses count as
    /// unexpected (empty: no expectation).
    pub expect_status: Vec<u16>,
    pub max_header_bytes: usize,
    /// CPUs the shards are pinned to, round-robin; empty: no pinning.
    pub cpus: Vec<usize>,
    /// Best io_uring setup mode to try (weaker ones are tried after it);
    /// `LOADGEN_RING_MODE=coop|plain` lowers it to exercise the fallbacks.
    pub ring_best: RingMode,
    pub engine: Engine,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("-c/--connections must be between 1 and {MAX_CONNECTIONS}, got {0}")]
    Connections(usize),
    #[error("-t/--threads must be between 1 and {MAX_SHARDS}, got {0}")]
    Shards(usize),
    #[error(
        "-c/--connections ({0}) must be at least -t/--threads ({1}): each thread needs a connection"
    )]
    FewerConnectionsThanShards(usize, usize),
    #[error("--pipeline must be between 1 and {MAX_PIPELINE}, got {0}")]
    Pipeline(usize),
    #[error("-n/--requests must be at least 1")]
    Requests,
    #[error("-d/--duration must be longer than zero")]
    Duration,
    #[error("--timeout must be longer than zero")]
    Timeout,
    #[error("give either -d/--duration or -n/--requests, not both")]
    DurationAndRequests,
    #[error("--max-header-bytes must be between 256 and 16777216, got {0}")]
    MaxHeaderBytes(usize),
    #[error(
        "templated requests need a send buffer per connection: {0} MiB for -c × --pipeline × the longest request; lower -c or --pipeline, or shorten the body"
    )]
    RenderMemory(u64),
}

/// Send buffers of templated requests, in total, at most.
pub const MAX_RENDER_BYTES: u64 = 1 << 30;

impl Config {
    /// Checks the limits above; the CLI calls this after building.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(ConfigError::Connections(self.connections));
        }
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(ConfigError::Shards(self.shards));
        }
        if self.connections < self.shards {
            return Err(ConfigError::FewerConnectionsThanShards(
                self.connections,
                self.shards,
            ));
        }
        if self.pipeline == 0 || self.pipeline > MAX_PIPELINE {
            return Err(ConfigError::Pipeline(self.pipeline));
        }
        match (self.duration, self.requests) {
            (Some(_), Some(_)) => return Err(ConfigError::DurationAndRequests),
            (_, Some(0)) => return Err(ConfigError::Requests),
            (Some(d), _) if d.is_zero() => return Err(ConfigError::Duration),
            (None, None) => return Err(ConfigError::Duration),
            _ => {}
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Timeout);
        }
        if !(256..=16 << 20).contains(&self.max_header_bytes) {
            return Err(ConfigError::MaxHeaderBytes(self.max_header_bytes));
        }
        if self.scenario.fixed_bytes().is_none() {
            let bytes = (self.connections as u64)
                .saturating_mul(self.pipeline as u64)
                .saturating_mul(self.scenario.max_request_len() as u64);
            if bytes > MAX_RENDER_BYTES {
                return Err(ConfigError::RenderMemory(bytes >> 20));
            }
        }
        Ok(())
    }

    /// A config with wrk's defaults for `url` (resolved), 10 s, 10
    /// connections, one shard per allowed CPU.
    pub fn for_url(url: Url, addr: SocketAddr) -> Config {
        let request = RequestSpec::get(&url.host_header(), &url.target);
        // A URL that parsed makes a valid GET; a bad target (spaces) is
        // caught again when the CLI sets the request.
        let scenario = Scenario::fixed(&request)
            .or_else(|_| Scenario::fixed(&RequestSpec::get(&url.host_header(), "/")))
            .map(Arc::new)
            .expect("GET / is always a valid request");
        let cpus = allowed_cpus();
        Config {
            url,
            addr,
            shards: cpus.len().max(1),
            connections: 10,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            schedule: None,
            warmup: Duration::ZERO,
            pipeline: 1,
            timeout: Duration::from_secs(2),
            scenario,
            scenario_file: None,
            expect_status: Vec::new(),
            max_header_bytes: 64 * 1024,
            cpus,
            ring_best: RingMode::DeferTaskrun,
            engine: Engine::Uring,
        }
    }

    /// Sends `request`, unchanged, every time.
    pub fn set_request(&mut self, request: RequestSpec) -> Result<(), ScenarioError> {
        self.scenario = Arc::new(Scenario::fixed(&request)?);
        Ok(())
    }

    /// True when `status` is what `--expect-status` asked for (or nothing
    /// was asked for).
    pub fn expected(&self, status: u16) -> bool {
        self.expect_status.is_empty() || self.expect_status.contains(&status)
    }
}

/// The CPUs this process may run on (taskset, cgroup cpusets), in order.
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}
