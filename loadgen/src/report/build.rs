//! Building the JSON report from what was measured: a run's stats and
//! config ([`Report::new`]), or merged stats alone ([`Report::of_stats`],
//! which `loadgen merge` uses too), and the pieces both share.

use hdrhistogram::Histogram;

use std::collections::BTreeMap;

use super::schema::{
    ClientCpu, Fleet, GrpcReport, H2Report, HandshakeLatency, Histograms, Latency, Mode,
    QuicReport, Report, RequestGrpc, RequestReport, RttQuantiles, Second, ShardRate, Status,
    TlsReport, ZeroRtt,
};
use super::{RunReport, per_second};
use crate::config::{Config, Engine};
use crate::grpc::{self, GrpcStats, status::CODES};
use crate::histogram::{encode_histogram, quantile};
use crate::http::h2::frame::ERROR_NAMES;
use crate::http::h2::{H2Stats, RESET_CODES};
use crate::http::h3::QuicStats;
use crate::stats::{RequestStats, STATUS_CODES, ShardStats, status_class};
use crate::tls::TlsStats;

/// The protocol a run speaks, as reports name it.
pub fn http_version(cfg: &Config) -> &'static str {
    if cfg.http3.is_some() {
        "3"
    } else if cfg.http2.is_some() {
        "2"
    } else {
        "1.1"
    }
}

impl GrpcReport {
    /// The counts and latencies of `g` (the caller names the method).
    pub fn of(g: &GrpcStats) -> GrpcReport {
        let seen = || {
            (0..CODES as u8)
                .filter(|&c| g.status[c as usize] > 0)
                .map(|c| (grpc::status::name(c).to_string(), &g.latency[c as usize]))
        };
        GrpcReport {
            status: g.by_name().map(|(n, c)| (n.to_string(), c)).collect(),
            latency_by_status: seen().map(|(n, h)| (n, Latency::of(h))).collect(),
            histograms: seen().map(|(n, h)| (n, encode_histogram(h))).collect(),
            ..GrpcReport::default()
        }
    }

    /// Names what was called. A scenario's report (`by_request` not
    /// empty) keeps each method's calls apart in `methods`, summed from
    /// the requests that call it; `service` and `method` name the method
    /// when only one was called (`--grpc`, always), else are empty.
    pub fn name(&mut self, single: Option<(&str, &str)>, by_request: &[RequestReport]) {
        self.methods = BTreeMap::new();
        for g in by_request.iter().filter_map(|q| q.grpc.as_ref()) {
            let m = self
                .methods
                .entry(format!("{}/{}", g.service, g.method))
                .or_default();
            for (name, &n) in &g.status {
                *m.entry(name.clone()).or_default() += n;
            }
        }
        let one = match (single, by_request.iter().find_map(|q| q.grpc.as_ref())) {
            (Some(s), _) => Some(s),
            (None, Some(g)) if self.methods.len() == 1 => Some((&g.service[..], &g.method[..])),
            _ => None,
        };
        let (service, method) = one.unwrap_or_default();
        self.service = service.into();
        self.method = method.into();
    }
}

impl RequestGrpc {
    /// A scenario request's calls of `service`/`method`, counted by code.
    pub fn of(service: &str, method: &str, status: &[u64; CODES]) -> RequestGrpc {
        RequestGrpc {
            service: service.into(),
            method: method.into(),
            status: grpc::stats::by_name(status)
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
        }
    }
}

impl H2Report {
    pub fn of(h: &H2Stats) -> H2Report {
        H2Report {
            streams_per_conn: 0,
            max_concurrent_streams_seen: h.max_concurrent_streams,
            goaways: h.goaways,
            rst_streams: h.resets().map(|(name, n)| (name.to_string(), n)).collect(),
            window_stalls: h.window_stalls,
            pings: h.pings,
            frames_in: h.frames_in,
            frames_out: h.frames_out,
        }
    }

    /// The counts back as stats (to merge reports).
    pub fn stats(&self) -> H2Stats {
        let mut h = H2Stats {
            frames_in: self.frames_in,
            frames_out: self.frames_out,
            goaways: self.goaways,
            pings: self.pings,
            window_stalls: self.window_stalls,
            max_concurrent_streams: self.max_concurrent_streams_seen,
            ..H2Stats::default()
        };
        for (name, &n) in &self.rst_streams {
            let code = ERROR_NAMES
                .iter()
                .position(|e| e == name)
                .unwrap_or(RESET_CODES - 1);
            h.rst_streams[code] += n;
        }
        h
    }
}

impl Report {
    /// `--streams` of an HTTP/2 or HTTP/3 run, with the version's name.
    pub fn streams(&self) -> Option<(&'static str, u32)> {
        match (&self.h2, &self.quic) {
            (Some(h), _) => Some(("HTTP/2", h.streams_per_conn)),
            (None, Some(q)) => Some(("HTTP/3", q.streams_per_conn)),
            (None, None) => None,
        }
    }
}

impl QuicReport {
    pub fn of(q: &QuicStats) -> QuicReport {
        QuicReport {
            streams_per_conn: 0,
            handshakes: q.handshakes,
            zero_rtt: ZeroRtt {
                attempted: q.zero_rtt_attempted,
                accepted: q.zero_rtt_accepted,
            },
            retries: q.retries,
            packets_sent: q.packets_sent,
            packets_lost: q.packets_lost,
            datagrams_per_send: q.datagrams_per_send(),
            datagrams_sent: q.datagrams_sent,
            sends: q.sends,
            datagrams_per_receive: q.datagrams_per_receive(),
            datagrams_received: q.datagrams_received,
            receives: q.receives,
            rtt_us: RttQuantiles {
                p50: quantile(&q.rtt, 0.5),
                p99: quantile(&q.rtt, 0.99),
            },
            connection_errors: q.connection_errors.clone(),
        }
    }

    /// The counts back as stats (to merge reports); the RTTs come from
    /// the report's histogram.
    pub fn stats(&self, rtt: Histogram<u64>) -> QuicStats {
        QuicStats {
            handshakes: self.handshakes,
            zero_rtt_attempted: self.zero_rtt.attempted,
            zero_rtt_accepted: self.zero_rtt.accepted,
            retries: self.retries,
            packets_sent: self.packets_sent,
            packets_lost: self.packets_lost,
            datagrams_sent: self.datagrams_sent,
            sends: self.sends,
            datagrams_received: self.datagrams_received,
            receives: self.receives,
            rtt,
            connection_errors: self.connection_errors.clone(),
            refused: None,
        }
    }
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            min: h.min(),
            mean: h.mean(),
            stdev: h.stdev(),
            max: h.max(),
            p50: h.value_at_quantile(0.5),
            p75: h.value_at_quantile(0.75),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
        }
    }
}

impl Status {
    pub fn of(codes: &[u64; STATUS_CODES]) -> Status {
        Status {
            c2xx: status_class(codes, 2),
            c3xx: status_class(codes, 3),
            c4xx: status_class(codes, 4),
            c5xx: status_class(codes, 5),
            codes: codes
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(c, &n)| (c.to_string(), n))
                .collect(),
        }
    }
}

impl TlsReport {
    pub fn of(t: &TlsStats) -> TlsReport {
        let q = |q: f64| quantile(&t.handshake, q);
        TlsReport {
            version: t.version.map(String::from),
            cipher: t.cipher.clone(),
            alpn: t.alpn.clone(),
            handshakes: t.handshakes,
            resumed: t.resumed,
            handshake_us: HandshakeLatency {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                max: t.handshake.max(),
            },
            errors: t.errors,
        }
    }
}

impl RequestReport {
    /// A scenario request's measurements over `elapsed_s`, with
    /// `unexpected` responses (`--expect-status`); the caller names it.
    pub fn measured(st: &RequestStats, elapsed_s: f64, unexpected: Option<u64>) -> RequestReport {
        RequestReport {
            requests: st.responses,
            rps: per_second(st.responses as f64, elapsed_s),
            latency_us: Latency::of(&st.latency),
            status: Status::of(&st.status),
            errors: st.errors,
            unexpected,
            histogram: Some(encode_histogram(&st.latency)),
            ..RequestReport::default()
        }
    }
}

impl Report {
    /// The report of a finished run (its profile and runs are added by the
    /// caller).
    pub fn new(r: &RunReport<'_>) -> Report {
        let t = &r.out.total;
        let cfg = r.cfg;
        let sc = &cfg.scenario;
        let open = r.target_rps().is_some();
        let unexpected = r.unexpected();
        let mut doc = Report::of_stats(t, r.elapsed_s(), open);
        doc.url = cfg.url.raw.clone();
        doc.unix_socket = cfg.peer.unix().map(|p| p.display().to_string());
        doc.engine = Some(cfg.engine);
        doc.ring_mode = r.out.ring_mode;
        doc.batch_wait_us =
            (cfg.engine == Engine::Uring).then_some(cfg.batch_wait.as_micros() as u64);
        doc.shards = cfg.shards;
        doc.connections = cfg.connections;
        doc.pipeline = cfg.pipeline;
        if let (Some(h2), Some(settings)) = (&mut doc.h2, cfg.http2) {
            h2.streams_per_conn = settings.streams;
        }
        if let (Some(q), Some(streams)) = (&mut doc.quic, cfg.http3) {
            q.streams_per_conn = streams;
        }
        doc.http_version = http_version(cfg).into();
        doc.client_cpu = ClientCpu {
            per_shard_busy: r.shard_busy(),
            per_shard_cpu: r.shard_cpu(),
        };
        doc.interrupted = r.interrupted;
        doc.mode = if cfg.schedule.is_some() {
            Mode::Open
        } else {
            Mode::Closed
        };
        doc.warmup_s = cfg.warmup.as_secs_f64();
        doc.series = series(r);
        doc.warnings = r.warnings();
        let templated = sc.fixed_bytes().is_none();
        doc.seed = templated.then_some(sc.seed);
        doc.part_seed = (templated && cfg.part.is_fleet()).then(|| cfg.part_seed());
        doc.scenario = cfg.scenario_file.as_ref().map(|f| f.display().to_string());
        doc.expect_status = unexpected.map(|_| r.expected_text());
        doc.unexpected = unexpected;
        doc.by_request = sc
            .requests
            .iter()
            .zip(&t.by_request)
            .map(|(req, st)| RequestReport {
                name: req.name.clone(),
                method: req.method.clone(),
                target: req.target.clone(),
                weight: req.weight,
                grpc: req
                    .call
                    .as_ref()
                    .map(|m| RequestGrpc::of(&m.service, &m.method, &st.grpc)),
                ..RequestReport::measured(
                    st,
                    r.elapsed_s(),
                    unexpected.map(|_| r.request_unexpected(req, st)),
                )
            })
            .collect();
        if let Some(g) = &mut doc.grpc {
            // A single call's report has no requests by name.
            let methods = sc.methods();
            let single = (!sc.named && methods.len() == 1)
                .then(|| (&methods[0].service[..], &methods[0].method[..]));
            g.name(single, &doc.by_request);
        }
        doc.target_rps = r.target_rps();
        let started = r.out.started_at.duration_since(std::time::UNIX_EPOCH).ok();
        doc.started_unix_ms = started.map(|d| d.as_millis() as u64);
        doc.started_at = started.map(|d| d.as_micros() as f64 / 1e6);
        doc.part = Some(cfg.part);
        doc.fleet = Some(Fleet {
            connections: cfg.fleet_connections,
            requests: cfg.requests,
            schedule: cfg.schedule.as_ref().map(|s| s.spec()),
            duration_s: cfg.duration.map(|d| d.as_secs_f64()),
            timeout_s: cfg.timeout.as_secs_f64(),
            keepalive: cfg.keepalive,
            request_sha256: sc.digest.clone(),
            start_at: cfg.start_at.and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
        });
        doc
    }

    /// The fields that come from measured stats alone, over `elapsed_s`
    /// (the rest are left to the caller): a run's, or a merged fleet's.
    pub fn of_stats(t: &ShardStats, elapsed_s: f64, open: bool) -> Report {
        Report {
            duration_s: elapsed_s,
            requests: t.responses,
            rps: per_second(t.responses as f64, elapsed_s),
            bytes_read: t.bytes_read,
            bytes_written: t.bytes_written,
            transfer_per_s: per_second(t.bytes_read as f64, elapsed_s),
            latency_us: Latency::of(&t.latency),
            connect_us: Latency::of(&t.connect),
            ttfb_us: Latency::of(&t.ttfb),
            latency_by_status: t
                .by_class
                .iter()
                .enumerate()
                .filter(|(_, h)| !h.is_empty())
                .map(|(i, h)| (format!("{}xx", i + 1), Latency::of(h)))
                .collect(),
            req_per_s_per_shard: ShardRate {
                mean: crate::histogram::mean(&t.rate),
                stdev: if t.rate.is_empty() {
                    0.0
                } else {
                    t.rate.stdev()
                },
                max: t.rate.max(),
            },
            status: Status::of(&t.status),
            errors: t.errors,
            reconnects: t.reconnects,
            reissued: t.reissued,
            service_time_us: open.then(|| Latency::of(&t.service)),
            lag_us: open.then(|| Latency::of(&t.lag)),
            conn_waits: open.then_some(t.conn_waits),
            tls: t.tls.as_deref().map(TlsReport::of),
            h2: t.h2.as_deref().map(H2Report::of),
            quic: t.quic.as_deref().map(QuicReport::of),
            grpc: t.grpc.as_deref().map(GrpcReport::of),
            histograms: Some(Histograms {
                latency: encode_histogram(&t.latency),
                service_time: open.then(|| encode_histogram(&t.service)),
                lag: open.then(|| encode_histogram(&t.lag)),
                connect: Some(encode_histogram(&t.connect)),
                ttfb: Some(encode_histogram(&t.ttfb)),
                by_status: t
                    .by_class
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| !h.is_empty())
                    .map(|(i, h)| (format!("{}xx", i + 1), encode_histogram(h)))
                    .collect(),
                req_per_s: Some(encode_histogram(&t.rate)),
                tls_handshake: t.tls.as_ref().map(|s| encode_histogram(&s.handshake)),
                quic_rtt: t.quic.as_ref().map(|q| encode_histogram(&q.rtt)),
            }),
            ..Report::default()
        }
    }
}

fn series(r: &RunReport<'_>) -> Vec<Second> {
    r.series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let len = r.second_len(i);
            let q = |q: f64| quantile(&s.latency, q);
            Second {
                second: i + 1,
                requests: s.responses,
                errors: s.errors,
                rate: per_second(s.responses as f64, len),
                p50_us: q(0.5),
                p90_us: q(0.9),
                p99_us: q(0.99),
                p99_9_us: q(0.999),
                max_us: s.latency.max(),
                non_2xx: s.non_2xx,
                target_rate: r.target_in_second(i).map(|t| per_second(t, len)),
                unix_s: r.second_starts.get(i).copied(),
                histogram: Some(encode_histogram(&s.latency)),
                ..Second::default()
            }
        })
        .collect()
}

/// Puts the profiler's per-second figures next to the client's: second
/// `i` of the series gets the profile's second `i + shift` (the profile's
/// window starts where sampling started, within milliseconds of the
/// client's; `shift` is that gap in whole seconds, usually 0).
pub fn join_target(
    series: &mut [Second],
    target: &[crate::profile::TargetSecond],
    shift: i64,
    off_cpu: bool,
) {
    for (i, s) in series.iter_mut().enumerate() {
        let Some(t) = usize::try_from(i as i64 + shift)
            .ok()
            .and_then(|j| target.get(j))
        else {
            continue;
        };
        s.target_on_cpu_samples = Some(t.on_cpu_samples);
        if off_cpu {
            s.target_off_cpu_ms = Some(t.off_cpu_ms);
            s.target_runq_p99_us = t.runq_p99_us;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_seconds_join_the_clients_and_old_series_still_read() {
        let t = |n: u64| crate::profile::TargetSecond {
            on_cpu_samples: n,
            off_cpu_ms: n as f64 * 10.0,
            runq_p99_us: Some(n * 100),
        };
        let target = [t(1), t(2), t(3)];
        let mut series = vec![Second::default(); 4];
        join_target(&mut series, &target, 0, true);
        assert_eq!(series[1].target_on_cpu_samples, Some(2));
        assert_eq!(series[2].target_off_cpu_ms, Some(30.0));
        assert_eq!(series[0].target_runq_p99_us, Some(100));
        assert_eq!(series[3].target_on_cpu_samples, None, "no data, no zero");
        let mut shifted = vec![Second::default(); 2];
        join_target(&mut shifted, &target, 1, false);
        assert_eq!(shifted[0].target_on_cpu_samples, Some(2));
        assert_eq!(shifted[0].target_off_cpu_ms, None, "on-CPU only");
        let v = serde_json::to_value(&series[0]).unwrap();
        assert_eq!(v["target_runq_p99_us"], 100);
        assert!(
            serde_json::to_value(Second::default())
                .unwrap()
                .get("target_off_cpu_ms")
                .is_none()
        );
        let old: Second = serde_json::from_str(r#"{"second": 1, "p99_us": 5}"#).unwrap();
        assert_eq!((old.p99_us, old.target_off_cpu_ms), (5, None));
    }
}
