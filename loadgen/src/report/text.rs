//! wrk's summary, line for line, plus what wrk leaves out.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::RunReport;
use crate::config::Config;
use crate::grpc::GrpcStats;
use crate::histogram::{mean, quantile, within_stdev};
use crate::http::h2::H2Stats;
use crate::http::h3::QuicStats;
use crate::stats::{Errors, Group, ShardStats, non_2xx_3xx};
use crate::tls::TlsStats;
use crate::units::{format_binary, format_metric, format_time_s, format_time_us};

/// A span of the header: `10s`, `2m` as wrk writes them, and `500.00ms`
/// or `1.50s` for what wrk cannot be given (a warm-up of 500 ms once
/// showed as `0s`).
fn span(secs: f64) -> String {
    if secs >= 1.0 && secs.fract() == 0.0 {
        format_time_s(secs)
    } else {
        format_time_us(secs * 1e6)
    }
}

/// `Running 10s test @ URL` and the threads/connections line, printed
/// before the run starts (as wrk does).
pub fn header(cfg: &Config) -> String {
    let what = match (cfg.duration, cfg.requests) {
        (_, Some(n)) => format!("{n} requests"),
        (Some(d), _) => span(d.as_secs_f64()),
        (None, None) => String::new(),
    };
    let mut s = match &cfg.scenario_file {
        Some(f) => format!(
            "Running {what} test @ {} (scenario {})\n",
            cfg.url.raw,
            f.display()
        ),
        None => format!("Running {what} test @ {}\n", cfg.url.raw),
    };
    if let Some(path) = cfg.peer.unix() {
        // Before the newline: the first line says where the load went.
        s.insert_str(s.len() - 1, &format!(" via unix:{}", path.display()));
    }
    if let Some(sched) = &cfg.schedule {
        let stages: Vec<String> = sched
            .stages
            .iter()
            .map(|st| {
                if st.from == st.to {
                    format!("{:.0} req/s", st.from)
                } else {
                    format!(
                        "{:.0}->{:.0} req/s over {}",
                        st.from,
                        st.to,
                        format_time_s(st.duration.as_secs_f64())
                    )
                }
            })
            .collect();
        let _ = writeln!(s, "  open loop: {}", stages.join(", then "));
    }
    if !cfg.warmup.is_zero() {
        let _ = writeln!(
            s,
            "  warm-up {} (not measured)",
            span(cfg.warmup.as_secs_f64())
        );
    }
    let _ = writeln!(
        s,
        "  {} threads and {} connections",
        cfg.shards, cfg.connections
    );
    if cfg.part.is_fleet() {
        let mut totals = vec![format!("{} connections", cfg.fleet_connections)];
        if let Some(n) = cfg.requests {
            totals.push(format!("{n} requests"));
        }
        if let Some(sched) = &cfg.schedule {
            totals.push(crate::schedule::Schedule::describe_spec(&sched.spec()));
        }
        let _ = writeln!(
            s,
            "  part {} of {}: this part's share of the fleet's {}",
            cfg.part.index,
            cfg.part.of,
            totals.join(", ")
        );
    }
    if let Some(at) = cfg.start_at {
        let _ = writeln!(
            s,
            "  measured window starts at {}",
            crate::fleet::format_rfc3339(at)
        );
    }
    let streams = match (cfg.http2, cfg.http3) {
        (Some(h), _) => Some(("HTTP/2", h.streams)),
        (None, Some(n)) => Some(("HTTP/3", n)),
        (None, None) => None,
    };
    depth_line(&mut s, cfg.pipeline, streams);
    let sc = &cfg.scenario;
    let methods = sc.methods();
    if !methods.is_empty() {
        let names: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        let _ = writeln!(s, "  gRPC {}, unary calls", names.join(", "));
    }
    if sc.named {
        let total: u64 = sc.requests.iter().map(|r| r.weight as u64).sum();
        let mix: Vec<String> = sc
            .requests
            .iter()
            .map(|r| format!("{} {:.0}%", r.name, 100.0 * r.weight as f64 / total as f64))
            .collect();
        let _ = writeln!(s, "  scenario: {}", mix.join(", "));
    }
    if sc.fixed_bytes().is_none() {
        let _ = writeln!(s, "  templated requests, --seed {}", sc.seed);
    }
    if cfg.engine != crate::config::Engine::Uring {
        let _ = writeln!(s, "  engine: {}", cfg.engine.name());
    }
    s
}

/// `  HTTP/2, 16 streams per connection` (or HTTP/3) or `  pipeline depth
/// 16`, for a run's header and a merged fleet's.
pub fn depth_line(s: &mut String, pipeline: usize, streams: Option<(&str, u32)>) {
    match streams {
        Some((version, n)) => {
            let _ = writeln!(
                s,
                "  {version}, {n} stream{} per connection",
                if n == 1 { "" } else { "s" }
            );
        }
        None if pipeline > 1 => {
            let _ = writeln!(s, "  pipeline depth {pipeline}");
        }
        None => {}
    }
}

/// wrk's `print_units`: right-aligned in `width`, with two trailing spaces
/// less one for each letter in the last two characters, so columns line
/// up on the number whatever the unit.
fn units(msg: &str, width: usize) -> String {
    let b = msg.as_bytes();
    let mut pad = 2usize;
    if b.last().is_some_and(u8::is_ascii_alphabetic) {
        pad -= 1;
    }
    if b.len() >= 2 && b[b.len() - 2].is_ascii_alphabetic() {
        pad -= 1;
    }
    let w = width - pad;
    format!("{msg:>w$}{}", &"  "[..pad])
}

fn stats_line(name: &str, h: &Histogram<u64>, fmt: fn(f64) -> String) -> String {
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean(), h.stdev(), h.max() as f64)
    };
    format!(
        "    {name:<10}{}{}{}{:8.2}%\n",
        units(&fmt(mean), 8),
        units(&fmt(sd), 10),
        units(&fmt(max), 9),
        within_stdev(h, 1.0)
    )
}

/// What the summary shows, whoever measured it: a run ([`summary`]) or a
/// merged fleet (`report::merge`).
pub struct SummaryView<'a> {
    /// The measured stats, all shards (and parts) merged.
    pub total: &'a ShardStats,
    /// Open loop: the rate asked for over the measured time.
    pub target_rps: Option<f64>,
    pub rps: f64,
    pub transfer_per_s: f64,
    /// With `--expect-status`: responses outside it, and the list.
    pub unexpected: Option<(u64, String)>,
    /// Names of `total.by_request`'s requests.
    pub request_names: Vec<&'a str>,
    pub interrupted: bool,
    pub warnings: Vec<String>,
    /// `--http2`: the streams asked for per connection.
    pub streams: Option<u32>,
}

impl<'a> SummaryView<'a> {
    pub fn of(r: &'a RunReport<'_>) -> SummaryView<'a> {
        SummaryView {
            total: &r.out.total,
            target_rps: r.target_rps(),
            rps: r.rps(),
            transfer_per_s: r.transfer_per_s(),
            unexpected: r.unexpected().map(|n| (n, r.expected_text())),
            request_names: r
                .cfg
                .scenario
                .requests
                .iter()
                .map(|q| q.name.as_str())
                .collect(),
            interrupted: r.interrupted,
            warnings: r.warnings(),
            streams: r.cfg.http2.map(|h| h.streams),
        }
    }
}

/// The summary after the run.
pub fn summary(r: &RunReport<'_>, latency: bool) -> String {
    render(&SummaryView::of(r), latency)
}

/// The summary of `r`, line for line as wrk prints it, plus ours.
pub fn render(r: &SummaryView<'_>, latency: bool) -> String {
    let t = r.total;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  Thread Stats{:>6}{:>11}{:>8}{:>12}",
        "Avg", "Stdev", "Max", "+/- Stdev"
    );
    s.push_str(&stats_line("Latency", &t.latency, format_time_us));
    s.push_str(&stats_line("Req/Sec", &t.rate, format_metric));
    let open_loop = r.target_rps.is_some();
    if latency {
        s.push_str(if open_loop {
            "  Latency Distribution (corrected: from intended send time)\n"
        } else {
            "  Latency Distribution\n"
        });
        distribution(&mut s, &t.latency);
        breakdown(&mut s, t);
    }
    if let Some(target) = r.target_rps {
        s.push_str("  Service Time Distribution (from actual send; not corrected)\n");
        distribution(&mut s, &t.service);
        let q = |h: &Histogram<u64>, q: f64| format_time_us(quantile(h, q) as f64);
        let _ = writeln!(
            s,
            "  Schedule lag (actual - intended send): p50 {}, p99 {}, max {}",
            q(&t.lag, 0.5),
            q(&t.lag, 0.99),
            format_time_us(t.lag.max() as f64)
        );
        if t.conn_waits > 0 {
            let _ = writeln!(
                s,
                "  Requests that waited for a free connection: {}",
                t.conn_waits
            );
        }
        let _ = writeln!(
            s,
            "  Target rate {:.2} req/s, achieved {:.2} req/s ({:.2}%)",
            target,
            r.rps,
            if target > 0.0 {
                100.0 * r.rps / target
            } else {
                0.0
            }
        );
    }
    let _ = writeln!(
        s,
        "  {} requests in {}, {}B read",
        t.responses,
        format_time_us(t.elapsed.as_micros() as f64),
        format_binary(t.bytes_read as f64)
    );
    if let Some(h) = t.h2.as_deref() {
        h2_line(&mut s, h, r.streams);
    }
    if let Some(q) = t.quic.as_deref() {
        quic_line(&mut s, q);
    }
    error_lines(&mut s, &t.errors, t.tls.as_deref());
    let non = t.non_2xx_3xx();
    if non > 0 {
        let _ = writeln!(s, "  Non-2xx or 3xx responses: {non}");
    }
    if let Some(g) = t.grpc.as_deref() {
        grpc_line(&mut s, g);
    }
    if let Some((n, expected)) = &r.unexpected {
        let _ = writeln!(s, "  Unexpected status (expected {expected}): {n}");
    }
    if t.reconnects + t.reissued > 0 {
        let _ = writeln!(
            s,
            "  Reconnects: {}, requests re-sent after a close: {}",
            t.reconnects, t.reissued
        );
    }
    let _ = writeln!(s, "Requests/sec: {:9.2}", r.rps);
    let _ = writeln!(s, "Transfer/sec: {:>10}B", format_binary(r.transfer_per_s));
    by_request(&mut s, r);
    if r.interrupted {
        s.push_str("(interrupted: the numbers cover the time until Ctrl-C)\n");
    }
    for w in &r.warnings {
        s.push_str(w);
        s.push('\n');
    }
    s
}

/// A line per [`Group`] of error kinds that had any (`Socket errors:
/// connect 0, read 0, write 0, timeout 3, reset 0`: wrk's four fields
/// first, so existing parsers keep working). An https run's summary line
/// comes before its TLS errors line, which starts with the handshake's
/// failures.
fn error_lines(s: &mut String, e: &Errors, tls: Option<&TlsStats>) {
    for group in Group::ALL {
        let mut fields: Vec<(&str, u64)> = Vec::new();
        if group == Group::Tls
            && let Some(t) = tls
        {
            tls_line(s, t);
            let h = &t.errors;
            fields.extend([
                ("cert", h.cert),
                ("alert", h.alert),
                ("protocol", h.protocol),
                ("handshake timeout", h.timeout),
                ("closed in handshake", h.closed),
            ]);
        }
        fields.extend(
            e.iter()
                .filter(|(k, _)| k.group() == group)
                .map(|(k, n)| (k.label(), n)),
        );
        if fields.iter().all(|&(_, n)| n == 0) {
            continue;
        }
        let fields: Vec<String> = fields.iter().map(|(l, n)| format!("{l} {n}")).collect();
        let _ = writeln!(s, "  {} errors: {}", group.title(), fields.join(", "));
    }
}

/// What HTTP/2 did, when anything happened worth a line: `HTTP/2: 19
/// GOAWAYs, RST_STREAM REFUSED_STREAM 3, 2 window stalls, 128 streams
/// asked, the server allows 100`.
fn h2_line(s: &mut String, h: &H2Stats, streams: Option<u32>) {
    let mut parts = Vec::new();
    if h.goaways > 0 {
        parts.push(format!(
            "{} GOAWAY{}",
            h.goaways,
            if h.goaways == 1 { "" } else { "s" }
        ));
    }
    let resets: Vec<String> = h.resets().map(|(name, n)| format!("{name} {n}")).collect();
    if !resets.is_empty() {
        parts.push(format!("RST_STREAM {}", resets.join(", ")));
    }
    if h.window_stalls > 0 {
        parts.push(format!("{} window stalls", h.window_stalls));
    }
    if let (Some(asked), Some(max)) = (streams, h.max_concurrent_streams)
        && max < asked
    {
        parts.push(format!("{asked} streams asked, the server allows {max}"));
    }
    if !parts.is_empty() {
        let _ = writeln!(s, "  HTTP/2: {}", parts.join(", "));
    }
}

/// What QUIC did: `QUIC: 2 handshakes (0-RTT 1, accepted 1), 10021
/// packets sent, 0 lost, 1.00 datagrams per send, 1.00 per receive, RTT p50
/// 95us p99 1.20ms` (`, Retry 2` in the parentheses when servers sent
/// any), then the connections that ended in error by code, if any.
fn quic_line(s: &mut String, q: &QuicStats) {
    let retries = if q.retries > 0 {
        format!(", Retry {}", q.retries)
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "  QUIC: {} handshake{} (0-RTT {}, accepted {}{retries}), {} packets sent, {} lost, {:.2} datagrams per send, {:.2} per receive, RTT p50 {} p99 {}",
        q.handshakes,
        if q.handshakes == 1 { "" } else { "s" },
        q.zero_rtt_attempted,
        q.zero_rtt_accepted,
        q.packets_sent,
        q.packets_lost,
        q.datagrams_per_send(),
        q.datagrams_per_receive(),
        format_time_us(quantile(&q.rtt, 0.5) as f64),
        format_time_us(quantile(&q.rtt, 0.99) as f64),
    );
    if !q.connection_errors.is_empty() {
        let errors: Vec<String> = q
            .connection_errors
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let _ = writeln!(s, "  QUIC connection errors: {}", errors.join(", "));
    }
}

/// `TLS 1.3 TLS_AES_256_GCM_SHA384 http/1.1: 64 handshakes, 0.00% resumed,
/// handshake p99 1.20ms`.
fn tls_line(s: &mut String, t: &TlsStats) {
    let what = [
        t.version.map(|v| format!("TLS {v}")),
        t.cipher.clone(),
        t.alpn.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let _ = writeln!(
        s,
        "  {}: {} handshakes, {:.2}% resumed, handshake p99 {}",
        if what.is_empty() {
            "TLS".to_string()
        } else {
            what
        },
        t.handshakes,
        if t.handshakes > 0 {
            100.0 * t.resumed as f64 / t.handshakes as f64
        } else {
            0.0
        },
        format_time_us(quantile(&t.handshake, 0.99) as f64)
    );
}

/// The per-name table of a scenario run.
fn by_request(s: &mut String, r: &SummaryView<'_>) {
    let t = r.total;
    if t.by_request.is_empty() {
        return;
    }
    let width = r
        .request_names
        .iter()
        .map(|q| q.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let _ = writeln!(
        s,
        "  By request:\n    {:<width$} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "Name", "Requests", "Share", "Avg", "p50", "p99", "Max", "Errors", "Non-2xx"
    );
    let q = |h: &Histogram<u64>, q: f64| format_time_us(quantile(h, q) as f64);
    for (req, st) in r.request_names.iter().zip(&t.by_request) {
        let name: String = req.chars().take(width).collect();
        let _ = writeln!(
            s,
            "    {name:<width$} {:>10} {:>6.2}% {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            st.responses,
            if t.responses > 0 {
                100.0 * st.responses as f64 / t.responses as f64
            } else {
                0.0
            },
            format_time_us(mean(&st.latency)),
            q(&st.latency, 0.5),
            q(&st.latency, 0.99),
            format_time_us(st.latency.max() as f64),
            st.errors.requests(),
            non_2xx_3xx(&st.status),
        );
    }
    let calls: Vec<(String, &crate::stats::RequestStats)> = r
        .request_names
        .iter()
        .zip(&t.by_request)
        .filter(|(_, st)| st.grpc.iter().any(|&n| n > 0))
        .map(|(q, st)| (q.chars().take(width).collect(), st))
        .collect();
    if !calls.is_empty() {
        let _ = writeln!(s, "  gRPC statuses by request:");
    }
    for (name, st) in calls {
        let codes: Vec<String> = crate::grpc::stats::by_name(&st.grpc)
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        let _ = writeln!(s, "    {name:<width$} {}", codes.join(", "));
    }
}

/// `  Non-OK gRPC statuses: 12 (INVALID_ARGUMENT 10, UNAVAILABLE 2)`: the
/// codes most seen first, at most four.
fn grpc_line(s: &mut String, g: &GrpcStats) {
    let non = g.non_ok();
    if non == 0 {
        return;
    }
    let mut codes: Vec<(&str, u64)> = g.by_name().filter(|&(n, _)| n != "OK").collect();
    codes.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let top: Vec<String> = codes
        .iter()
        .take(4)
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    let more = if codes.len() > 4 { ", …" } else { "" };
    let _ = writeln!(
        s,
        "  Non-OK gRPC statuses: {non} ({}{more})",
        top.join(", ")
    );
}

/// Where the time went (`--latency`): set-up, first byte, whole response,
/// and the latency of each status class.
fn breakdown(s: &mut String, t: &crate::stats::ShardStats) {
    let row = |s: &mut String, name: &str, h: &Histogram<u64>| {
        let q = |q: f64| format_time_us(quantile(h, q) as f64);
        // gRPC's longest names (FAILED_PRECONDITION) push their row out.
        let _ = writeln!(
            s,
            "    {name:<16}{:>10}{:>10}{:>10}{:>10}{:>10}",
            h.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            format_time_us(h.max() as f64)
        );
    };
    let _ = writeln!(
        s,
        "  Latency Breakdown{:>13}{:>10}{:>10}{:>10}{:>10}",
        "count", "p50", "p90", "p99", "max"
    );
    row(s, "connect", &t.connect);
    row(s, "first byte", &t.ttfb);
    row(s, "whole response", &t.latency);
    for (i, h) in t.by_class.iter().enumerate() {
        if !h.is_empty() {
            row(s, &format!("status {}xx", i + 1), h);
        }
    }
    if let Some(g) = t.grpc.as_deref() {
        for (code, h) in g.latency.iter().enumerate() {
            if !h.is_empty() {
                row(s, crate::grpc::status::name(code as u8), h);
            }
        }
    }
}

fn distribution(s: &mut String, h: &Histogram<u64>) {
    for (label, q) in [
        ("50", 0.5),
        ("75", 0.75),
        ("90", 0.9),
        ("99", 0.99),
        ("99.9", 0.999),
        ("99.99", 0.9999),
    ] {
        let v = quantile(h, q);
        let _ = writeln!(s, "{:>7}%{}", label, units(&format_time_us(v as f64), 10));
    }
    let _ = writeln!(
        s,
        "{:>8}{}",
        "max",
        units(&format_time_us(h.max() as f64), 10)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_below_a_second_are_not_zero() {
        assert_eq!(span(10.0), "10s");
        assert_eq!(span(120.0), "2m");
        assert_eq!(span(0.5), "500.00ms");
        assert_eq!(span(1.5), "1.50s");
    }

    #[test]
    fn units_pad_like_wrk() {
        assert_eq!(units("635.91us", 8), "635.91us");
        assert_eq!(units("0.89ms", 10), "    0.89ms");
        assert_eq!(units("56.20k", 8), " 56.20k ");
        assert_eq!(units("93.00", 8), " 93.00  ");
    }
}
