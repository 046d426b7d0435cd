//! `loadgen merge`: the JSON reports of a fleet's parts (`--part K/N`) as
//! one report, exactly. Each part's report carries its histograms, so the
//! parts' measurements are rebuilt as [`ShardStats`] and merged the way
//! shards are: counters summed, histograms added (every percentile exact),
//! seconds aligned by wall clock. Pure: the command reads the files.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::schema::{
    ClientCpu, GrpcReport, Mode, PartRow, Report, RequestGrpc, RequestReport, Second,
};
use super::text::{SummaryView, render};
use super::{Status, per_second};
use crate::fleet::Part;
use crate::grpc::{GrpcStats, status};
use crate::histogram::{self, decode_histogram, encode_histogram, new_latency_histogram, quantile};
use crate::stats::{RequestStats, STATUS_CODES, ShardStats};
use crate::sys::uring::RingMode;
use crate::tls::TlsStats;
use crate::units::format_time_us;

/// Parts that started further apart than this get a warning.
pub const START_SKEW_WARN_MS: f64 = 50.0;

/// One report to merge, and where it came from (a path, `stdin:LINE`).
#[derive(Debug, Clone)]
pub struct Input {
    pub source: String,
    pub report: Report,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("nothing to merge: give the parts' reports (files, or - for a stream on stdin)")]
    Empty,
    #[error(
        "{0} is not a part's report (it has no `part` and `histograms`): write the parts' reports with loadgen --part K/N --json FILE, from this version on"
    )]
    NotAPart(String),
    #[error("{0} is a merged report: merge the parts' own reports")]
    Merged(String),
    #[error(
        "{report} has no {what} histogram: it was written by an older loadgen; rerun that part with this version"
    )]
    Missing { report: String, what: String },
    #[error("{report}: its {what} histogram is not a base64 V2-deflate HdrHistogram")]
    BadHistogram { report: String, what: String },
    #[error(
        "{a} and {b} differ in {field} ({va} vs {vb}): they are not parts of one fleet (the same command line with a different --part)"
    )]
    Differ {
        field: &'static str,
        a: String,
        va: String,
        b: String,
        vb: String,
    },
    #[error("{a} and {b} are both part {part}: give each part once")]
    Overlap { a: String, b: String, part: Part },
    #[error(
        "{report}: {field} is {value}, outside {range}: no run writes that; is the report intact?"
    )]
    OutOfRange {
        report: String,
        field: String,
        value: String,
        range: String,
    },
}

/// The merged report, and the fleet's stats it was made from.
pub struct Merged {
    pub report: Report,
    pub stats: ShardStats,
    /// The fleet's header (what was merged), for the text.
    pub header: String,
}

impl Merged {
    /// The header, the wrk-style summary of the fleet, and the per-part
    /// table, as printed.
    pub fn text(&self, latency: bool) -> String {
        let r = &self.report;
        let view = SummaryView {
            total: &self.stats,
            target_rps: r.target_rps,
            rps: r.rps,
            transfer_per_s: r.transfer_per_s,
            unexpected: r
                .unexpected
                .map(|n| (n, r.expect_status.clone().unwrap_or_default())),
            request_names: r.by_request.iter().map(|q| q.name.as_str()).collect(),
            interrupted: r.interrupted,
            warnings: r.warnings.clone(),
            streams: r.h2.as_ref().map(|h| h.streams_per_conn),
        };
        let mut s = self.header.clone();
        s.push_str(&render(&view, latency));
        s.push_str(&parts_table(&r.parts));
        s
    }
}

fn decode(source: &str, what: &str, text: &str) -> Result<Histogram<u64>, MergeError> {
    decode_histogram(text).ok_or_else(|| MergeError::BadHistogram {
        report: source.to_string(),
        what: what.to_string(),
    })
}

fn need(source: &str, what: &str, text: Option<&str>) -> Result<Histogram<u64>, MergeError> {
    match text {
        Some(t) => decode(source, what, t),
        None => Err(MergeError::Missing {
            report: source.to_string(),
            what: what.to_string(),
        }),
    }
}

fn codes(s: &Status) -> Box<[u64; STATUS_CODES]> {
    let mut out = Box::new([0u64; STATUS_CODES]);
    for (code, &n) in &s.codes {
        if let Some(slot) = code.parse::<usize>().ok().and_then(|c| out.get_mut(c)) {
            *slot += n;
        }
    }
    out
}

fn unix(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0))
}

/// A part's measurements, rebuilt from its report.
fn stats_of(inp: &Input) -> Result<ShardStats, MergeError> {
    let (src, r) = (inp.source.as_str(), &inp.report);
    let h = r
        .histograms
        .as_ref()
        .ok_or_else(|| MergeError::NotAPart(src.to_string()))?;
    let open = r.mode == Mode::Open;
    let mut t = ShardStats::new();
    t.latency = decode(src, "latency", &h.latency)?;
    if open {
        t.service = need(src, "service_time", h.service_time.as_deref())?;
        t.lag = need(src, "lag", h.lag.as_deref())?;
    }
    t.connect = need(src, "connect", h.connect.as_deref())?;
    t.ttfb = need(src, "ttfb", h.ttfb.as_deref())?;
    t.rate = need(src, "req_per_s", h.req_per_s.as_deref())?;
    for (class, text) in &h.by_status {
        let i = class
            .strip_suffix("xx")
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|c| (1..=5).contains(c));
        if let Some(c) = i {
            t.by_class[c - 1] = decode(src, &format!("by_status {class}"), text)?;
        }
    }
    t.conn_waits = r.conn_waits.unwrap_or(0);
    t.responses = r.requests;
    t.bytes_read = r.bytes_read;
    t.bytes_written = r.bytes_written;
    t.status = codes(&r.status);
    t.errors = r.errors;
    t.reconnects = r.reconnects;
    t.reissued = r.reissued;
    t.elapsed = Duration::from_secs_f64(r.duration_s.max(0.0));
    t.started_at = r.started_at.map(unix);
    for q in &r.by_request {
        t.by_request.push(RequestStats {
            responses: q.requests,
            latency: need(
                src,
                &format!("by_request {:?}", q.name),
                q.histogram.as_deref(),
            )?,
            status: codes(&q.status),
            errors: q.errors,
            grpc: q.grpc.as_ref().map_or([0; status::CODES], grpc_codes),
        });
    }
    if let Some(tls) = &r.tls {
        t.tls = Some(Box::new(TlsStats {
            handshakes: tls.handshakes,
            resumed: tls.resumed,
            handshake: need(src, "tls_handshake", h.tls_handshake.as_deref())?,
            errors: tls.errors,
            version: match tls.version.as_deref() {
                Some("1.2") => Some("1.2"),
                Some("1.3") => Some("1.3"),
                _ => None,
            },
            cipher: tls.cipher.clone(),
            alpn: tls.alpn.clone(),
            cert_error: None,
        }));
    }
    t.h2 = r.h2.as_ref().map(|h| Box::new(h.stats()));
    if let Some(q) = &r.quic {
        let rtt = need(src, "quic_rtt", h.quic_rtt.as_deref())?;
        t.quic = Some(Box::new(q.stats(rtt)));
    }
    if let Some(g) = &r.grpc {
        t.grpc = Some(Box::new(grpc_stats(src, g)?));
    }
    Ok(t)
}

/// A request's gRPC calls by name back as counts by code.
fn grpc_codes(g: &RequestGrpc) -> [u64; status::CODES] {
    let mut out = [0; status::CODES];
    for (name, &n) in &g.status {
        out[status::by_name(name).unwrap_or(status::OTHER) as usize] += n;
    }
    out
}

/// A report's gRPC counts and histograms back as stats.
fn grpc_stats(src: &str, r: &GrpcReport) -> Result<GrpcStats, MergeError> {
    let mut g = GrpcStats::default();
    for (name, &n) in &r.status {
        let code = status::by_name(name).unwrap_or(status::OTHER) as usize;
        g.status[code] += n;
        if let Some(text) = r.histograms.get(name) {
            histogram::add(
                &mut g.latency[code],
                &decode(src, &format!("grpc {name}"), text)?,
            );
        }
    }
    Ok(g)
}

/// One second of the fleet, being summed.
struct SecondSum {
    requests: u64,
    errors: u64,
    non_2xx: u64,
    rate: f64,
    target_rate: Option<f64>,
    latency: Histogram<u64>,
}

/// The parts' seconds, aligned by their wall-clock start: a part's
/// second that starts `x` s after the earliest part's start lands in
/// second `round(x)` of the fleet.
fn series(inputs: &[Input], t0: f64) -> Result<Vec<Second>, MergeError> {
    let mut bins: BTreeMap<i64, SecondSum> = BTreeMap::new();
    for inp in inputs {
        let r = &inp.report;
        let start = r.started_at.unwrap_or(t0);
        for row in &r.series {
            let at = row
                .unix_s
                .unwrap_or(start + row.second.saturating_sub(1) as f64);
            let bin = ((at - t0).round() as i64).max(0);
            let what = format!("series second {}", row.second);
            let h = need(&inp.source, &what, row.histogram.as_deref())?;
            let b = bins.entry(bin).or_insert_with(|| SecondSum {
                requests: 0,
                errors: 0,
                non_2xx: 0,
                rate: 0.0,
                target_rate: None,
                latency: new_latency_histogram(),
            });
            b.requests += row.requests;
            b.errors += row.errors;
            b.non_2xx += row.non_2xx;
            b.rate += row.rate;
            if let Some(t) = row.target_rate {
                *b.target_rate.get_or_insert(0.0) += t;
            }
            crate::histogram::add(&mut b.latency, &h);
        }
    }
    Ok(bins
        .into_iter()
        .map(|(bin, b)| {
            let q = |q: f64| quantile(&b.latency, q);
            Second {
                second: bin as usize + 1,
                requests: b.requests,
                errors: b.errors,
                rate: b.rate,
                p50_us: q(0.5),
                p90_us: q(0.9),
                p99_us: q(0.99),
                p99_9_us: q(0.999),
                max_us: b.latency.max(),
                non_2xx: b.non_2xx,
                target_rate: b.target_rate,
                unix_s: Some(t0 + bin as f64),
                histogram: Some(encode_histogram(&b.latency)),
                // The target's figures belong to the one part that profiled it.
                ..Second::default()
            }
        })
        .collect())
}

/// Merges the parts' reports into the fleet's.
pub fn merge(inputs: &[Input]) -> Result<Merged, MergeError> {
    check::check(inputs)?;
    let mut inputs = inputs.to_vec();
    inputs.sort_by_key(|i| i.report.part.map_or(0, |p| p.index));
    let parts: Vec<ShardStats> = inputs.iter().map(stats_of).collect::<Result<_, _>>()?;
    let mut fleet = ShardStats::new();
    for p in &parts {
        fleet.merge(p);
    }
    let first = &inputs[0].report;
    let of = first.part.map_or(1, |p| p.of);
    let starts: Vec<f64> = inputs.iter().filter_map(|i| i.report.started_at).collect();
    let all_started = starts.len() == inputs.len();
    let t0 = starts.iter().copied().fold(f64::INFINITY, f64::min);
    // The fleet's measured window: from the first part's start to the last
    // part's end (without start times, the longest part).
    let window = if all_started && t0.is_finite() {
        inputs
            .iter()
            .map(|i| i.report.started_at.unwrap_or(t0) + i.report.duration_s)
            .fold(f64::NEG_INFINITY, f64::max)
            - t0
    } else {
        inputs
            .iter()
            .map(|i| i.report.duration_s)
            .fold(0.0, f64::max)
    };
    let open = first.mode == Mode::Open;
    fleet.elapsed = Duration::from_secs_f64(window.max(0.0));
    let mut doc = Report::of_stats(&fleet, window, open);
    doc.url = first.url.clone();
    doc.engine = first
        .engine
        .filter(|e| inputs.iter().all(|i| i.report.engine == Some(*e)));
    doc.ring_mode = inputs
        .iter()
        .filter_map(|i| i.report.ring_mode)
        .reduce(RingMode::weakest);
    doc.batch_wait_us = first
        .batch_wait_us
        .filter(|w| inputs.iter().all(|i| i.report.batch_wait_us == Some(*w)));
    doc.shards = inputs.iter().map(|i| i.report.shards).sum();
    doc.connections = inputs.iter().map(|i| i.report.connections).sum();
    doc.pipeline = first.pipeline;
    doc.http_version.clone_from(&first.http_version);
    if let (Some(h2), Some(first)) = (&mut doc.h2, &first.h2) {
        h2.streams_per_conn = first.streams_per_conn;
    }
    if let (Some(q), Some(first)) = (&mut doc.quic, &first.quic) {
        q.streams_per_conn = first.streams_per_conn;
    }
    doc.client_cpu = ClientCpu {
        per_shard_busy: inputs
            .iter()
            .flat_map(|i| i.report.client_cpu.per_shard_busy.iter().copied())
            .collect(),
        per_shard_cpu: inputs
            .iter()
            .flat_map(|i| i.report.client_cpu.per_shard_cpu.iter().copied())
            .collect(),
    };
    doc.interrupted = inputs.iter().any(|i| i.report.interrupted);
    doc.mode = first.mode;
    doc.warmup_s = first.warmup_s;
    doc.series = series(&inputs, if t0.is_finite() { t0 } else { 0.0 })?;
    doc.seed = first
        .seed
        .filter(|s| inputs.iter().all(|i| i.report.seed == Some(*s)));
    doc.scenario = first.scenario.clone();
    doc.expect_status = first.expect_status.clone();
    doc.unexpected = first
        .unexpected
        .map(|_| inputs.iter().filter_map(|i| i.report.unexpected).sum());
    doc.by_request = first
        .by_request
        .iter()
        .zip(&fleet.by_request)
        .enumerate()
        .map(|(k, (q, st))| {
            let unexpected = q.unexpected.map(|_| {
                inputs
                    .iter()
                    .filter_map(|i| i.report.by_request.get(k)?.unexpected)
                    .sum()
            });
            RequestReport {
                name: q.name.clone(),
                method: q.method.clone(),
                target: q.target.clone(),
                weight: q.weight,
                grpc: q
                    .grpc
                    .as_ref()
                    .map(|g| RequestGrpc::of(&g.service, &g.method, &st.grpc)),
                ..RequestReport::measured(st, window, unexpected)
            }
        })
        .collect();
    if let (Some(g), Some(first)) = (&mut doc.grpc, &first.grpc) {
        let single = doc
            .by_request
            .is_empty()
            .then_some((&first.service[..], &first.method[..]));
        g.name(single, &doc.by_request);
    }
    if open {
        // What the parts were asked for, over the fleet's window.
        let asked: f64 = inputs
            .iter()
            .map(|i| i.report.target_rps.unwrap_or(0.0) * i.report.duration_s)
            .sum();
        doc.target_rps = Some(per_second(asked, window));
    }
    if t0.is_finite() {
        doc.started_at = Some(t0);
        doc.started_unix_ms = Some((t0 * 1000.0) as u64);
    }
    doc.fleet = first.fleet.clone();
    doc.parts = inputs
        .iter()
        .map(|i| {
            let r = &i.report;
            PartRow {
                part: r.part.unwrap_or_default(),
                source: i.source.clone(),
                host: r.host.clone(),
                started_at: r.started_at,
                start_skew_ms: r
                    .started_at
                    .filter(|_| t0.is_finite())
                    .map(|s| (s - t0) * 1000.0),
                duration_s: r.duration_s,
                requests: r.requests,
                rps: r.rps,
                target_rps: r.target_rps,
                p99_us: r.latency_us.p99,
                errors: r.errors.total(),
            }
        })
        .collect();
    doc.warnings = warnings(&inputs, &doc, of);
    let header = header(&doc, of);
    doc.summary_text = String::new();
    let mut merged = Merged {
        report: doc,
        stats: fleet,
        header,
    };
    merged.report.summary_text = merged.text(false);
    Ok(merged)
}

/// The fleet's self-checks, then each part's own warnings.
fn warnings(inputs: &[Input], doc: &Report, of: u32) -> Vec<String> {
    let mut w = Vec::new();
    let have: Vec<u32> = doc.parts.iter().map(|p| p.part.index).collect();
    let missing: Vec<String> = (1..=of)
        .filter(|k| !have.contains(k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        w.push(format!(
            "WARNING: part(s) {} of {of} missing: this report covers {} of the fleet's {of} parts, and its rate is theirs",
            missing.join(", "),
            have.len()
        ));
    }
    let skew = doc
        .parts
        .iter()
        .filter_map(|p| p.start_skew_ms)
        .fold(0.0, f64::max);
    if skew > START_SKEW_WARN_MS {
        w.push(format!(
            "WARNING: the parts started up to {skew:.1} ms apart: give them one --start-at, on hosts with synced clocks (the seconds are aligned by wall clock either way)"
        ));
    }
    if let Some(target) = doc.target_rps
        && target > 0.0
        && doc.rps < 0.99 * target
        && !doc.interrupted
    {
        w.push(format!(
            "WARNING: the fleet achieved {:.2} req/s, {:.1}% of the target {target:.2} req/s (see the parts' warnings)",
            doc.rps,
            100.0 * doc.rps / target
        ));
    }
    if inputs.iter().any(|i| i.report.profile.is_some()) {
        w.push("note: profiles are not merged; each part's report has its own".into());
    }
    for i in inputs {
        let p = i.report.part.unwrap_or_default();
        for x in &i.report.warnings {
            w.push(format!("part {p}: {x}"));
        }
    }
    w
}

fn header(doc: &Report, of: u32) -> String {
    let mut s = format!("Merged {} of {of} parts @ {}\n", doc.parts.len(), doc.url);
    if let Some(sched) = doc.fleet.as_ref().and_then(|f| f.schedule.as_ref()) {
        let _ = writeln!(
            s,
            "  open loop: {} in all",
            crate::schedule::Schedule::describe_spec(sched)
        );
    }
    let _ = writeln!(
        s,
        "  {} threads and {} connections in all",
        doc.shards, doc.connections
    );
    super::text::depth_line(&mut s, doc.pipeline, doc.streams());
    if let Some(t0) = doc.started_at {
        let skew = doc
            .parts
            .iter()
            .filter_map(|p| p.start_skew_ms)
            .fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "  started {}, the parts within {skew:.2} ms of each other",
            crate::fleet::format_rfc3339(unix(t0))
        );
    }
    s
}

/// The per-part table: rate, p99, errors and start skew of each part, to
/// spot the one bad host.
pub fn parts_table(parts: &[PartRow]) -> String {
    if parts.is_empty() {
        return String::new();
    }
    let width = parts
        .iter()
        .map(|p| p.host.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 32);
    let mut s = format!(
        "  Parts:\n    {:<7} {:<width$} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8}\n",
        "Part", "Host", "Skew", "Requests", "Req/s", "Target/s", "p99", "Errors"
    );
    for p in parts {
        let host: String = p.host.chars().take(width).collect();
        let _ = writeln!(
            s,
            "    {:<7} {host:<width$} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8}",
            p.part.to_string(),
            p.start_skew_ms
                .map_or("?".into(), |ms| format_time_us(ms * 1000.0)),
            p.requests,
            format!("{:.2}", p.rps),
            p.target_rps.map_or("-".into(), |t| format!("{t:.2}")),
            format_time_us(p.p99_us as f64),
            p.errors
        );
    }
    s
}

mod check;
#[cfg(test)]
mod tests;
