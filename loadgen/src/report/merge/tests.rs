//! Merging constructed reports: exact sums and percentiles, seconds
//! aligned by wall clock, and every refusal naming what differs.

use super::*;
use crate::report::{Fleet, Histograms, Latency};
use crate::stats::ShardStats;

const T0: f64 = 1_767_225_600.0;

/// A part's report as a run writes it: `values` (µs) spread over
/// `seconds`, measured from `start` (Unix s), open loop at `target`.
fn part(k: u32, of: u32, values: &[u64], seconds: usize, start: f64) -> Input {
    let mut t = ShardStats::new();
    let mut series = Vec::new();
    let per = values.len().div_ceil(seconds);
    for (i, chunk) in values.chunks(per).enumerate() {
        let mut h = new_latency_histogram();
        for &v in chunk {
            t.record_completion(true, v * 1000, (200, None), (0, 0, 0));
            h.record(v).unwrap();
        }
        series.push(Second {
            second: i + 1,
            requests: chunk.len() as u64,
            rate: chunk.len() as f64,
            target_rate: Some(100.0),
            p99_us: quantile(&h, 0.99),
            unix_s: Some(start + i as f64),
            histogram: Some(encode_histogram(&h)),
            ..Second::default()
        });
    }
    t.rate.record(values.len() as u64).unwrap();
    t.connect.record(50).unwrap();
    t.ttfb.record(70).unwrap();
    let mut r = Report::of_stats(&t, seconds as f64, true);
    r.url = "http://127.0.0.1:1/".into();
    r.mode = Mode::Open;
    r.shards = 1;
    r.connections = 2;
    r.pipeline = 1;
    r.series = series;
    r.target_rps = Some(100.0);
    r.started_at = Some(start);
    r.host = format!("host{k}");
    r.part = Some(Part { index: k, of });
    r.fleet = Some(Fleet {
        connections: 2 * of as usize,
        schedule: Some(format!("{}", 100 * of)),
        duration_s: Some(seconds as f64),
        timeout_s: 2.0,
        keepalive: true,
        request_sha256: "abc".into(),
        ..Fleet::default()
    });
    Input {
        source: format!("part{k}.json"),
        report: r,
    }
}

fn values(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + (x >> 33) % 50_000
        })
        .collect()
}

#[test]
fn counters_add_and_percentiles_are_exact() {
    let vals = [values(1, 300), values(2, 300), values(3, 300)];
    let inputs = vec![
        part(2, 3, &vals[1], 3, T0 + 0.003),
        part(1, 3, &vals[0], 3, T0),
        part(3, 3, &vals[2], 3, T0 + 0.001),
    ];
    let m = merge(&inputs).unwrap();
    let r = &m.report;
    assert_eq!(r.requests, 900);
    let mut all = new_latency_histogram();
    for v in vals.iter().flatten() {
        all.record(*v).unwrap();
    }
    assert_eq!(r.latency_us, Latency::of(&all));
    assert_eq!(r.latency_histogram().unwrap(), all);
    assert_eq!(r.shards, 3);
    assert_eq!(r.connections, 6);
    // The window runs from the first start to the last end.
    // (Unix seconds in f64 keep about 0.2 µs.)
    assert!((r.duration_s - 3.003).abs() < 1e-6, "{}", r.duration_s);
    assert!((r.rps - 900.0 / 3.003).abs() < 1e-3);
    assert!((r.target_rps.unwrap() - 900.0 / 3.003).abs() < 1e-3);
    assert_eq!(r.started_at, Some(T0));
    // Parts in order, with their skew.
    let idx: Vec<u32> = r.parts.iter().map(|p| p.part.index).collect();
    assert_eq!(idx, [1, 2, 3]);
    assert!((r.parts[1].start_skew_ms.unwrap() - 3.0).abs() < 1e-3);
    // Seconds aligned: three of them, each the sum of the parts'.
    assert_eq!(r.series.len(), 3);
    for (i, s) in r.series.iter().enumerate() {
        assert_eq!(s.requests, 300);
        assert_eq!(s.unix_s, Some(T0 + i as f64));
        assert_eq!(s.target_rate, Some(300.0));
        let mut h = new_latency_histogram();
        for v in vals.iter().flat_map(|v| &v[i * 100..(i + 1) * 100]) {
            h.record(*v).unwrap();
        }
        assert_eq!(s.p99_us, quantile(&h, 0.99), "second {}", i + 1);
    }
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let text = m.text(true);
    assert!(
        text.starts_with("Merged 3 of 3 parts @ http://127.0.0.1:1/\n"),
        "{text}"
    );
    assert!(text.contains("  900 requests in 3.00s"), "{text}");
    assert!(text.contains("  Parts:"), "{text}");
    assert!(text.contains("host2"), "{text}");
    assert_eq!(r.summary_text, m.text(false));
}

#[test]
fn a_missing_part_and_a_late_one_are_warned_about() {
    let inputs = vec![
        part(1, 3, &values(1, 10), 1, T0),
        part(3, 3, &values(3, 10), 1, T0 + 0.2),
    ];
    let r = merge(&inputs).unwrap().report;
    let w = r.warnings.join("\n");
    assert!(w.contains("part(s) 2 of 3 missing"), "{w}");
    assert!(w.contains("200.0 ms apart"), "{w}");
}

fn refusal(edit: impl Fn(&mut Report)) -> String {
    let a = part(1, 2, &values(1, 10), 1, T0);
    let mut b = part(2, 2, &values(2, 10), 1, T0);
    edit(&mut b.report);
    merge(&[a, b]).err().expect("refused").to_string()
}

#[test]
fn different_configurations_are_refused_by_name() {
    let e = refusal(|r| r.url = "http://127.0.0.1:2/".into());
    assert!(e.contains("differ in the URL"), "{e}");
    assert!(e.contains("part1.json and part2.json"), "{e}");
    let e = refusal(|r| r.fleet.as_mut().unwrap().schedule = Some("500".into()));
    assert!(e.contains("-R/--stages"), "{e}");
    let e = refusal(|r| r.fleet.as_mut().unwrap().connections = 9);
    assert!(e.contains("-c (the fleet's connections)"), "{e}");
    let e = refusal(|r| r.fleet.as_mut().unwrap().request_sha256 = "other".into());
    assert!(e.contains("what is sent"), "{e}");
    let e = refusal(|r| r.pipeline = 4);
    assert!(e.contains("--pipeline"), "{e}");
    let e = refusal(|r| r.part = Some(Part { index: 2, of: 3 }));
    assert!(e.contains("fleet's size"), "{e}");
    let e = refusal(|r| r.part = Some(Part { index: 1, of: 2 }));
    assert!(e.contains("both part 1/2"), "{e}");
}

#[test]
fn reports_that_cannot_merge_exactly_are_refused() {
    let e = refusal(|r| r.histograms = None);
    assert!(e.contains("part2.json is not a part's report"), "{e}");
    let e = refusal(|r| r.part = None);
    assert!(e.contains("not a part's report"), "{e}");
    let e = refusal(|r| r.series[0].histogram = None);
    assert!(e.contains("no series second 1 histogram"), "{e}");
    let e = refusal(|r| {
        r.histograms = Some(Histograms {
            latency: "not base64".into(),
            ..r.histograms.clone().unwrap()
        })
    });
    assert!(e.contains("latency histogram is not"), "{e}");
    let e = refusal(|r| r.histograms.as_mut().unwrap().connect = None);
    assert!(e.contains("no connect histogram"), "{e}");
    assert_eq!(merge(&[]).err(), Some(MergeError::Empty));
    let merged = merge(&[part(1, 1, &values(1, 10), 1, T0)]).unwrap().report;
    let e = merge(&[Input {
        source: "m.json".into(),
        report: merged,
    }])
    .err()
    .unwrap();
    assert_eq!(e, MergeError::Merged("m.json".into()));
}

/// A part whose latencies exceed the range a run records (its report
/// written with wider bounds, or by hand) is widened into the fleet's
/// histograms: its requests count in the percentiles as in the totals.
#[test]
fn a_part_beyond_the_usual_range_is_kept_in_the_percentiles() {
    let a = part(1, 2, &values(1, 10), 1, T0);
    let mut b = part(2, 2, &values(2, 10), 1, T0);
    let mut wide = Histogram::<u64>::new_with_bounds(1, 1 << 40, 3).unwrap();
    wide.record_n(7_200_000_000, 10).unwrap();
    let text = encode_histogram(&wide);
    b.report.histograms.as_mut().unwrap().latency = text.clone();
    b.report.series[0].histogram = Some(text);
    let m = merge(&[a, b]).unwrap();
    let h = m.report.latency_histogram().unwrap();
    assert_eq!(h.len(), 20, "both parts' requests");
    assert_eq!(m.stats.latency.len(), m.report.requests);
    assert!(h.equivalent(m.report.latency_us.p99, 7_200_000_000));
    assert_eq!(m.report.series[0].requests, 20);
    assert!(m.report.series[0].p99_us >= 7_000_000_000);
}

/// Every number the merge converts or adds, out of range in one part's
/// report (as a hand edit or a broken log could leave it): refused with
/// the file and the field, never a panic or a wrapped sum.
#[test]
fn out_of_range_numbers_are_refused_by_file_and_field() {
    type Edit = Box<dyn Fn(&mut Report)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "duration_s is 100000000000000000000",
            Box::new(|r| r.duration_s = 1e20),
        ),
        ("duration_s is -1", Box::new(|r| r.duration_s = -1.0)),
        (
            "started_at is 10000000000000000000",
            Box::new(|r| r.started_at = Some(1e19)),
        ),
        ("started_at is -5", Box::new(|r| r.started_at = Some(-5.0))),
        (
            "series[0].unix_s is 10000000000000000000",
            Box::new(|r| r.series[0].unix_s = Some(1e19)),
        ),
        (
            "part is 2/4000000000",
            Box::new(|r| {
                r.part = Some(Part {
                    index: 2,
                    of: 4_000_000_000,
                })
            }),
        ),
        (
            "requests is 18446744073709551615",
            Box::new(|r| r.requests = u64::MAX),
        ),
        (
            "errors.timeout is 9223372036854775808",
            Box::new(|r| r.errors.timeout = 1 << 63),
        ),
        (
            "errors.tls is 9223372036854775808",
            Box::new(|r| r.errors.tls = 1 << 63),
        ),
        (
            "status.codes.200 is 9223372036854775808",
            Box::new(|r| *r.status.codes.get_mut("200").unwrap() = 1 << 63),
        ),
        (
            "series[0].requests is 9223372036854775808",
            Box::new(|r| r.series[0].requests = 1 << 63),
        ),
        (
            "unexpected is 9223372036854775808",
            Box::new(|r| r.unexpected = Some(1 << 63)),
        ),
        (
            "shards is 9223372036854775808",
            Box::new(|r| r.shards = 1 << 63),
        ),
        (
            "tls.handshakes is 9223372036854775808",
            Box::new(|r| {
                r.tls = Some(crate::report::TlsReport {
                    handshakes: 1 << 63,
                    ..Default::default()
                })
            }),
        ),
    ];
    for (want, edit) in cases {
        let e = refusal(edit);
        assert!(
            e.starts_with(&format!("part2.json: {want}, outside ")),
            "{want}: {e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
    // The largest values a run can write still merge.
    let a = part(1, 2, &values(1, 10), 1, T0);
    let mut b = part(2, 2, &values(2, 10), 1, T0);
    b.report.errors.timeout = check::MAX_COUNT;
    b.report.duration_s = 86_400.0 * 365.0;
    let m = merge(&[a, b]).unwrap();
    assert_eq!(m.report.errors.timeout, check::MAX_COUNT);
}

#[test]
fn grpc_statuses_and_their_latencies_add_up() {
    let mut inputs = vec![
        part(1, 2, &values(1, 50), 1, T0),
        part(2, 2, &values(2, 50), 1, T0),
    ];
    for (k, inp) in inputs.iter_mut().enumerate() {
        let mut g = crate::grpc::GrpcStats::default();
        g.record(0, 100 + k as u64, true);
        g.record(3, 2000, true);
        g.record(3, 4000 * (k as u64 + 1), true);
        let mut rep = crate::report::GrpcReport::of(&g);
        rep.service = "s.S".into();
        rep.method = "M".into();
        inp.report.grpc = Some(rep);
    }
    let m = merge(&inputs).unwrap();
    let g = m.report.grpc.clone().expect("merged gRPC");
    assert_eq!((g.service.as_str(), g.method.as_str()), ("s.S", "M"));
    assert_eq!(g.status["OK"], 2);
    assert_eq!(g.status["INVALID_ARGUMENT"], 4);
    let bad = &g.latency_by_status["INVALID_ARGUMENT"];
    assert!(bad.max >= 8000 && bad.max < 8100, "{bad:?}");
    let text = m.text(false);
    assert!(
        text.contains("Non-OK gRPC statuses: 4 (INVALID_ARGUMENT 4)"),
        "{text}"
    );
}

/// QUIC's counts add up, its RTT quantiles come from the merged histogram,
/// its connection errors merge by name, and the JSON has the fields.
#[test]
fn quic_counts_and_rtts_merge_exactly() {
    let mut inputs = vec![
        part(1, 2, &values(1, 50), 1, T0),
        part(2, 2, &values(2, 50), 1, T0),
    ];
    for (k, inp) in inputs.iter_mut().enumerate() {
        let k = k as u64;
        let mut q = crate::http::h3::QuicStats {
            handshakes: 2,
            zero_rtt_attempted: 1,
            zero_rtt_accepted: k,
            packets_sent: 1000 + k,
            packets_lost: 3,
            datagrams_sent: 600,
            sends: 200 + 100 * k,
            datagrams_received: 900 + k,
            receives: 300,
            ..Default::default()
        };
        for _ in 0..150 - 100 * k {
            q.rtt.record(100 + 100 * k).unwrap();
        }
        q.rtt.record(50_000).unwrap();
        q.add_error(
            if k == 0 {
                "IDLE_TIMEOUT"
            } else {
                "H3_NO_ERROR"
            }
            .into(),
        );
        q.add_error("IDLE_TIMEOUT".into());
        inp.report.http_version = "3".into();
        let mut rep = crate::report::QuicReport::of(&q);
        rep.streams_per_conn = 8;
        inp.report.quic = Some(rep);
        inp.report.histograms.as_mut().unwrap().quic_rtt = Some(encode_histogram(&q.rtt));
    }
    let m = merge(&inputs).unwrap();
    let q = m.report.quic.clone().expect("merged QUIC");
    assert_eq!(q.streams_per_conn, 8);
    assert_eq!(q.handshakes, 4);
    assert_eq!((q.zero_rtt.attempted, q.zero_rtt.accepted), (2, 1));
    assert_eq!((q.packets_sent, q.packets_lost), (2001, 6));
    assert_eq!((q.datagrams_sent, q.sends), (1200, 500));
    assert_eq!(q.datagrams_per_send, 2.4);
    assert_eq!((q.datagrams_received, q.receives), (1801, 600));
    // 150 at 100 µs, 50 at 200, 2 at 50 ms: the merged histogram's.
    assert!((100..=101).contains(&q.rtt_us.p50), "{:?}", q.rtt_us);
    assert!((200..=201).contains(&q.rtt_us.p99), "{:?}", q.rtt_us);
    assert_eq!(q.connection_errors["IDLE_TIMEOUT"], 3);
    assert_eq!(q.connection_errors["H3_NO_ERROR"], 1);
    assert_eq!(m.report.http_version, "3");
    let json = serde_json::to_value(&m.report).unwrap();
    for field in [
        "handshakes",
        "zero_rtt",
        "packets_sent",
        "packets_lost",
        "datagrams_per_send",
        "rtt_us",
        "connection_errors",
    ] {
        assert!(!json["quic"][field].is_null(), "{field}: {json}");
    }
    assert_eq!(json["quic"]["rtt_us"]["p99"], q.rtt_us.p99);
    let text = m.text(false);
    assert!(text.contains("HTTP/3, 8 streams per connection"), "{text}");
    assert!(
        text.contains("QUIC: 4 handshakes (0-RTT 2, accepted 1), 2001 packets sent, 6 lost, 2.40 datagrams per send"),
        "{text}"
    );
    assert!(
        text.contains("QUIC connection errors: H3_NO_ERROR 1, IDLE_TIMEOUT 3"),
        "{text}"
    );
}

/// A scenario's gRPC calls merge per request, and per method from them.
#[test]
fn scenario_calls_merge_per_request_and_per_method() {
    let mut inputs = vec![
        part(1, 2, &values(1, 50), 1, T0),
        part(2, 2, &values(2, 50), 1, T0),
    ];
    for (k, inp) in inputs.iter_mut().enumerate() {
        let mut t = ShardStats::with_requests(2);
        t.grpc = Some(Box::default());
        let n = k as u64 + 1;
        for _ in 0..n {
            t.record_completion(false, 1000, (200, Some(3)), (0, 0, 0));
            t.record_completion(false, 1000, (200, None), (0, 0, 1));
        }
        let mut r = Report::of_stats(&t, 1.0, false);
        let call = crate::report::RequestGrpc::of("s.S", "Fail", &t.by_request[0].grpc);
        r.by_request = t
            .by_request
            .iter()
            .zip(["fail", "page"])
            .map(|(st, name)| RequestReport {
                name: name.into(),
                grpc: (name == "fail").then(|| call.clone()),
                ..RequestReport::measured(st, 1.0, None)
            })
            .collect();
        inp.report.by_request = r.by_request;
        let mut g = r.grpc.expect("calls");
        g.name(None, &inp.report.by_request);
        inp.report.grpc = Some(g);
    }
    let m = merge(&inputs).unwrap();
    let fail = m.report.by_request[0].grpc.as_ref().expect("a call");
    assert_eq!(fail.status["INVALID_ARGUMENT"], 3);
    assert_eq!(
        (fail.service.as_str(), fail.method.as_str()),
        ("s.S", "Fail")
    );
    assert!(m.report.by_request[1].grpc.is_none(), "a plain request");
    let g = m.report.grpc.clone().expect("merged gRPC");
    assert_eq!(g.methods["s.S/Fail"]["INVALID_ARGUMENT"], 3);
    assert_eq!((g.service.as_str(), g.method.as_str()), ("s.S", "Fail"));
    let text = m.text(false);
    assert!(
        text.contains("  gRPC statuses by request:\n    fail INVALID_ARGUMENT 3\n"),
        "{text}"
    );
}
