//! Command line: wrk's flags first (`-t -c -d -H --latency --timeout`),
//! then ours. Only the flags' syntax is checked here; `setup.rs` turns them
//! into a run.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use loadgen::fleet::PartSpec;
use loadgen::profile::UnwindMode;
use loadgen::threshold::Threshold;
use loadgen::units::{parse_count, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "HTTP/1.1 load generator: shard-per-core io_uring, exact latency, wrk-compatible flags",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  loadgen -t2 -c64 -d10s --latency http://127.0.0.1:8080/\n  loadgen -n 10000 --pipeline 16 --json out.json http://127.0.0.1:8080/\n  loadgen -c64 -d30s -H 'X-Id: {{uuid}}' 'http://127.0.0.1:8080/items/{{rand:1:100000}}'\n  loadgen --scenario mix.toml --feed users=users.csv --jwt-secret \"$KEY\" --expect-status 2xx\n  loadgen target --listen 127.0.0.1:8080\n\nTemplates: {{seq}} {{rand:MIN:MAX}} {{uuid}} {{now_ms}} {{env:NAME}} {{feed:NAME[.COL]}} {{jwt}} (see README)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the built-in HTTP/1.1 target server.
    Target(TargetArgs),
    /// Start the built-in target, load it for 10 s on a CPU-burning endpoint,
    /// profile it, print the summary and write flamegraph.svg.
    Demo(DemoArgs),
    /// Compare two JSON reports: is NEW significantly faster or slower than BASE?
    Compare(CompareArgs),
    /// Differential flamegraph of two folded profiles (BASE → NEW).
    DiffFlame(DiffFlameArgs),
    /// Read a saved JSON report: draw it as an HTML page, judge it with thresholds.
    Report(ReportArgs),
    /// The highest open-loop rate at which every SLO holds: short steps at
    /// rising rates, a bisection, and a confirmation run.
    FindMax(Box<FindMaxArgs>),
    /// Merge the JSON reports of a fleet's parts (--part K/N) into one
    /// exact report: counters summed, histograms added, seconds aligned.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The parts' reports (loadgen --part K/N --json FILE); '-' reads a
    /// stream of reports from stdin (e.g. kubectl logs), lines between them
    /// skipped.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// Write the merged JSON report to FILE ('-' for stdout; the text then
    /// goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the merged report as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the latency distribution.
    #[arg(long)]
    pub latency: bool,
    /// Judge the fleet: e.g. 'p99<10ms' (repeatable); any failure exits 5.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = threshold)]
    pub thresholds: Vec<Threshold>,
}

#[derive(Debug, Args)]
pub struct FindMaxArgs {
    /// What must hold at a rate, e.g. 'p99<10ms', 'errors<0.1%' (repeatable;
    /// the --threshold expressions).
    #[arg(long = "slo", value_name = "EXPR", value_parser = threshold, required = true)]
    pub slos: Vec<Threshold>,
    /// Length of each measured step.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub step: Duration,
    /// Warm-up before each step (not measured).
    #[arg(long = "step-warmup", default_value = "1s", value_parser = duration)]
    pub step_warmup: Duration,
    /// Stop bisecting when the highest passing and the lowest failing rates
    /// are this close, in percent.
    #[arg(long, default_value_t = 5.0)]
    pub precision: f64,
    /// First rate to try (default: half of a closed-loop step's throughput).
    #[arg(long, value_name = "RPS", value_parser = count)]
    pub start_rate: Option<u64>,
    /// At most this many steps.
    #[arg(long, default_value_t = 20)]
    pub max_steps: usize,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A report written by loadgen --json.
    pub report: PathBuf,
    /// Write the report as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Judge the report: e.g. 'p99<10ms' (repeatable); any failure exits 5.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = threshold)]
    pub thresholds: Vec<Threshold>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Report of the baseline run (loadgen --json).
    pub base: PathBuf,
    /// Report of the new run.
    pub new: PathBuf,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when a metric is significantly slower by at least PCT %.
    #[arg(long, value_name = "PCT")]
    pub fail_if_slower: Option<f64>,
    /// Significance level.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
}

#[derive(Debug, Args)]
pub struct DiffFlameArgs {
    /// Folded stacks of the baseline (loadgen --folded, or any flamegraph.pl input).
    pub base: PathBuf,
    /// Folded stacks of the new profile.
    pub new: PathBuf,
    /// Where to write the differential flamegraph.
    #[arg(short = 'o', long, default_value = "diff.svg")]
    pub output: PathBuf,
    /// JSON report of the baseline run, to normalize samples by requests served.
    #[arg(long)]
    pub base_report: Option<PathBuf>,
    /// JSON report of the new run.
    #[arg(long)]
    pub new_report: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Load duration.
    #[arg(short = 'd', long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,
    /// Where to write the flamegraph.
    #[arg(long, default_value = "flamegraph.svg")]
    pub flamegraph: PathBuf,
    /// Sampling frequency per CPU, Hz.
    #[arg(long, default_value_t = 99, value_parser = profile_freq())]
    pub profile_freq: u64,
    /// How to unwind the target's stacks: auto, dwarf or fp.
    #[arg(long, default_value = "auto", value_parser = unwind_mode)]
    pub unwind: UnwindMode,
    /// User stack copied per sample for DWARF unwinding (4k..64k); without
    /// it, 16k, raised per process whose stacks are deeper.
    #[arg(long, value_parser = stack_bytes)]
    pub stack_bytes: Option<u32>,
    /// Endpoint of the built-in target to load.
    #[arg(long, default_value = "/cpu/2000")]
    pub path: String,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Event-loop threads (default: the CPUs this process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stall the whole server periodically (with --stall-for): e.g. 5s.
    #[arg(long, value_parser = duration, requires = "stall_for")]
    pub stall_every: Option<Duration>,
    /// How long each stall lasts, from the start of each period: e.g. 1s.
    #[arg(long, value_parser = duration, requires = "stall_every")]
    pub stall_for: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Target URL, http://HOST[:PORT]/PATH
    pub url: Option<String>,
    /// Total connections to keep open (k/M suffixes allowed).
    #[arg(short = 'c', long = "connections", default_value = "10", value_parser = count)]
    pub connections: u64,
    /// Test duration, e.g. 10s, 2m (default 10s unless -n is given).
    #[arg(short = 'd', long = "duration", value_parser = duration)]
    pub duration: Option<Duration>,
    /// Send exactly N requests, then stop.
    #[arg(short = 'n', long = "requests", value_parser = count)]
    pub requests: Option<u64>,
    /// Open loop: total requests per second, on a fixed schedule; latency is
    /// measured from each request's intended send time (no coordinated
    /// omission). k/M suffixes allowed.
    #[arg(short = 'R', long = "rate", conflicts_with = "stages")]
    pub rate: Option<String>,
    /// Open loop with a rate schedule: steps and linear ramps, e.g.
    /// "10s:1000,30s:1000->5000,20s:5000". Sets the duration unless -d is given.
    #[arg(long)]
    pub stages: Option<String>,
    /// Load for this long before measuring (closed and open loop).
    #[arg(long, value_parser = duration)]
    pub warmup: Option<Duration>,
    /// Write an HdrHistogram interval log (one histogram per second, µs).
    #[arg(long = "hdr-log")]
    pub hdr_log: Option<PathBuf>,
    /// Write the latency percentile distribution (.hgrm, values in ms).
    #[arg(long)]
    pub percentiles: Option<PathBuf>,
    /// Profile the process listening on the URL's port (with --http3, the
    /// one whose UDP socket is bound to it), or on --unix-socket (this
    /// host), during the measured window: eBPF stack sampling, no change to
    /// the target.
    #[arg(long)]
    pub profile: bool,
    /// Profile this process instead (repeatable; implies --profile).
    #[arg(long = "profile-pid")]
    pub profile_pids: Vec<u32>,
    /// Samples per second per CPU.
    #[arg(long, default_value_t = 99, value_parser = profile_freq())]
    pub profile_freq: u64,
    /// How to unwind the target's stacks: auto (frame pointers for Go and
    /// for code without CFI, else DWARF CFI), dwarf, or fp.
    #[arg(long, default_value = "auto", value_parser = unwind_mode)]
    pub unwind: UnwindMode,
    /// User stack copied per sample for DWARF unwinding: a multiple of 4k
    /// from 4k to 64k. Without it, 16k, raised for a process the first
    /// time one of its stacks is deeper (up to 64k, within the ring
    /// budget).
    #[arg(long, value_parser = stack_bytes)]
    pub stack_bytes: Option<u32>,
    /// Keep interpreters' native frames: no Python functions in place of
    /// CPython's `_PyEval_EvalFrameDefault` (they are there by default).
    #[arg(long)]
    pub no_interpreter_frames: bool,
    /// Write the profile as a flamegraph (SVG).
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
    /// Write the profile as folded stacks (flamegraph.pl / inferno input).
    #[arg(long)]
    pub folded: Option<PathBuf>,
    /// Off-CPU profile too (implies --profile): where the target's threads
    /// waited and for how long (blocked or queued), what woke them, and
    /// their run-queue latency.
    #[arg(long)]
    pub off_cpu: bool,
    /// Write the off-CPU profile as a flamegraph (SVG, blue, widths in µs;
    /// implies --off-cpu).
    #[arg(long, value_name = "FILE")]
    pub off_cpu_flamegraph: Option<PathBuf>,
    /// Write the off-CPU profile as folded stacks, counts in µs, the state
    /// ([S], [D], [R]) as the leaf frame (implies --off-cpu).
    #[arg(long, value_name = "FILE")]
    pub off_cpu_folded: Option<PathBuf>,
    /// Drop off-CPU waits shorter than this.
    #[arg(long, value_name = "DUR", default_value = "1us", value_parser = duration)]
    pub off_cpu_min: Duration,
    /// Stacks the off-CPU profiler takes per second at most; beyond it,
    /// switch-outs are sampled 1 in N and their time scaled by N (default:
    /// 250 with DWARF unwinding, 500 with frame pointers).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub off_cpu_stacks: Option<u32>,
    /// I/O engine: uring (our io_uring loop), glommio, or auto (uring when the
    /// kernel has DEFER_TASKRUN, else glommio).
    #[arg(long, value_enum, default_value_t = EngineFlag::Auto)]
    pub engine: EngineFlag,
    /// Repeat the load K times (each run is one sample for `loadgen compare`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Pause between runs.
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub pause: Duration,
    /// Compare this run with a baseline report (printed after the summary).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// With --profile and --baseline: write the differential flamegraph here.
    #[arg(long)]
    pub diff_flamegraph: Option<PathBuf>,
    /// With --baseline: exit with status 3 when significantly slower by PCT %.
    #[arg(long, value_name = "PCT")]
    pub fail_if_slower: Option<f64>,
    /// Shards (threads), one per CPU (default: the CPUs this process may use).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Add a request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request method (default GET).
    #[arg(short = 'm', long = "method")]
    pub method: Option<String>,
    /// Request body.
    #[arg(short = 'b', long = "body", conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the request body from a file.
    #[arg(long = "body-file")]
    pub body_file: Option<PathBuf>,
    /// Unary gRPC calls of SERVICE/METHOD (e.g. helloworld.Greeter/SayHello)
    /// over HTTP/2; -b/--body-file hold the request message as JSON, or
    /// --body-file FILE.bin its protobuf bytes.
    #[arg(long, value_name = "SERVICE/METHOD")]
    pub grpc: Option<String>,
    /// With gRPC calls (--grpc, or grpc = in a --scenario): the .proto file
    /// that defines the methods (repeatable); without it or --protoset,
    /// the server's reflection service is asked.
    #[arg(long, value_name = "FILE")]
    pub proto: Vec<PathBuf>,
    /// With --proto: a directory imports are looked up in (repeatable).
    #[arg(long, value_name = "DIR", requires = "proto")]
    pub import_path: Vec<PathBuf>,
    /// With gRPC calls: a FileDescriptorSet (protoc --descriptor_set_out
    /// --include_imports) that defines the methods.
    #[arg(long, value_name = "FILE", conflicts_with = "proto")]
    pub protoset: Option<PathBuf>,
    /// Requests in flight per connection (HTTP/1.1 pipelining).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Speak HTTP/2: prior knowledge (h2c) on http:// URLs, ALPN h2 on
    /// https:// (a server that does not accept it ends the run).
    #[arg(long, visible_alias = "h2")]
    pub http2: bool,
    /// Speak HTTP/3 over QUIC (UDP): https:// URLs only, ALPN h3, on the
    /// io_uring engine; resumes with 0-RTT on reconnects unless
    /// --no-tls-resume.
    #[arg(long, visible_alias = "h3")]
    pub http3: bool,
    /// Concurrent streams per connection, HTTP/2 or HTTP/3 (h2load's -m),
    /// capped by the server's limit (SETTINGS_MAX_CONCURRENT_STREAMS, or
    /// QUIC's MAX_STREAMS).
    #[arg(long, value_name = "N")]
    pub streams: Option<u32>,
    /// HTTP/2 stream window: 2^BITS-1 bytes (h2load's -w).
    #[arg(long, value_name = "BITS", default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=31))]
    pub h2_window: u8,
    /// HTTP/2 connection window: 2^BITS-1 bytes (h2load's -W).
    #[arg(long, value_name = "BITS", default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=31))]
    pub h2_conn_window: u8,
    /// Fail a request with no complete response after this long.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub timeout: Duration,
    /// io_uring: with several requests in flight, wait up to this long
    /// (and never above 1/32 of the recent latency) for more responses
    /// before handling them, to handle them in one batch; 0 turns it off.
    #[arg(long, value_name = "DUR", default_value = "100us", value_parser = duration)]
    pub batch_wait: Duration,
    /// Print the latency percentile distribution.
    #[arg(long)]
    pub latency: bool,
    /// Write the JSON report to FILE ('-' for stdout; the text summary then goes to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Largest response head accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Do not pin shards to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Requests from a TOML file: several named, weighted, templated
    /// requests to one host (see README, "Scenarios"). The URL argument, if
    /// given, is the base for path-only URLs.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// A data file for {{feed:NAME}} (one row per request, round-robin;
    /// .csv/.tsv have a header naming columns for {{feed:NAME.COL}}).
    #[arg(long = "feed", value_name = "NAME=FILE")]
    pub feeds: Vec<String>,
    /// Seed for {{rand}}, {{uuid}} and the weighted pick: the same seed sends
    /// the same values on the same connection (default: a new one per run,
    /// printed in the JSON report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sign an HS256 JWT per connection with this key and send it as
    /// "Authorization: Bearer" (or wherever a header says {{jwt}}).
    #[arg(long, value_name = "KEY")]
    pub jwt_secret: Option<String>,
    /// JWT claims, a JSON object template; loadgen adds iat and exp.
    #[arg(
        long,
        value_name = "JSON",
        default_value = "{}",
        requires = "jwt_secret"
    )]
    pub jwt_claims: String,
    /// JWT lifetime: each connection keeps its token until 1 s before exp.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration, requires = "jwt_secret")]
    pub jwt_ttl: Duration,
    /// Statuses that count as success, e.g. 200,204 or 2xx or 200-299
    /// (gRPC calls: names, e.g. OK,NOT_FOUND; a scenario of calls and HTTP
    /// requests: both, e.g. OK,2xx); others are reported as unexpected and
    /// the exit status is 4.
    #[arg(long, value_name = "LIST")]
    pub expect_status: Option<String>,
    /// https: trust this CA (PEM) besides the system's roots (repeatable).
    #[arg(long, value_name = "FILE")]
    pub cacert: Vec<PathBuf>,
    /// https: do not verify the server's certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// https: client certificate chain (PEM) for mutual TLS (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// https: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// https: speak only this TLS version.
    #[arg(long, value_name = "1.2|1.3", value_parser = ["1.2", "1.3"])]
    pub tls_version: Option<String>,
    /// https: offer only these cipher suites (comma- or colon-separated; IANA
    /// or OpenSSL names).
    #[arg(long, value_name = "LIST")]
    pub ciphers: Option<String>,
    /// https: do not resume TLS sessions when reconnecting (a full handshake
    /// every time).
    #[arg(long)]
    pub no_tls_resume: bool,
    /// One request per connection: each asks for `Connection: close` and the
    /// next opens a new connection (a connect, or handshake, benchmark).
    #[arg(long)]
    pub no_keepalive: bool,
    /// Write the report as one self-contained HTML page: charts over time,
    /// the percentile spectrum, tables, flamegraphs (no network needed to view it).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Serve live Prometheus metrics at http://ADDR/metrics during the run
    /// (e.g. 127.0.0.1:9464, or :9464 for every interface).
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub metrics_listen: Option<SocketAddr>,
    /// Keep serving --metrics-listen this long after the run, so a scraper
    /// gets the final numbers (e.g. twice its scrape interval); Ctrl-C ends
    /// it early.
    #[arg(long, value_name = "DUR", value_parser = duration, requires = "metrics_listen")]
    pub metrics_linger: Option<Duration>,
    /// A CI gate checked after the run, e.g. 'p99<10ms', 'p99.9<=20ms',
    /// 'mean<1ms', 'rps>=10000', 'errors<0.1%', 'unexpected==0'
    /// (repeatable); any failure makes the exit status 5.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = threshold)]
    pub thresholds: Vec<Threshold>,
    /// The target's own Prometheus metrics: scraped right before and after
    /// the measured window, its request count is set beside ours.
    #[arg(long, value_name = "URL")]
    pub server_metrics: Option<String>,
    /// The server's request counter, summed over its labels; a filter such
    /// as 'NAME{code="200"}' is allowed.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "http_requests_total",
        requires = "server_metrics"
    )]
    pub server_counter: String,
    /// The server's latency histogram: its p50/p99 over the window.
    #[arg(long, value_name = "NAME", requires = "server_metrics")]
    pub server_histogram: Option<String>,
    /// This process is part K of a fleet of N running the same command:
    /// -c, -n and -R/--stages are the fleet's totals, and this part takes
    /// its share ('auto/N': K from JOB_COMPLETION_INDEX, a Kubernetes
    /// Indexed Job's 0-based index).
    #[arg(long, value_name = "K/N", value_parser = part)]
    pub part: Option<PartSpec>,
    /// Connect and warm up before TIME, and start the measured window at
    /// exactly TIME (unix seconds or RFC 3339, e.g. 2026-01-01T12:00:00Z);
    /// the warm-up defaults to 1s.
    #[arg(long, value_name = "TIME", value_parser = start_at)]
    pub start_at: Option<SystemTime>,
    /// Source addresses for the connections, round-robin: ADDR[,ADDR…] or
    /// a range, e.g. 127.0.0.2-127.0.0.9 (each address has its own ~28k
    /// ports to a destination).
    #[arg(long, value_name = "ADDRS", value_parser = bind)]
    pub bind: Option<BindList>,
    /// Write one tab-separated line per completed request to FILE, after a
    /// header line: start_unix_us, shard, conn, status, latency_us, ttfb_us,
    /// bytes, error (then name with --scenario, and intended_unix_us in
    /// open loop, where latency_us is the corrected latency). One file:
    /// every shard appends blocks of whole lines, in time order within a
    /// shard (sort -n for one order). Not '-': stdout carries the summary.
    #[arg(long, value_name = "FILE")]
    pub request_log: Option<PathBuf>,
    /// Keep one --request-log line in N (every line: 1).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "request_log",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_log_sample: u64,
    /// Connect to this Unix domain socket instead of the URL's host and
    /// port; the URL still gives the Host header, the path and the scheme
    /// (https:// speaks TLS over the socket). --profile then finds the
    /// process listening on the socket.
    #[arg(long, value_name = "PATH")]
    pub unix_socket: Option<PathBuf>,
    /// wrk's Lua script option; not supported (see --help for the built-in equivalents).
    #[arg(short = 's', long = "script", hide = true)]
    pub script: Option<String>,
}

/// `--engine`: `auto` is resolved by probing the kernel (`setup.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineFlag {
    Auto,
    Uring,
    Glommio,
}

/// The sampling rates `--profile-freq` takes, per CPU, for a run and for
/// `demo` alike.
const PROFILE_FREQ_HZ: std::ops::RangeInclusive<u64> = 1..=10_000;

fn profile_freq() -> RangedU64ValueParser {
    RangedU64ValueParser::new().range(PROFILE_FREQ_HZ)
}

fn part(s: &str) -> Result<PartSpec, String> {
    PartSpec::parse(s).map_err(|e| e.to_string())
}

fn start_at(s: &str) -> Result<SystemTime, String> {
    loadgen::fleet::parse_start_at(s).map_err(|e| e.to_string())
}

/// Parsed `--bind`, ranges expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindList(pub Vec<IpAddr>);

fn bind(s: &str) -> Result<BindList, String> {
    loadgen::fleet::parse_bind(s)
        .map(BindList)
        .map_err(|e| e.to_string())
}

fn count(s: &str) -> Result<u64, String> {
    parse_count(s).map_err(|e| e.to_string())
}

/// Parsed `--expect-status`, sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList(pub Vec<u16>);

/// `200,204`, `2xx`, `200-299`, or a mix.
pub fn status_list(s: &str) -> Result<StatusList, String> {
    let bad = |p: &str| {
        format!("{p:?} is not a status: use codes (200,204), classes (2xx) or ranges (200-299)")
    };
    let code = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let p = part.trim();
        let range = if let Some(class) = p.strip_suffix("xx").or_else(|| p.strip_suffix("XX")) {
            let c = class
                .parse::<u16>()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .ok_or_else(|| bad(p))?;
            c * 100..=c * 100 + 99
        } else if let Some((a, b)) = p.split_once('-') {
            let (a, b) = (
                code(a).ok_or_else(|| bad(p))?,
                code(b).ok_or_else(|| bad(p))?,
            );
            if a > b {
                return Err(bad(p));
            }
            a..=b
        } else {
            let c = code(p).ok_or_else(|| bad(p))?;
            c..=c
        };
        out.extend(range);
    }
    out.sort_unstable();
    out.dedup();
    Ok(StatusList(out))
}

fn unwind_mode(s: &str) -> Result<UnwindMode, String> {
    s.parse()
}

fn stack_bytes(s: &str) -> Result<u32, String> {
    loadgen::profile::parse_stack_bytes(s)
}

fn threshold(s: &str) -> Result<Threshold, String> {
    Threshold::parse(s).map_err(|e| e.to_string())
}

/// `HOST:PORT`, or `:PORT` for every interface (as Prometheus writes it).
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let text = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            format!(
                "{s:?} is not an address to listen on: use HOST:PORT, e.g. 127.0.0.1:9464, or :9464"
            )
        })
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

impl RunArgs {
    /// HTTP/2: asked for, or the transport of --grpc.
    pub fn speaks_http2(&self) -> bool {
        self.http2 || self.grpc.is_some()
    }

    /// True when any profiling output or target was asked for.
    pub fn wants_profile(&self) -> bool {
        self.profile
            || !self.profile_pids.is_empty()
            || self.flamegraph.is_some()
            || self.folded.is_some()
            || self.wants_off_cpu()
    }

    /// True when any off-CPU output was asked for.
    pub fn wants_off_cpu(&self) -> bool {
        self.off_cpu || self.off_cpu_flamegraph.is_some() || self.off_cpu_folded.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_status_lists() {
        assert_eq!(status_list("200,204").unwrap().0, [200, 204]);
        assert_eq!(status_list("2xx").unwrap().0.len(), 100);
        assert_eq!(status_list("301-303, 200").unwrap().0, [200, 301, 302, 303]);
        for bad in ["", "abc", "600", "9xx", "300-200", "2x"] {
            assert!(status_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thresholds_and_metrics_flags_parse_before_the_run() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--threshold",
            "p99<10ms",
            "--threshold",
            "errors==0",
            "--metrics-listen",
            ":9464",
            "http://h/",
        ])
        .unwrap();
        assert_eq!(cli.run.thresholds.len(), 2);
        assert_eq!(cli.run.metrics_listen.unwrap().port(), 9464);
        let e =
            Cli::try_parse_from(["loadgen", "--threshold", "p99<<10ms", "http://h/"]).unwrap_err();
        assert!(e.to_string().contains("bad --threshold"), "{e}");
        assert!(
            Cli::try_parse_from(["loadgen", "--metrics-listen", "nowhere", "http://h/"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["loadgen", "--server-histogram", "h", "http://h/"]).is_err(),
            "--server-histogram needs --server-metrics"
        );
        let cli = Cli::try_parse_from([
            "loadgen",
            "--server-metrics",
            "http://h/metrics",
            "http://h/",
        ])
        .unwrap();
        assert_eq!(cli.run.server_counter, "http_requests_total");
    }

    #[test]
    fn batch_wait_defaults_to_the_configs_and_takes_zero() {
        let c = Cli::try_parse_from(["loadgen", "http://h/"]).unwrap();
        assert_eq!(c.run.batch_wait, loadgen::config::BATCH_WAIT_DEFAULT);
        let c = Cli::try_parse_from(["loadgen", "--batch-wait", "0", "http://h/"]).unwrap();
        assert!(c.run.batch_wait.is_zero());
    }

    #[test]
    fn off_cpu_flags() {
        let c =
            Cli::try_parse_from(["loadgen", "--off-cpu-folded", "w.folded", "http://h/"]).unwrap();
        assert!(c.run.wants_off_cpu() && c.run.wants_profile());
        assert_eq!(c.run.off_cpu_min, Duration::from_micros(1));
        let c = Cli::try_parse_from(["loadgen", "--off-cpu", "--off-cpu-min", "50us", "http://h/"])
            .unwrap();
        assert_eq!(c.run.off_cpu_min, Duration::from_micros(50));
        let c = Cli::try_parse_from(["loadgen", "--profile", "http://h/"]).unwrap();
        assert!(!c.run.wants_off_cpu());
        assert!(Cli::try_parse_from(["loadgen", "--off-cpu-min", "soon", "http://h/"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--off-cpu-stacks", "0", "http://h/"]).is_err());
    }

    #[test]
    fn profile_freq_has_one_bound_for_a_run_and_the_demo() {
        // `demo` once took any rate, and a rate above the kernel's
        // maximum then failed in perf_event_open.
        for (hz, ok) in [("0", false), ("1", true), ("10000", true), ("10001", false)] {
            let run = Cli::try_parse_from(["loadgen", "--profile-freq", hz, "http://h/"]);
            let demo = Cli::try_parse_from(["loadgen", "demo", "--profile-freq", hz]);
            assert_eq!(run.is_ok(), ok, "run {hz}");
            assert_eq!(demo.is_ok(), ok, "demo {hz}");
        }
    }

    #[test]
    fn engines_are_named() {
        for (name, flag) in [
            ("auto", EngineFlag::Auto),
            ("uring", EngineFlag::Uring),
            ("glommio", EngineFlag::Glommio),
        ] {
            let c = Cli::try_parse_from(["loadgen", "--engine", name, "http://h/"]).unwrap();
            assert_eq!(c.run.engine, flag);
        }
        let c = Cli::try_parse_from(["loadgen", "http://h/"]).unwrap();
        assert_eq!(c.run.engine, EngineFlag::Auto);
        assert!(Cli::try_parse_from(["loadgen", "--engine", "epoll", "http://h/"]).is_err());
    }

    #[test]
    fn bad_units_are_usage_errors() {
        assert!(Cli::try_parse_from(["loadgen", "-d", "10x", "http://h/"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--jwt-claims", "{}", "http://h/"]).is_err());
    }
}
