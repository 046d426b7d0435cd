//! The JSON report as types. Field names are a public interface: add,
//! never rename. The same types read reports back (`loadgen compare`,
//! `--baseline`): every field has a default, so reports of older versions,
//! which lack newer fields, still read.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::config::Engine;
use crate::fleet::Part;
use crate::histogram::{decode_histogram, encode_histogram, quantile};
use crate::stats::{Errors, is_2xx_or_3xx};
use crate::sys::uring::RingMode;
use crate::tls::TlsErrors;

mod comparison;
mod threshold;

pub use comparison::{
    Baseline, ComparisonRow, Distribution, MetricUnit, SampleKind, Test, Verdict,
};
pub use threshold::{ThresholdOutcome, ThresholdUnit};

fn http_1_1() -> String {
    "1.1".into()
}

/// A latency distribution, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub max: u64,
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
}

/// wrk's Req/Sec: each shard's rate, sampled every 100 ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardRate {
    pub mean: f64,
    pub stdev: f64,
    pub max: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    #[serde(rename = "5xx")]
    pub c5xx: u64,
    /// Responses by status code (codes with none are left out).
    pub codes: BTreeMap<String, u64>,
}

impl Status {
    /// Responses whose status is not 2xx or 3xx, by the same rule as
    /// [`crate::stats::non_2xx_3xx`] (1xx and codes past 599 included).
    pub fn non_2xx_3xx(&self) -> u64 {
        self.codes
            .iter()
            .filter(|(c, _)| c.parse::<u16>().is_ok_and(|c| !is_2xx_or_3xx(c)))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Closed loop (connections send when answered) or open loop (a schedule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Closed,
    Open,
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Second {
    pub second: usize,
    pub requests: u64,
    pub errors: u64,
    pub rate: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub max_us: u64,
    /// Responses in the second with a status other than 2xx or 3xx.
    pub non_2xx: u64,
    /// Open loop: the rate the schedule asked for in this second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Wall-clock start of the second, Unix s: `loadgen merge` aligns the
    /// parts' seconds by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_s: Option<f64>,
    /// The second's latency histogram (µs, V2-deflate, base64), so a merge
    /// keeps each second's percentiles exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// With `--profile`: the target's on-CPU samples in this second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_on_cpu_samples: Option<u64>,
    /// With `--off-cpu`: time the target's threads spent off the CPU in
    /// this second (blocked or queued), summed over threads, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_off_cpu_ms: Option<f64>,
    /// With `--off-cpu`: run-queue latency p99 of the target's threads
    /// that got a CPU in this second, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_runq_p99_us: Option<u64>,
}

/// One request of a scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestReport {
    pub name: String,
    pub method: String,
    pub target: String,
    pub weight: u32,
    pub requests: u64,
    pub rps: f64,
    pub latency_us: Latency,
    pub status: Status,
    pub errors: Errors,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unexpected: Option<u64>,
    /// The request's latency histogram (µs, V2-deflate, base64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// A gRPC call (`grpc =` in the scenario): its method and its calls
    /// by gRPC status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<RequestGrpc>,
}

/// A scenario request's gRPC calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestGrpc {
    pub service: String,
    pub method: String,
    /// Calls by gRPC status name, those with none left out.
    pub status: BTreeMap<String, u64>,
}

/// A handshake-time distribution, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandshakeLatency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// `https://` runs: what was negotiated and how the handshakes went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsReport {
    /// `1.2` or `1.3`.
    pub version: Option<String>,
    /// IANA name of the suite.
    pub cipher: Option<String>,
    pub alpn: Option<String>,
    /// Handshakes completed in the measured window.
    pub handshakes: u64,
    /// Of those, how many resumed an earlier session.
    pub resumed: u64,
    pub handshake_us: HandshakeLatency,
    pub errors: TlsErrors,
}

/// `--http2` runs: what HTTP/2 itself did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct H2Report {
    /// `--streams`: concurrent streams asked for per connection.
    pub streams_per_conn: u32,
    /// The smallest SETTINGS_MAX_CONCURRENT_STREAMS a server sent (it caps
    /// `streams_per_conn`); `null` when none was sent.
    pub max_concurrent_streams_seen: Option<u32>,
    pub goaways: u64,
    /// RST_STREAM frames from the server, by error code name.
    pub rst_streams: BTreeMap<String, u64>,
    /// Request bodies that waited for the server to open a window.
    pub window_stalls: u64,
    /// PINGs the server sent (each answered).
    pub pings: u64,
    pub frames_in: u64,
    pub frames_out: u64,
}

/// `--http3` runs: what QUIC did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuicReport {
    /// `--streams`: concurrent streams asked for per connection.
    pub streams_per_conn: u32,
    /// Handshakes completed in the measured window.
    pub handshakes: u64,
    pub zero_rtt: ZeroRtt,
    /// Retry packets received (the server asked for address validation
    /// before its handshake).
    pub retries: u64,
    /// QUIC packets sent, and declared lost (then sent again as needed).
    pub packets_sent: u64,
    pub packets_lost: u64,
    /// Datagrams per `sendmsg` call (GSO batches several).
    pub datagrams_per_send: f64,
    pub datagrams_sent: u64,
    pub sends: u64,
    /// Datagrams per receive completion (GRO batches several).
    pub datagrams_per_receive: f64,
    pub datagrams_received: u64,
    pub receives: u64,
    /// The connection's smoothed RTT at each completed response.
    pub rtt_us: RttQuantiles,
    /// Connections that ended in error, by code name.
    pub connection_errors: BTreeMap<String, u64>,
}

/// Connections that sent requests as 0-RTT early data on a resumed
/// session, and how many of those the server accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ZeroRtt {
    pub attempted: u64,
    pub accepted: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RttQuantiles {
    pub p50: u64,
    pub p99: u64,
}

/// Runs with gRPC calls: what was called and how the calls ended, all
/// calls together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcReport {
    /// The method called (`--grpc`, or every gRPC request of a scenario
    /// naming the same one); both empty when a scenario calls several.
    pub service: String,
    pub method: String,
    /// Scenarios: each method's calls by status name, keyed
    /// `SERVICE/METHOD` (the requests that call it summed; each request's
    /// own are in `by_request[].grpc`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, BTreeMap<String, u64>>,
    /// Calls by gRPC status name (`OK`, `INVALID_ARGUMENT`…; `OTHER` for
    /// codes past 16), those with none left out.
    pub status: BTreeMap<String, u64>,
    /// The latency of each status's calls.
    pub latency_by_status: BTreeMap<String, Latency>,
    /// Their histograms (V2-deflate, base64), so reports merge exactly.
    pub histograms: BTreeMap<String, String>,
}

/// How busy the generator was, per shard, as fractions of the measured
/// time: `busy` counts time on a CPU and time runnable but waiting for one
/// (starved by another process); `cpu` only the first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientCpu {
    pub per_shard_busy: Vec<f64>,
    pub per_shard_cpu: Vec<f64>,
}

/// One run of `--runs K`: a whole report, numbered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunEntry {
    pub run: usize,
    #[serde(flatten)]
    pub report: Report,
}

/// The report of a run (or of several runs together, with `runs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub url: String,
    /// `--unix-socket`: the socket the connections went to (the URL then
    /// gave only the Host header and the path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_socket: Option<String>,
    /// `1.1` or `2`.
    #[serde(default = "http_1_1")]
    pub http_version: String,
    pub engine: Option<Engine>,
    /// The weakest io_uring mode any shard got; `null` for an engine that
    /// builds no ring of ours (glommio).
    pub ring_mode: Option<RingMode>,
    /// `--batch-wait`, the longest an io_uring shard waits for more
    /// completions; `null` for glommio, which does not batch its waits.
    pub batch_wait_us: Option<u64>,
    pub shards: usize,
    pub connections: usize,
    pub pipeline: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub rps: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub transfer_per_s: f64,
    pub latency_us: Latency,
    /// Connection set-up: TCP connect, and the TLS handshake with it.
    pub connect_us: Latency,
    /// From each request's own send to the first byte of its response.
    pub ttfb_us: Latency,
    /// `latency_us` of the responses of each status class that had any.
    pub latency_by_status: BTreeMap<String, Latency>,
    pub client_cpu: ClientCpu,
    pub req_per_s_per_shard: ShardRate,
    pub status: Status,
    pub errors: Errors,
    pub reconnects: u64,
    pub reissued: u64,
    pub interrupted: bool,
    pub mode: Mode,
    pub warmup_s: f64,
    pub series: Vec<Second>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unexpected: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_request: Vec<RequestReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_time_us: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_us: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_waits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h2: Option<H2Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic: Option<QuicReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcReport>,
    /// With `--profile`: the target's profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::ProfileReport>,
    /// With `--runs K > 1`: each run's own report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunEntry>,
    /// Wall-clock start of the measured window, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_unix_ms: Option<u64>,
    /// The same, Unix s with µs: when the first shard started measuring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    /// The host the run was made on (its name; a pod's name in Kubernetes).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// `--part K/N`: which part of the fleet this is (`{index: 1, of: 1}`
    /// alone). A merged report has none; it has `parts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    /// What the parts of one fleet share: the totals as given, and what
    /// identifies the load. `loadgen merge` refuses reports that differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Fleet>,
    /// `--part` with templates: the seed this part's generators used,
    /// derived from `seed` and the part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_seed: Option<u64>,
    /// A merged report: one row per part.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartRow>,
    /// The merged HdrHistograms themselves (V2-deflate, base64), so any
    /// percentile can be read later (thresholds, the HTML spectrum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histograms: Option<Histograms>,
    /// The header and wrk summary as printed (the HTML page shows it).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary_text: String,
    /// With `--threshold`: each expression, its value and whether it held.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ThresholdOutcome>,
    /// With `--server-metrics`: the server's own count beside ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_metrics: Option<crate::metrics::ServerMetrics>,
    /// With `--baseline`: the comparison, as the HTML page shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// HdrHistograms, each V2-deflate encoded and base64'd (HdrHistogram's
/// own interchange format), values in µs. With all of them a report can be
/// merged with others exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Histograms {
    /// `latency_us`'s histogram (corrected in open loop).
    pub latency: String,
    /// Open loop: `service_time_us`'s histogram.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_time: Option<String>,
    /// Open loop: `lag_us`'s histogram.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,
    /// `connect_us`'s histogram.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// `ttfb_us`'s histogram.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb: Option<String>,
    /// `latency_by_status`'s histograms, by class.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_status: BTreeMap<String, String>,
    /// `req_per_s_per_shard`'s histogram: each shard's rate every 100 ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub req_per_s: Option<String>,
    /// https: the handshake times of `tls.handshake_us`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake: Option<String>,
    /// `--http3`: the RTTs of `quic.rtt_us`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic_rtt: Option<String>,
}

/// What identifies a fleet's load, as every part was given it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fleet {
    /// `-c` as given: the fleet's connections (`connections` is this
    /// part's share).
    pub connections: usize,
    /// `-n` as given: the fleet's requests.
    pub requests: Option<u64>,
    /// Open loop: `-R` or `--stages` as a stage list (`1000`, or
    /// `10s:1000,30s:1000->5000`), the fleet's rates.
    pub schedule: Option<String>,
    /// `-d` (or the stages' length) as configured; `null` with `-n`.
    pub duration_s: Option<f64>,
    pub timeout_s: f64,
    pub keepalive: bool,
    /// SHA-256 of what is sent: the requests as written, feeds, token
    /// claims.
    pub request_sha256: String,
    /// `--start-at`, Unix s.
    pub start_at: Option<f64>,
}

/// One part of a merged report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartRow {
    pub part: Part,
    /// The report it came from: its path, or `stdin:LINE`.
    pub source: String,
    pub host: String,
    pub started_at: Option<f64>,
    /// How much later than the earliest part it started, ms.
    pub start_skew_ms: Option<f64>,
    pub duration_s: f64,
    pub requests: u64,
    pub rps: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rps: Option<f64>,
    pub p99_us: u64,
    /// Every counted failure, connect included.
    pub errors: u64,
}

impl Report {
    /// Stores the latency histograms (and the service time's, open loop).
    pub fn set_latency_histograms(
        &mut self,
        latency: &Histogram<u64>,
        service: Option<&Histogram<u64>>,
    ) {
        let h = self.histograms.get_or_insert_with(Histograms::default);
        h.latency = encode_histogram(latency);
        h.service_time = service.map(encode_histogram);
    }

    /// The latency histogram, if the report holds one.
    pub fn latency_histogram(&self) -> Option<Histogram<u64>> {
        decode_histogram(&self.histograms.as_ref()?.latency)
    }

    /// The service-time histogram (open loop), if the report holds one.
    pub fn service_histogram(&self) -> Option<Histogram<u64>> {
        decode_histogram(self.histograms.as_ref()?.service_time.as_deref()?)
    }

    /// Latency (µs) at quantile `q`: exact from the histogram when the
    /// report has it, else one of the stored percentiles; `None` if
    /// neither.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        if let Some(h) = self.latency_histogram() {
            return Some(quantile(&h, q));
        }
        let l = &self.latency_us;
        [
            (0.5, l.p50),
            (0.75, l.p75),
            (0.9, l.p90),
            (0.99, l.p99),
            (0.999, l.p99_9),
            (0.9999, l.p99_99),
            (1.0, l.max),
        ]
        .into_iter()
        .find(|&(at, _)| (at - q).abs() < 1e-12)
        .map(|(_, v)| v)
    }

    /// The folded stacks of the report's profile, if it has one.
    pub fn folded(&self) -> Option<&[String]> {
        self.profile.as_ref().map(|p| p.folded.as_slice())
    }

    /// The off-CPU folded stacks (µs) of the report's profile, if any.
    pub fn off_cpu_folded(&self) -> Option<&[String]> {
        self.profile
            .as_ref()
            .and_then(|p| p.off_cpu.as_ref())
            .map(|o| o.folded.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_report_with_fewer_fields_still_reads() {
        let r: Report = serde_json::from_str(
            r#"{"url": "http://h/", "engine": "io_uring", "ring_mode": "plain",
                "rps": 5.5, "latency_us": {"p50": 7}, "runs": [{"run": 1, "rps": 2.0}]}"#,
        )
        .unwrap();
        assert_eq!(r.engine, Some(Engine::Uring));
        assert_eq!(r.ring_mode, Some(RingMode::Plain));
        assert_eq!(r.latency_us.p50, 7);
        assert_eq!(r.runs[0].run, 1);
        assert_eq!(r.runs[0].report.rps, 2.0);
        assert!(r.folded().is_none());
    }

    #[test]
    fn names_match_the_interface() {
        let r = Report {
            target_rps: Some(1.0),
            runs: vec![RunEntry {
                run: 1,
                report: Report::default(),
            }],
            ..Report::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        for k in ["2xx", "3xx", "4xx", "5xx", "codes"] {
            assert!(v["status"].get(k).is_some(), "{k}");
        }
        assert_eq!(v["mode"], "closed");
        assert!(v["ring_mode"].is_null());
        assert_eq!(v["runs"][0]["run"], 1);
        assert!(v["runs"][0].get("url").is_some(), "a run is a whole report");
        assert!(v.get("by_request").is_none(), "empty lists are left out");
        let e = serde_json::to_value(Engine::Glommio).unwrap();
        assert_eq!(e, "glommio");
        assert_eq!(serde_json::to_value(Engine::Uring).unwrap(), "io_uring");
    }
}
