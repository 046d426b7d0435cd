//! A description of one run, and the rules that turn what a user asked for
//! into it. A leaf: it reads no file, resolves no name, probes no kernel
//! and knows no engine; the command layer does those and hands the results
//! in as [`RunInputs`]. The engine takes only a [`Validated`] config.

use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::fleet::Part;
use crate::http::RequestSpec;
use crate::http::h2::Settings as H2Settings;
use crate::peer::Peer;
use crate::scenario::Scenario;
use crate::schedule::Schedule;
use crate::tls::TlsSettings;
use crate::url::Url;

/// Upper bounds that catch typos (`-c 1000000000`) before they exhaust the
/// machine.
pub const MAX_CONNECTIONS: usize = 1_000_000;
pub const MAX_SHARDS: usize = 1024;
pub const MAX_PIPELINE: usize = 4096;
/// HTTP/2 streams per connection (`--streams`); servers allow 100–1000.
pub const MAX_STREAMS: u32 = 4096;

/// Which I/O engine drives the connections (named in reports as users
/// see it: `io_uring`, `glommio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Engine {
    /// Our io_uring loop (the default).
    #[serde(rename = "io_uring")]
    Uring,
    /// glommio, over the same shard core (portable fallback, cross-check).
    #[serde(rename = "glommio")]
    Glommio,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Uring => "io_uring",
            Engine::Glommio => "glommio",
        }
    }
}

/// The ring modes are the io_uring module's; the config names the best
/// one to try.
pub use crate::sys::uring::RingMode;

/// `--batch-wait`'s default: long enough to batch the responses of a busy
/// shard, and a small part of any latency it is allowed to touch (the
/// wait is also kept under 1/32 of the recent latency).
pub const BATCH_WAIT_DEFAULT: Duration = Duration::from_micros(100);

#[derive(Debug, Clone)]
pub struct Config {
    pub url: Url,
    /// Where connections go: the URL's address, or `--unix-socket`.
    pub peer: Peer,
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
    /// `--batch-wait`: the longest an io_uring enter waits for more
    /// responses (see `Core::batch_wait`); zero: never.
    pub batch_wait: Duration,
    /// What to send: one request or a weighted mix, compiled.
    pub scenario: Arc<Scenario>,
    /// `--scenario FILE`, for the report.
    pub scenario_file: Option<PathBuf>,
    /// `--expect-status`: responses with other statuses count as
    /// unexpected (empty: no expectation).
    pub expect_status: Vec<u16>,
    pub max_header_bytes: usize,
    /// CPUs the shards are pinned to, round-robin; empty: no pinning.
    pub cpus: Vec<usize>,
    /// Best io_uring setup mode to try (weaker ones are tried after it).
    pub ring_best: RingMode,
    pub engine: Engine,
    /// `https://`: the TLS client config.
    pub tls: Option<TlsSettings>,
    /// Keep connections open between requests (`--no-keepalive` clears it:
    /// every request asks for `Connection: close`).
    pub keepalive: bool,
    /// `--part K/N`: this process's place in a fleet that runs the same
    /// command (1/1 alone). `connections` is this part's share of
    /// `fleet_connections`; `requests` and `schedule` stay the fleet's
    /// totals, split by `shard::plan` and the fleet numbering.
    pub part: Part,
    /// `-c` as given: the fleet's connections.
    pub fleet_connections: usize,
    /// `--start-at`: the measured window starts at this wall-clock time,
    /// after a warm-up that ends there.
    pub start_at: Option<SystemTime>,
    /// `--bind`: source addresses, round-robin over the connections.
    pub bind: Vec<IpAddr>,
    /// `--http2`: streams per connection, windows, header list limit.
    pub http2: Option<H2Settings>,
    /// `--http3`: HTTP/3 over QUIC, this many requests per connection at
    /// once (`--streams`).
    pub http3: Option<u32>,
    /// `--grpc`: the requests are unary calls of this method (over HTTP/2).
    pub grpc: Option<crate::grpc::GrpcRun>,
    /// `--request-log`: a line per completed request.
    pub request_log: Option<RequestLogSpec>,
}

/// `--request-log FILE` and `--request-log-sample N`. The command layer
/// creates the file with its header; every shard appends to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLogSpec {
    pub path: PathBuf,
    /// Keep one line in `sample` (1: every line).
    pub sample: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("-c/--connections must be between 1 and {MAX_CONNECTIONS}, got {0}")]
    Connections(u64),
    #[error("-t/--threads must be between 1 and {MAX_SHARDS}, got {0}")]
    Shards(usize),
    #[error(
        "-c/--connections ({0}) must be at least -t/--threads ({1}): each thread needs a connection"
    )]
    FewerConnectionsThanShards(usize, usize),
    #[error("--pipeline must be between 1 and {MAX_PIPELINE}, got {0}")]
    Pipeline(usize),
    #[error("--streams must be between 1 and {MAX_STREAMS}, got {0}")]
    Streams(u32),
    #[error(
        "--pipeline is HTTP/1.1's; with --http2 give concurrent requests per connection with --streams"
    )]
    PipelineWithHttp2,
    #[error(
        "--no-keepalive is HTTP/1.1's (Connection: close); HTTP/2 keeps its connections: drop one of them"
    )]
    NoKeepaliveWithHttp2,
    #[error("--grpc calls go over HTTP/2: this config has no HTTP/2 settings")]
    GrpcWithoutHttp2,
    #[error("--http3 needs an https:// URL (QUIC is always encrypted): use https://HOST:PORT/")]
    Http3WithoutTls,
    #[error("--http3 and --http2 each choose the protocol: give one of them")]
    Http3WithHttp2,
    #[error(
        "gRPC calls go over HTTP/2 only (gRPC over HTTP/3 is not supported): drop --http3, or the scenario's grpc = requests"
    )]
    GrpcWithHttp3,
    #[error(
        "--pipeline is HTTP/1.1's; with --http3 give concurrent requests per connection with --streams"
    )]
    PipelineWithHttp3,
    #[error(
        "--no-keepalive is HTTP/1.1's (Connection: close); HTTP/3 keeps its connections: drop one of them"
    )]
    NoKeepaliveWithHttp3,
    #[error(
        "--http3 sends UDP datagrams to the URL's address, and --unix-socket connects to a stream socket: drop one of them"
    )]
    Http3Unix,
    #[error(
        "--http3 needs the io_uring engine: glommio's UDP sockets send one datagram per call and carry no GSO/GRO control messages (use --engine uring)"
    )]
    Http3Glommio,
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
        "-c × --pipeline requests in flight need {mib} MiB ({per_request} bytes each{}), more than {} MiB: lower -c or --pipeline{}",
        if *templated { ", the rendered request included" } else { "" },
        MAX_IN_FLIGHT_BYTES >> 20,
        if *templated { ", or shorten the body" } else { "" }
    )]
    InFlightMemory {
        mib: u64,
        per_request: u64,
        templated: bool,
    },
    #[error("--no-keepalive sends one request per connection, so --pipeline must be 1")]
    PipelineWithoutKeepalive,
    #[error("{0} applies to https:// URLs only")]
    TlsFlagOnHttp(&'static str),
    #[error("an https:// URL needs TLS settings, and an http:// one none")]
    TlsMismatch,
    #[error(
        "-c/--connections {0} is the fleet's total with --part K/{1}: it must be at least {1}, one per part"
    )]
    FleetConnections(u64, u32),
    #[error(
        "-n/--requests {0} is the fleet's total with --part K/{1}: it must be at least {1}, one per part"
    )]
    FleetRequests(u64, u32),
    #[error(
        "--bind needs the io_uring engine (glommio's connect cannot bind a source address): use --engine uring"
    )]
    BindGlommio,
    #[error("--bind {0} is {1}, but the target {2} is not: give addresses of the target's family")]
    BindFamily(IpAddr, &'static str, SocketAddr),
    #[error(
        "--bind sets TCP source addresses, and --unix-socket connects to no address: drop one of them"
    )]
    BindUnix,
}

/// What the shards keep for the requests that may be in flight (every
/// connection's every pipeline slot), in total, at most. The shards
/// allocate it when they start, so it is checked before.
pub const MAX_IN_FLIGHT_BYTES: u64 = 1 << 30;

/// What a shard keeps for each request a connection may have in flight,
/// whatever is sent: its send, intended and first-byte times and which
/// request it was (`shard::slots`), and its place in open loop's retry
/// queue. Templated requests add a send buffer of the longest request.
pub const IN_FLIGHT_SLOT_BYTES: u64 = 8 + 8 + 8 + 2 + 8;

/// Open or closed loop, as asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Each connection sends its next batch when the last is answered.
    Closed,
    /// `-R`: a constant rate.
    Rate(Schedule),
    /// `--stages`: steps and ramps; their total length is the default
    /// duration.
    Stages(Schedule),
}

/// What a user asked for, with every file already read, every name
/// resolved and every machine fact looked up: the command layer's output.
#[derive(Debug, Clone)]
pub struct RunInputs {
    pub url: Url,
    pub peer: Peer,
    pub scenario: Scenario,
    pub scenario_file: Option<PathBuf>,
    pub connections: u64,
    /// `-t`; `None`: one shard per allowed CPU, at most one per connection.
    pub threads: Option<usize>,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub load: Load,
    pub warmup: Duration,
    pub pipeline: usize,
    pub timeout: Duration,
    pub batch_wait: Duration,
    pub max_header_bytes: usize,
    /// Pin shards to CPUs (`--no-pin` clears it).
    pub pin: bool,
    /// The CPUs this process may run on.
    pub allowed_cpus: Vec<usize>,
    pub expect_status: Vec<u16>,
    pub engine: Engine,
    pub ring_best: RingMode,
    /// Built by the command layer for `https://` URLs.
    pub tls: Option<TlsSettings>,
    pub keepalive: bool,
    pub part: Part,
    pub start_at: Option<SystemTime>,
    pub bind: Vec<IpAddr>,
    pub http2: Option<H2Settings>,
    pub http3: Option<u32>,
    pub grpc: Option<crate::grpc::GrpcRun>,
    pub request_log: Option<RequestLogSpec>,
}

/// A config that passed [`Config::validate`]; the only kind the engine
/// takes, so nothing downstream re-checks (or divides by) its fields.
#[derive(Debug, Clone)]
pub struct Validated(Config);

impl Deref for Validated {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0
    }
}

impl Validated {
    pub fn into_inner(self) -> Config {
        self.0
    }
}

impl Config {
    /// Applies the rules between flags: default shards, pinning, the
    /// schedule, the default duration. Then validates.
    pub fn from_inputs(i: RunInputs) -> Result<Validated, ConfigError> {
        let fleet_connections = usize::try_from(i.connections)
            .ok()
            .filter(|&c| c <= MAX_CONNECTIONS)
            .ok_or(ConfigError::Connections(i.connections))?;
        if i.part.is_fleet() {
            if i.connections < i.part.of as u64 {
                return Err(ConfigError::FleetConnections(i.connections, i.part.of));
            }
            if let Some(n) = i.requests.filter(|&n| n > 0 && n < i.part.of as u64) {
                return Err(ConfigError::FleetRequests(n, i.part.of));
            }
        }
        // -c is the fleet's; this part opens its share.
        let connections = i.part.share(fleet_connections as u64) as usize;
        let cpus = i.allowed_cpus.len().max(1);
        // wrk requires -c ≥ -t; with the default we just use fewer shards.
        let shards = i.threads.unwrap_or_else(|| cpus.min(connections.max(1)));
        // More shards than CPUs would pin two to one CPU; let the scheduler
        // place them instead.
        let pinned = i.pin && shards <= cpus;
        let (schedule, stage_time) = match i.load {
            Load::Closed => (None, None),
            Load::Rate(s) => (Some(s), None),
            Load::Stages(s) => {
                let t = s.duration();
                (Some(s), Some(t))
            }
        };
        let duration = match (i.duration, i.requests, stage_time) {
            (Some(d), _, _) => Some(d),
            (None, Some(_), _) => None,
            (None, None, Some(t)) => Some(t),
            (None, None, None) => Some(Duration::from_secs(10)),
        };
        let mut url = i.url;
        if i.scenario_file.is_some() {
            // The report names the host; the paths are in the file.
            url.raw = format!("{}://{}/", url.scheme(), url.host_header());
        }
        Config {
            url,
            peer: i.peer,
            shards,
            connections,
            duration,
            requests: i.requests,
            schedule,
            warmup: i.warmup,
            pipeline: i.pipeline,
            timeout: i.timeout,
            batch_wait: i.batch_wait,
            scenario: Arc::new(i.scenario),
            scenario_file: i.scenario_file,
            expect_status: i.expect_status,
            max_header_bytes: i.max_header_bytes,
            cpus: if pinned { i.allowed_cpus } else { Vec::new() },
            ring_best: i.ring_best,
            engine: i.engine,
            tls: i.tls,
            keepalive: i.keepalive,
            part: i.part,
            fleet_connections,
            start_at: i.start_at,
            bind: i.bind,
            http2: i.http2,
            http3: i.http3,
            grpc: i.grpc,
            request_log: i.request_log,
        }
        .validated()
    }

    /// What `--http3` cannot be combined with, each refused with its own
    /// reason.
    fn validate_http3(&self, streams: u32) -> Result<(), ConfigError> {
        if self.calls_grpc() {
            return Err(ConfigError::GrpcWithHttp3);
        }
        if self.http2.is_some() {
            return Err(ConfigError::Http3WithHttp2);
        }
        if !self.url.tls {
            return Err(ConfigError::Http3WithoutTls);
        }
        if streams == 0 || streams > MAX_STREAMS {
            return Err(ConfigError::Streams(streams));
        }
        if self.pipeline > 1 {
            return Err(ConfigError::PipelineWithHttp3);
        }
        if !self.keepalive {
            return Err(ConfigError::NoKeepaliveWithHttp3);
        }
        if matches!(self.peer, Peer::Unix(_)) {
            return Err(ConfigError::Http3Unix);
        }
        if self.engine == Engine::Glommio {
            return Err(ConfigError::Http3Glommio);
        }
        Ok(())
    }

    /// Checks the limits above.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(ConfigError::Connections(self.connections as u64));
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
        if self.calls_grpc() && self.http2.is_none() {
            return Err(ConfigError::GrpcWithoutHttp2);
        }
        if let Some(h2) = self.http2 {
            if h2.streams == 0 || h2.streams > MAX_STREAMS {
                return Err(ConfigError::Streams(h2.streams));
            }
            if self.pipeline > 1 {
                return Err(ConfigError::PipelineWithHttp2);
            }
            if !self.keepalive {
                return Err(ConfigError::NoKeepaliveWithHttp2);
            }
        }
        if let Some(streams) = self.http3 {
            self.validate_http3(streams)?;
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
        if !self.keepalive && self.pipeline > 1 {
            return Err(ConfigError::PipelineWithoutKeepalive);
        }
        if self.url.tls != self.tls.is_some() {
            return Err(ConfigError::TlsMismatch);
        }
        if !(256..=16 << 20).contains(&self.max_header_bytes) {
            return Err(ConfigError::MaxHeaderBytes(self.max_header_bytes));
        }
        if !self.bind.is_empty() && self.engine == Engine::Glommio {
            return Err(ConfigError::BindGlommio);
        }
        match &self.peer {
            Peer::Unix(_) if !self.bind.is_empty() => return Err(ConfigError::BindUnix),
            Peer::Unix(_) => {}
            Peer::Tcp(addr) => {
                if let Some(&a) = self.bind.iter().find(|a| a.is_ipv4() != addr.is_ipv4()) {
                    let family = if a.is_ipv4() { "IPv4" } else { "IPv6" };
                    return Err(ConfigError::BindFamily(a, family, *addr));
                }
            }
        }
        let templated = self.scenario.fixed_bytes().is_none();
        let per_request = IN_FLIGHT_SLOT_BYTES
            + if templated {
                self.scenario.max_request_len() as u64
            } else {
                0
            };
        let bytes = (self.connections as u64)
            .saturating_mul(self.pipeline as u64)
            .saturating_mul(per_request);
        if bytes > MAX_IN_FLIGHT_BYTES {
            return Err(ConfigError::InFlightMemory {
                mib: bytes >> 20,
                per_request,
                templated,
            });
        }
        Ok(())
    }

    /// Validates and seals the config.
    pub fn validated(self) -> Result<Validated, ConfigError> {
        self.validate()?;
        Ok(Validated(self))
    }

    /// A config with wrk's defaults for `url`, connecting to `peer` (its
    /// resolved address, or a Unix socket): 10 s, 10 connections, one
    /// unpinned shard, the io_uring engine.
    pub fn for_url(url: Url, peer: impl Into<Peer>) -> Config {
        // A URL that parsed has a target without spaces or controls, so
        // its GET is a valid request.
        let scenario = Scenario::fixed(&RequestSpec::get(&url.host_header(), &url.target))
            .or_else(|_| Scenario::fixed(&RequestSpec::get(&url.host_header(), "/")))
            .map(Arc::new)
            .expect("GET / is always a valid request");
        Config {
            url,
            peer: peer.into(),
            shards: 1,
            connections: 10,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            schedule: None,
            warmup: Duration::ZERO,
            pipeline: 1,
            timeout: Duration::from_secs(2),
            batch_wait: BATCH_WAIT_DEFAULT,
            scenario,
            scenario_file: None,
            expect_status: Vec::new(),
            max_header_bytes: 64 * 1024,
            cpus: Vec::new(),
            ring_best: RingMode::DeferTaskrun,
            engine: Engine::Uring,
            tls: None,
            keepalive: true,
            part: Part::default(),
            fleet_connections: 10,
            start_at: None,
            bind: Vec::new(),
            http2: None,
            http3: None,
            grpc: None,
            request_log: None,
        }
    }

    /// This part's share of `-n` (the whole of it alone).
    pub fn part_requests(&self) -> Option<u64> {
        self.requests.map(|n| self.part.share(n))
    }

    /// The seed of this part's generators (see [`Part::seed`]).
    pub fn part_seed(&self) -> u64 {
        self.part.seed(self.scenario.seed)
    }

    /// True when some requests are gRPC calls (`--grpc`, or a scenario
    /// request with `grpc = …`).
    pub fn calls_grpc(&self) -> bool {
        self.grpc.is_some() || self.scenario.requests.iter().any(|r| r.call.is_some())
    }

    /// True when `--expect-status` was given (HTTP statuses or, with
    /// `--grpc`, gRPC ones).
    pub fn expects_status(&self) -> bool {
        !self.expect_status.is_empty() || self.grpc.as_ref().is_some_and(|g| !g.expect.is_empty())
    }

    /// True when `status` is what `--expect-status` asked for (or nothing
    /// was asked for).
    pub fn expected(&self, status: u16) -> bool {
        self.expect_status.is_empty() || self.expect_status.contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> RunInputs {
        let url = Url::parse("http://127.0.0.1:9/x").unwrap();
        let addr = url.resolve().unwrap();
        let scenario = Scenario::fixed(&RequestSpec::get(&url.host_header(), &url.target)).unwrap();
        RunInputs {
            url,
            peer: addr.into(),
            scenario,
            scenario_file: None,
            connections: 10,
            threads: None,
            duration: None,
            requests: None,
            load: Load::Closed,
            warmup: Duration::ZERO,
            pipeline: 1,
            timeout: Duration::from_secs(2),
            batch_wait: BATCH_WAIT_DEFAULT,
            max_header_bytes: 64 * 1024,
            pin: true,
            allowed_cpus: vec![0, 1],
            expect_status: Vec::new(),
            engine: Engine::Uring,
            ring_best: RingMode::DeferTaskrun,
            tls: None,
            keepalive: true,
            part: Part::default(),
            start_at: None,
            bind: Vec::new(),
            http2: None,
            http3: None,
            grpc: None,
            request_log: None,
        }
    }

    #[test]
    fn default_shards_follow_cpus_and_never_exceed_connections() {
        let cfg = Config::from_inputs(inputs()).unwrap();
        assert_eq!((cfg.shards, cfg.cpus.clone()), (2, vec![0, 1]));
        let cfg = Config::from_inputs(RunInputs {
            connections: 1,
            ..inputs()
        })
        .unwrap();
        assert_eq!(cfg.shards, 1);
    }

    #[test]
    fn more_shards_than_cpus_are_not_pinned() {
        let cfg = Config::from_inputs(RunInputs {
            threads: Some(4),
            ..inputs()
        })
        .unwrap();
        assert!(cfg.cpus.is_empty());
        let cfg = Config::from_inputs(RunInputs {
            pin: false,
            ..inputs()
        })
        .unwrap();
        assert!(cfg.cpus.is_empty());
    }

    #[test]
    fn stages_set_the_duration_unless_given() {
        let stages = Schedule::parse("2s:10,3s:10->20").unwrap();
        let cfg = Config::from_inputs(RunInputs {
            load: Load::Stages(stages.clone()),
            ..inputs()
        })
        .unwrap();
        assert_eq!(cfg.duration, Some(Duration::from_secs(5)));
        let cfg = Config::from_inputs(RunInputs {
            load: Load::Stages(stages),
            duration: Some(Duration::from_secs(1)),
            ..inputs()
        })
        .unwrap();
        assert_eq!(cfg.duration, Some(Duration::from_secs(1)));
        let cfg = Config::from_inputs(RunInputs {
            load: Load::Rate(Schedule::constant(5.0)),
            ..inputs()
        })
        .unwrap();
        assert_eq!(cfg.duration, Some(Duration::from_secs(10)));
    }

    #[test]
    fn limits_are_checked() {
        let bad = |i: RunInputs| Config::from_inputs(i).unwrap_err();
        assert_eq!(
            bad(RunInputs {
                connections: 0,
                ..inputs()
            }),
            ConfigError::Connections(0)
        );
        assert_eq!(
            bad(RunInputs {
                connections: u64::MAX,
                ..inputs()
            }),
            ConfigError::Connections(u64::MAX)
        );
        assert_eq!(
            bad(RunInputs {
                threads: Some(0),
                ..inputs()
            }),
            ConfigError::Shards(0)
        );
        assert_eq!(
            bad(RunInputs {
                connections: 2,
                threads: Some(4),
                ..inputs()
            }),
            ConfigError::FewerConnectionsThanShards(2, 4)
        );
        assert_eq!(
            bad(RunInputs {
                duration: Some(Duration::from_secs(1)),
                requests: Some(5),
                ..inputs()
            }),
            ConfigError::DurationAndRequests
        );
    }

    /// Connections × pipeline depth is refused before the shards allocate
    /// it, fixed requests as templated ones, by one rule.
    #[test]
    fn in_flight_memory_is_bounded_for_every_kind_of_request() {
        let with = |connections: u64, pipeline: usize, scenario: Scenario| {
            Config::from_inputs(RunInputs {
                connections,
                pipeline,
                scenario,
                ..inputs()
            })
        };
        let fixed = || inputs().scenario;
        let e = with(400_000, 4096, fixed()).unwrap_err();
        let want = 400_000 * 4096 * IN_FLIGHT_SLOT_BYTES;
        assert_eq!(
            e,
            ConfigError::InFlightMemory {
                mib: want >> 20,
                per_request: IN_FLIGHT_SLOT_BYTES,
                templated: false
            }
        );
        let text = e.to_string();
        assert!(text.contains("lower -c or --pipeline"), "{text}");
        assert!(!text.contains("body"), "{text}");
        // Just within the bound, and just beyond it.
        let most = MAX_IN_FLIGHT_BYTES / IN_FLIGHT_SLOT_BYTES / 4096;
        assert!(with(most, 4096, fixed()).is_ok());
        assert!(with(most + 1, 4096, fixed()).is_err());
        // A templated request adds its send buffer to each slot.
        let spec = RequestSpec {
            body: format!("{{{{seq}}}}{}", "x".repeat(4000)).into_bytes(),
            ..RequestSpec::get("127.0.0.1:9", "/")
        };
        let templated = Scenario::fixed(&spec).unwrap();
        assert!(templated.fixed_bytes().is_none());
        let per = IN_FLIGHT_SLOT_BYTES + templated.max_request_len() as u64;
        let e = with(1000, 1000, templated).unwrap_err();
        assert!(
            matches!(e, ConfigError::InFlightMemory { per_request, templated: true, .. } if per_request == per),
            "{e}"
        );
        assert!(e.to_string().contains("shorten the body"), "{e}");
    }

    #[test]
    fn a_part_takes_its_share_of_the_fleets_connections() {
        let part = |k| Part { index: k, of: 3 };
        let conns: Vec<usize> = (1..=3)
            .map(|k| {
                Config::from_inputs(RunInputs {
                    connections: 10,
                    part: part(k),
                    ..inputs()
                })
                .unwrap()
                .connections
            })
            .collect();
        assert_eq!(conns, [4, 3, 3]);
        let cfg = Config::from_inputs(RunInputs {
            connections: 10,
            requests: Some(3000),
            part: part(2),
            ..inputs()
        })
        .unwrap();
        assert_eq!((cfg.fleet_connections, cfg.requests), (10, Some(3000)));
        assert_eq!(cfg.part_requests(), Some(1000));
        let bad = |i: RunInputs| Config::from_inputs(i).unwrap_err();
        assert_eq!(
            bad(RunInputs {
                connections: 2,
                part: part(1),
                ..inputs()
            }),
            ConfigError::FleetConnections(2, 3)
        );
        assert_eq!(
            bad(RunInputs {
                requests: Some(2),
                part: part(1),
                ..inputs()
            }),
            ConfigError::FleetRequests(2, 3)
        );
    }

    #[test]
    fn bind_needs_uring_and_the_targets_family() {
        let bad = |i: RunInputs| Config::from_inputs(i).unwrap_err();
        let v4: IpAddr = "127.0.0.2".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(
            bad(RunInputs {
                bind: vec![v4],
                engine: Engine::Glommio,
                ..inputs()
            }),
            ConfigError::BindGlommio
        );
        let e = bad(RunInputs {
            bind: vec![v4, v6],
            ..inputs()
        });
        assert!(
            matches!(e, ConfigError::BindFamily(a, "IPv6", _) if a == v6),
            "{e}"
        );
        assert!(
            Config::from_inputs(RunInputs {
                bind: vec![v4],
                ..inputs()
            })
            .is_ok()
        );
        assert_eq!(
            bad(RunInputs {
                bind: vec![v4],
                peer: Peer::Unix("/tmp/x.sock".into()),
                ..inputs()
            }),
            ConfigError::BindUnix
        );
    }
}
