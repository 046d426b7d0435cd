//! `--metrics-listen`: what the endpoint serves. Shards publish their
//! numbers once per second into their [`ShardProgress`] (atomics, no
//! locks); a scrape sums those snapshots, adds the runs already finished,
//! and encodes the result with `prometheus-client`. The mutex here is taken
//! by the scraping thread and by the main thread between runs, never by a
//! shard.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::http::h3::QUIC_COUNTERS;
use crate::schedule::Schedule;
use crate::shard::{LIVE_BUCKETS, LIVE_BUCKETS_US, LiveBuckets, QuicProgress, ShardProgress};
use crate::stats::{ErrorKind, Errors};

/// A histogram summed over shards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub counts: [u64; LIVE_BUCKETS],
    pub sum_us: u64,
    pub count: u64,
}

impl Buckets {
    fn add_live(&mut self, b: &LiveBuckets) {
        for (a, c) in self.counts.iter_mut().zip(&b.counts) {
            *a += c.load(Ordering::Relaxed);
        }
        self.sum_us += b.sum_us.load(Ordering::Relaxed);
        self.count += b.count.load(Ordering::Relaxed);
    }

    fn add(&mut self, o: &Buckets) {
        for (a, c) in self.counts.iter_mut().zip(&o.counts) {
            *a += c;
        }
        self.sum_us += o.sum_us;
        self.count += o.count;
    }
}

/// Every shard's last publication, summed: counters since the start of
/// loadgen (runs already finished included), gauges of now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub responses: u64,
    pub by_request: Vec<u64>,
    /// By status class; index 1–5 for 1xx–5xx, 0 for other codes.
    pub status_class: [u64; 6],
    pub errors: Errors,
    /// `--grpc`: calls by status code.
    pub grpc_status: [u64; crate::grpc::status::CODES],
    pub latency: Buckets,
    pub lag: Buckets,
    pub connections: u64,
    /// `--http3`: what QUIC did.
    pub quic: QuicSnapshot,
}

/// The QUIC figures of [`QuicProgress`], summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuicSnapshot {
    /// [`QuicStats::counters`](crate::http::h3::QuicStats::counters), in
    /// their order (see [`QUIC_COUNTER_NAMES`]).
    pub counters: [u64; QUIC_COUNTERS],
    pub rtt: Buckets,
    pub connection_errors: BTreeMap<String, u64>,
}

impl QuicSnapshot {
    fn add_live(&mut self, p: &QuicProgress) {
        for (a, b) in self.counters.iter_mut().zip(&p.counters) {
            *a += b.load(Ordering::Relaxed);
        }
        self.rtt.add_live(&p.rtt);
        for (name, n) in p.errors() {
            *self.connection_errors.entry(name.to_string()).or_default() += n;
        }
    }

    fn add(&mut self, o: &QuicSnapshot) {
        for (a, b) in self.counters.iter_mut().zip(o.counters) {
            *a += b;
        }
        self.rtt.add(&o.rtt);
        for (name, &n) in &o.connection_errors {
            *self.connection_errors.entry(name.clone()).or_default() += n;
        }
    }
}

impl Snapshot {
    /// Reads the shards' publications (any number of them, any time).
    pub fn of(progress: &[ShardProgress]) -> Snapshot {
        let mut s = Snapshot::default();
        for p in progress {
            // Acquire pairs with the shard's Release of `seconds`: the
            // numbers are at least those of that publication.
            let _ = p.seconds.load(Ordering::Acquire);
            s.responses += p.responses.load(Ordering::Relaxed);
            if s.by_request.len() < p.by_request.len() {
                s.by_request.resize(p.by_request.len(), 0);
            }
            for (a, b) in s.by_request.iter_mut().zip(p.by_request.iter()) {
                *a += b.load(Ordering::Relaxed);
            }
            for (a, b) in s.status_class.iter_mut().zip(&p.status_class) {
                *a += b.load(Ordering::Relaxed);
            }
            for (kind, n) in ErrorKind::ALL.into_iter().zip(&p.error_kinds) {
                s.errors.add_n(kind, n.load(Ordering::Relaxed));
            }
            for (a, b) in s.grpc_status.iter_mut().zip(&p.grpc_status) {
                *a += b.load(Ordering::Relaxed);
            }
            s.latency.add_live(&p.latency);
            s.lag.add_live(&p.lag);
            s.connections += p.connections.load(Ordering::Relaxed);
            s.quic.add_live(&p.quic);
        }
        s
    }

    /// Counters add; the gauge is `other`'s (the later one).
    fn add(&mut self, o: &Snapshot) {
        self.responses += o.responses;
        if self.by_request.len() < o.by_request.len() {
            self.by_request.resize(o.by_request.len(), 0);
        }
        for (a, b) in self.by_request.iter_mut().zip(&o.by_request) {
            *a += b;
        }
        for (a, b) in self.status_class.iter_mut().zip(&o.status_class) {
            *a += b;
        }
        self.errors.merge(&o.errors);
        for (a, b) in self.grpc_status.iter_mut().zip(&o.grpc_status) {
            *a += b;
        }
        self.latency.add(&o.latency);
        self.lag.add(&o.lag);
        self.connections = o.connections;
        self.quic.add(&o.quic);
    }
}

/// What does not change during the run: request names, the schedule.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// Scenario request names, in file order (empty: one unnamed request).
    pub requests: Vec<String>,
    /// Open loop: the schedule, warm-up included.
    pub schedule: Option<Schedule>,
    /// `--http3`: the QUIC figures are served.
    pub http3: bool,
}

/// The run in progress, if any.
struct Current {
    progress: Arc<[ShardProgress]>,
    started: Instant,
}

struct State {
    finished: Snapshot,
    current: Option<Current>,
}

/// Shared between the main thread (which starts and ends runs) and the
/// thread serving `/metrics`.
pub struct Live {
    info: Info,
    state: Mutex<State>,
}

impl Live {
    pub fn new(info: Info) -> Live {
        Live {
            info,
            state: Mutex::new(State {
                finished: Snapshot::default(),
                current: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves numbers, not broken invariants.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run starts now, publishing into `progress`.
    pub fn begin_run(&self, progress: Arc<[ShardProgress]>) {
        self.lock().current = Some(Current {
            progress,
            started: Instant::now(),
        });
    }

    /// The run ended: its final numbers join the finished runs'.
    pub fn end_run(&self) {
        let mut st = self.lock();
        if let Some(c) = st.current.take() {
            let mut last = Snapshot::of(&c.progress);
            last.connections = 0;
            st.finished.add(&last);
        }
        st.finished.connections = 0;
    }

    /// The numbers now, and the open-loop target rate now (0 between runs).
    pub fn snapshot(&self) -> (Snapshot, f64) {
        let st = self.lock();
        let mut s = st.finished.clone();
        let mut rate = 0.0;
        if let Some(c) = &st.current {
            s.add(&Snapshot::of(&c.progress));
            if let Some(sched) = &self.info.schedule {
                // The run ends with the schedule, so past it there is no
                // current run (a constant rate is one endless stage).
                rate = sched.rate_at(c.started.elapsed().as_secs_f64());
            }
        } else {
            s.connections = 0;
        }
        (s, rate)
    }

    /// The exposition now, in OpenMetrics text.
    pub fn render(&self) -> String {
        let (s, rate) = self.snapshot();
        render(&s, &self.info, rate)
    }
}

/// A histogram whose buckets were counted elsewhere (from HdrHistograms,
/// or the built-in target's atomics): per-bucket counts by upper bound,
/// the last bound +Inf.
#[derive(Debug)]
pub struct FixedHistogram {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl FixedHistogram {
    fn of(b: &Buckets) -> FixedHistogram {
        FixedHistogram {
            sum: b.sum_us as f64 / 1e6,
            count: b.count,
            buckets: LIVE_BUCKETS_US
                .iter()
                .map(|&us| us as f64 / 1e6)
                .chain([f64::INFINITY])
                .zip(b.counts)
                .collect(),
        }
    }
}

impl EncodeMetric for FixedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels = Vec<(String, String)>;

/// Encodes `s` (OpenMetrics text, as prometheus-client writes it).
pub fn render(s: &Snapshot, info: &Info, target_rate: f64) -> String {
    let mut reg = Registry::with_prefix("loadgen");
    let requests = Family::<Labels, Counter>::default();
    if info.requests.is_empty() {
        requests.get_or_create(&Vec::new()).inc_by(s.responses);
    } else {
        for (i, name) in info.requests.iter().enumerate() {
            requests
                .get_or_create(&vec![("request".to_string(), name.clone())])
                .inc_by(s.by_request.get(i).copied().unwrap_or(0));
        }
    }
    reg.register(
        "requests",
        "Completed responses (by scenario request)",
        requests,
    );
    let responses = Family::<Labels, Counter>::default();
    for (class, n) in s.status_class.iter().enumerate().skip(1) {
        responses
            .get_or_create(&vec![("status".to_string(), format!("{class}xx"))])
            .inc_by(*n);
    }
    if s.status_class[0] > 0 {
        responses
            .get_or_create(&vec![("status".to_string(), "other".to_string())])
            .inc_by(s.status_class[0]);
    }
    reg.register("responses", "Responses by status class", responses);
    if s.grpc_status.iter().any(|&n| n > 0) {
        let calls = Family::<Labels, Counter>::default();
        for (code, &n) in s.grpc_status.iter().enumerate().filter(|(_, n)| **n > 0) {
            let name = crate::grpc::status::name(code as u8).to_string();
            calls
                .get_or_create(&vec![("status".to_string(), name)])
                .inc_by(n);
        }
        reg.register("grpc_calls", "gRPC calls by status (--grpc)", calls);
    }
    let errors = Family::<Labels, Counter>::default();
    for (kind, n) in s.errors.iter() {
        errors
            .get_or_create(&vec![("kind".to_string(), kind.name().to_string())])
            .inc_by(n);
    }
    reg.register(
        "errors",
        "Failures by kind (see the README's Errors table)",
        errors,
    );
    reg.register_with_unit(
        "request_duration",
        "Response latency from the HdrHistograms (corrected for coordinated omission in open loop)",
        Unit::Seconds,
        FixedHistogram::of(&s.latency),
    );
    let connections = Gauge::<i64>::default();
    connections.set(s.connections as i64);
    reg.register("connections", "Open connections", connections);
    if info.schedule.is_some() {
        let rate = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        rate.set(target_rate);
        reg.register(
            "target_rate",
            "Requests per second the schedule asks for now",
            rate,
        );
        reg.register_with_unit(
            "schedule_lag",
            "How late requests were sent (actual - intended send time)",
            Unit::Seconds,
            FixedHistogram::of(&s.lag),
        );
    }
    if info.http3 {
        register_quic(&mut reg, &s.quic);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// The Prometheus name and help of each of [`QuicSnapshot::counters`], in
/// their order.
const QUIC_COUNTER_NAMES: [(&str, &str); QUIC_COUNTERS] = [
    ("handshakes", "QUIC handshakes completed"),
    (
        "zero_rtt_attempts",
        "Connections that sent requests as 0-RTT early data",
    ),
    ("zero_rtt_accepted", "0-RTT attempts the server accepted"),
    (
        "retries",
        "Retry packets received (the server asked for address validation)",
    ),
    ("packets_sent", "QUIC packets sent"),
    (
        "packets_lost",
        "QUIC packets declared lost (then sent again as needed)",
    ),
    ("datagrams_sent", "UDP datagrams handed to the kernel"),
    (
        "sends",
        "sendmsg calls that carried the datagrams (one GSO send each)",
    ),
    ("datagrams_received", "UDP datagrams that arrived"),
    (
        "receives",
        "Receive completions that brought the datagrams (one GRO batch each)",
    ),
];

/// `--http3`: the run's `quic` figures (as in the JSON report), under
/// `loadgen_quic_`; the datagrams per `sendmsg` are
/// `rate(loadgen_quic_datagrams_sent_total) / rate(loadgen_quic_sends_total)`,
/// and per receive likewise.
fn register_quic(reg: &mut Registry, q: &QuicSnapshot) {
    let reg = reg.sub_registry_with_prefix("quic");
    for ((name, help), n) in QUIC_COUNTER_NAMES.into_iter().zip(q.counters) {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        reg.register(name, help, c);
    }
    reg.register_with_unit(
        "rtt",
        "The connection's smoothed RTT at each completed response",
        Unit::Seconds,
        FixedHistogram::of(&q.rtt),
    );
    let errors = Family::<Labels, Counter>::default();
    for (name, &n) in &q.connection_errors {
        errors
            .get_or_create(&vec![("code".to_string(), name.clone())])
            .inc_by(n);
    }
    reg.register(
        "connection_errors",
        "QUIC connections that ended in error, by code name",
        errors,
    );
}

/// Converts OpenMetrics text (prometheus-client's output) to the
/// Prometheus text format 0.0.4 that `promtool check metrics` and older
/// scrapers read: counter families take their `_total` sample name,
/// `# UNIT` and `# EOF` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters: Vec<String> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let mut line = line.to_string();
        for kind in ["# HELP ", "# TYPE "] {
            if let Some(rest) = line.strip_prefix(kind)
                && let Some((name, tail)) = rest.split_once(' ')
                && counters.iter().any(|c| c == name)
            {
                line = format!("{kind}{name}_total {tail}");
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::{Selector, parse};
    use crate::stats::ShardStats;

    fn progress(named: usize, f: impl Fn(&mut ShardStats)) -> ShardProgress {
        let mut stats = ShardStats::with_requests(named);
        f(&mut stats);
        stats.roll_second();
        let p = ShardProgress::with_requests(named);
        p.publish(&stats);
        p
    }

    #[test]
    fn shards_sum_and_finished_runs_carry_over() {
        let a = progress(2, |s| {
            s.record_request(0, 200, 100);
            s.record_request(1, 503, 3000);
        });
        let b = progress(2, |s| {
            s.record_request(1, 200, 100);
            s.errors.timeout = 2;
        });
        let live = Live::new(Info {
            requests: vec!["home".into(), "item".into()],
            schedule: None,
            http3: false,
        });
        live.begin_run(Arc::from(vec![a, b]));
        let (s, _) = live.snapshot();
        assert_eq!(s.responses, 3);
        assert_eq!(s.by_request, [1, 2]);
        assert_eq!((s.status_class[2], s.status_class[5]), (2, 1));
        assert_eq!(s.errors.timeout, 2);
        live.end_run();
        let c = progress(2, |s| s.record_request(0, 200, 50));
        live.begin_run(Arc::from(vec![c]));
        let (s, _) = live.snapshot();
        assert_eq!(s.responses, 4, "counters do not restart with the next run");
        assert_eq!(s.by_request, [2, 2]);
        let text = live.render();
        let samples = parse(&text).unwrap();
        let sel = |t: &str| Selector::parse(t).unwrap().sum(&samples);
        assert_eq!(sel("loadgen_requests_total"), Some(4.0));
        assert_eq!(sel("loadgen_requests_total{request=\"item\"}"), Some(2.0));
        assert_eq!(sel("loadgen_responses_total{status=\"5xx\"}"), Some(1.0));
        assert_eq!(sel("loadgen_errors_total{kind=\"timeout\"}"), Some(2.0));
        assert_eq!(sel("loadgen_request_duration_seconds_count"), Some(4.0));
        assert_eq!(
            sel("loadgen_request_duration_seconds_bucket{le=\"+Inf\"}"),
            Some(4.0)
        );
        // 50 and 100 µs are ≤ 100 µs; 3 ms is not.
        assert_eq!(
            sel("loadgen_request_duration_seconds_bucket{le=\"0.0001\"}"),
            Some(3.0)
        );
        assert!(
            sel("loadgen_target_rate").is_none(),
            "closed loop has no target rate"
        );
        assert!(sel("loadgen_grpc_calls_total").is_none(), "not a gRPC run");
    }

    #[test]
    fn grpc_calls_are_counted_by_status_name() {
        let p = progress(0, |s| {
            let mut g = crate::grpc::GrpcStats::default();
            g.record(0, 10, true);
            g.record(0, 10, true);
            g.record(14, 10, true);
            s.grpc = Some(Box::new(g));
        });
        let live = Live::new(Info::default());
        live.begin_run(Arc::from(vec![p]));
        let samples = parse(&live.render()).unwrap();
        let sel = |t: &str| Selector::parse(t).unwrap().sum(&samples);
        assert_eq!(sel("loadgen_grpc_calls_total{status=\"OK\"}"), Some(2.0));
        assert_eq!(
            sel("loadgen_grpc_calls_total{status=\"UNAVAILABLE\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn http3_runs_add_the_quic_figures_summed_over_shards_and_runs() {
        let shard = |errors: &[&str]| {
            progress(0, |s| {
                s.record_response(200, 10);
                let mut q = crate::http::h3::QuicStats {
                    handshakes: 2,
                    zero_rtt_attempted: 1,
                    zero_rtt_accepted: 1,
                    retries: 2,
                    packets_sent: 100,
                    packets_lost: 2,
                    datagrams_sent: 60,
                    sends: 20,
                    datagrams_received: 90,
                    receives: 30,
                    ..Default::default()
                };
                q.rtt.record(150).unwrap();
                for e in errors {
                    q.add_error(e.to_string());
                }
                s.quic = Some(Box::new(q));
            })
        };
        let live = Live::new(Info {
            http3: true,
            ..Info::default()
        });
        live.begin_run(Arc::from(vec![
            shard(&["IDLE_TIMEOUT"]),
            shard(&["IDLE_TIMEOUT", "H3_FRAME_UNEXPECTED"]),
        ]));
        live.end_run();
        live.begin_run(Arc::from(vec![shard(&[])]));
        let text = live.render();
        let samples = parse(&text).unwrap();
        let sel = |t: &str| Selector::parse(t).unwrap().sum(&samples);
        for (name, want) in [
            ("loadgen_quic_handshakes_total", 6.0),
            ("loadgen_quic_zero_rtt_attempts_total", 3.0),
            ("loadgen_quic_zero_rtt_accepted_total", 3.0),
            ("loadgen_quic_retries_total", 6.0),
            ("loadgen_quic_packets_sent_total", 300.0),
            ("loadgen_quic_packets_lost_total", 6.0),
            ("loadgen_quic_datagrams_sent_total", 180.0),
            ("loadgen_quic_sends_total", 60.0),
            ("loadgen_quic_datagrams_received_total", 270.0),
            ("loadgen_quic_receives_total", 90.0),
            ("loadgen_quic_rtt_seconds_count", 3.0),
            ("loadgen_quic_rtt_seconds_bucket{le=\"0.0002\"}", 3.0),
            ("loadgen_quic_rtt_seconds_bucket{le=\"0.0001\"}", 0.0),
            (
                "loadgen_quic_connection_errors_total{code=\"IDLE_TIMEOUT\"}",
                2.0,
            ),
            (
                "loadgen_quic_connection_errors_total{code=\"H3_FRAME_UNEXPECTED\"}",
                1.0,
            ),
        ] {
            assert_eq!(sel(name), Some(want), "{name}: {text}");
        }
        let sum = sel("loadgen_quic_rtt_seconds_sum").unwrap();
        assert!((sum - 450e-6).abs() < 1e-6, "{sum}: {text}");
        assert!(
            text.contains("# TYPE loadgen_quic_rtt_seconds histogram"),
            "{text}"
        );

        // Not an HTTP/3 run: none of it.
        let live = Live::new(Info::default());
        live.begin_run(Arc::from(vec![shard(&["IDLE_TIMEOUT"])]));
        assert!(!live.render().contains("loadgen_quic"));
    }

    #[test]
    fn open_loop_adds_the_rate_and_lag() {
        let live = Live::new(Info {
            requests: Vec::new(),
            schedule: Some(Schedule::constant(250.0)),
            http3: false,
        });
        let text = live.render();
        assert!(text.contains("# TYPE loadgen_target_rate gauge"), "{text}");
        assert!(
            text.contains("loadgen_schedule_lag_seconds_bucket"),
            "{text}"
        );
        let p = progress(0, |s| s.record_response(200, 10));
        live.begin_run(Arc::from(vec![p]));
        let samples = parse(&live.render()).unwrap();
        assert_eq!(
            Selector::parse("loadgen_target_rate")
                .unwrap()
                .sum(&samples),
            Some(250.0)
        );
        assert_eq!(
            Selector::parse("loadgen_requests_total")
                .unwrap()
                .sum(&samples),
            Some(1.0)
        );
    }

    #[test]
    fn the_prometheus_text_names_counters_by_their_samples() {
        let om = "# HELP loadgen_requests Done.\n# TYPE loadgen_requests counter\nloadgen_requests_total 5\n# HELP loadgen_request_duration_seconds L.\n# TYPE loadgen_request_duration_seconds histogram\n# UNIT loadgen_request_duration_seconds seconds\nloadgen_request_duration_seconds_sum 1.0\n# EOF\n";
        let text = to_prometheus_text(om);
        assert!(
            text.contains("# HELP loadgen_requests_total Done.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE loadgen_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE loadgen_request_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
    }
}
