//! The raw HTTP/2 test server (tests/src/h2server/) proved with
//! independent clients, h2load and nghttp (which prints every frame):
//! exact counts when it behaves, and for each misbehaviour, that it did
//! what it says (frames written, nghttp2's own verdict) and what h2load
//! made of it.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use loadgen_tests::h2server::{Behaviour, H2Options, H2Server, Malformed, frame};
use loadgen_tests::nghttp2::{H2load, h2load, have_nghttp2, nghttp};
use loadgen_tests::pki::Pki;
use loadgen_tests::skip;

/// How long a server may take to see its clients' connections end.
const IDLE: Duration = Duration::from_secs(5);

/// h2load `args` against `url`, with an inactivity timeout so that a
/// server that never answers ends the run.
fn load(url: &str, args: &[&str]) -> H2load {
    h2load(&[args, &["-N", "1s", url]].concat())
}

fn pki() -> Option<Pki> {
    Pki::new().map_err(|e| skip(&e)).ok()
}

/// A temporary file of `len` bytes, for h2load's `-d`.
struct BodyFile(std::path::PathBuf);

impl BodyFile {
    fn new(name: &str, len: usize) -> BodyFile {
        let p = std::env::temp_dir().join(format!("loadgen-h2-{}-{name}", std::process::id()));
        std::fs::write(&p, vec![b'b'; len]).expect("write body file");
        BodyFile(p)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn serves_exact_counts_over_h2c() {
    if !have_nghttp2() {
        return;
    }
    for (n, c, m) in [(500u64, 1u64, 1), (999, 3, 7)] {
        let server = H2Server::plain(Behaviour::Normal);
        let (ns, cs, ms) = (n.to_string(), c.to_string(), m.to_string());
        let out = load(&server.url("/"), &["-n", &ns, "-c", &cs, "-m", &ms]);
        assert_eq!(out.succeeded, n, "{}", out.output);
        let rec = server.record_when_idle(IDLE);
        assert_eq!((rec.requests.len() as u64, rec.responses), (n, n));
        assert_eq!(rec.connections, c);
        assert!(rec.violations.is_empty(), "{:?}", rec.violations);
        assert!(rec.max_open_streams <= m, "{}", rec.max_open_streams);
    }
    let server = H2Server::plain(Behaviour::Normal);
    let out = load(
        &server.url("/x?y=1"),
        &["-n", "1000", "-c", "4", "-m", "16"],
    );
    assert_eq!(out.succeeded, 1000, "{}", out.output);
    assert_eq!(out.protocol, "h2c");
    let rec = server.record_when_idle(IDLE);
    assert_eq!((rec.requests.len(), rec.responses), (1000, 1000));
    assert_eq!(rec.connections, 4);
    assert!(rec.violations.is_empty(), "{:?}", rec.violations);
    let first = &rec.requests[0];
    assert_eq!(
        (
            first.method.as_str(),
            first.path.as_str(),
            first.scheme.as_str()
        ),
        ("GET", "/x?y=1", "http")
    );
    assert_eq!(first.authority, format!("127.0.0.1:{}", server.port));
    assert!(first.header("user-agent").unwrap().starts_with("h2load"));
    // h2load's settings: push off, a window of 2^30-1 (its -w default).
    assert!(rec.client_settings[0].contains(&(frame::SETTINGS_ENABLE_PUSH, 0)));
    assert!(rec.client_settings[0].contains(&(frame::SETTINGS_INITIAL_WINDOW_SIZE, (1 << 30) - 1)));
    assert_eq!(rec.settings_acks, 4);
}

#[test]
fn serves_exact_counts_over_tls_with_alpn_h2() {
    let Some(pki) = pki() else { return };
    if !have_nghttp2() {
        return;
    }
    let server = H2Server::tls(&pki, Behaviour::Normal);
    let out = load(&server.url("/"), &["-n", "1000", "-c", "4", "-m", "16"]);
    assert_eq!(out.succeeded, 1000, "{}", out.output);
    assert_eq!(out.protocol, "h2");
    let rec = server.record_when_idle(IDLE);
    assert_eq!((rec.requests.len(), rec.responses), (1000, 1000));
    assert_eq!(rec.requests[0].scheme, "https");
    assert_eq!((rec.connections, rec.tls_failures), (4, 0));

    // A client that offers only http/1.1 fails the handshake (no common
    // protocol): the server chose nothing, and says so.
    let out = load(&server.url("/"), &["--h1", "-n", "1"]);
    assert_eq!(out.succeeded, 0, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert_eq!(rec.tls_failures, 1);
    assert_eq!(rec.requests.len(), 1000);

    // Told to offer http/1.1 too, it picks that for such a client, and
    // then hears HTTP/1.1 where the HTTP/2 preface should be.
    let server = H2Options::default()
        .tls(&pki)
        .alpn(&["h2", "http/1.1"])
        .start();
    let out = load(&server.url("/"), &["--h1", "-n", "1"]);
    assert_eq!(out.succeeded, 0, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert_eq!((rec.tls_failures, rec.bad_prefaces), (0, 1));
}

#[test]
fn http_1_1_on_the_h2c_port_is_a_bad_preface() {
    if !have_nghttp2() {
        return;
    }
    let server = H2Server::plain(Behaviour::Normal);
    let out = load(&server.url("/"), &["--h1", "-n", "1"]);
    assert_eq!(out.succeeded, 0, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert_eq!((rec.bad_prefaces, rec.requests.len()), (1, 0));
}

#[test]
fn request_and_response_bodies_within_both_windows() {
    if !have_nghttp2() {
        return;
    }
    // 200 KiB request bodies: three times the server's 64 KiB windows,
    // so they go through only with its WINDOW_UPDATEs.
    let body = BodyFile::new("200k", 200 << 10);
    let server = H2Server::plain(Behaviour::Normal);
    let out = load(
        &server.url("/up"),
        &["-n", "20", "-c", "2", "-m", "4", "-d", body.path()],
    );
    assert_eq!(out.succeeded, 20, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert!(rec.violations.is_empty(), "{:?}", rec.violations);
    assert!(
        rec.requests
            .iter()
            .all(|r| r.method == "POST" && r.body_len == 200 << 10 && r.complete),
        "{:?}",
        rec.requests.iter().map(|r| r.body_len).collect::<Vec<_>>()
    );
    assert_eq!(rec.data_bytes_received, 20 * (200 << 10));
    assert!(
        rec.window_updates_sent >= 20 * 3,
        "{}",
        rec.window_updates_sent
    );

    // 1 MiB responses to a client with 64 KiB windows (-w 16 -W 16): the
    // server waits for the client's WINDOW_UPDATEs and never oversteps.
    let server = H2Options::default().body(vec![b'r'; 1 << 20]).start();
    let out = load(
        &server.url("/down"),
        &["-n", "8", "-c", "2", "-m", "4", "-w", "16", "-W", "16"],
    );
    assert_eq!(out.succeeded, 8, "{}", out.output);
    assert!(
        out.output.contains("8.00MB (8388608) data"),
        "{}",
        out.output
    );
    let rec = server.record_when_idle(IDLE);
    assert!(rec.window_waits > 0);
    assert!(
        rec.window_updates_received >= 8 * 15,
        "{}",
        rec.window_updates_received
    );
}

#[test]
fn goaway_after_n_streams_answers_up_to_its_last_stream_id() {
    if !have_nghttp2() {
        return;
    }
    let server = H2Server::plain(Behaviour::GoawayAfter {
        streams: 10,
        code: frame::NO_ERROR,
        abrupt: false,
    });
    // h2load does not open another connection after a GOAWAY: the other
    // 90 are lost (what loadgen must not do).
    let out = load(&server.url("/"), &["-n", "100", "-c", "1", "-m", "4"]);
    assert_eq!(out.succeeded, 10, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    // The 10th request stream is stream 19.
    assert_eq!(rec.goaways_sent, [(19, frame::NO_ERROR)]);
    assert_eq!((rec.requests.len(), rec.responses), (10, 10));
    // Streams h2load had already sent above 19 were ignored.
    assert_eq!(rec.ignored_streams, out.started - 10, "{}", out.output);
    assert_eq!(rec.connections, 1);
}

#[test]
fn abrupt_goaway_closes_with_streams_unanswered() {
    if !have_nghttp2() {
        return;
    }
    let server = H2Server::plain(Behaviour::GoawayAfter {
        streams: 10,
        code: frame::NO_ERROR,
        abrupt: true,
    });
    let out = load(&server.url("/"), &["-n", "100", "-c", "1", "-m", "4"]);
    let rec = server.record_when_idle(IDLE);
    assert_eq!(rec.goaways_sent, [(19, frame::NO_ERROR)]);
    assert_eq!(rec.requests.len(), 10);
    // The 10th (at least) got no answer, and h2load saw exactly the
    // answers that were sent.
    assert!(!rec.requests[9].responded);
    assert!(rec.responses < 10);
    assert_eq!(out.succeeded, rec.responses, "{}", out.output);
}

#[test]
fn resets_every_kth_stream_with_the_given_code() {
    if !have_nghttp2() {
        return;
    }
    for code in [frame::REFUSED_STREAM, frame::INTERNAL_ERROR] {
        let server = H2Server::plain(Behaviour::ResetEvery { every: 5, code });
        let out = load(&server.url("/"), &["-n", "40", "-c", "2", "-m", "4"]);
        // h2load counts a reset stream as failed, and retries nothing.
        assert_eq!((out.succeeded, out.failed), (32, 8), "{}", out.output);
        let rec = server.record_when_idle(IDLE);
        assert_eq!(rec.resets_sent.len(), 8);
        assert!(rec.resets_sent.iter().all(|&(_, c)| c == code));
        assert_eq!(
            rec.requests
                .iter()
                .filter(|r| r.reset_by_server == Some(code))
                .count(),
            8
        );
        assert_eq!(rec.responses, 32);
    }
}

#[test]
fn max_concurrent_streams_is_advertised_and_enforced() {
    if !have_nghttp2() {
        return;
    }
    let server = H2Options::default()
        .behaviour(Behaviour::MaxConcurrentStreams(2))
        .response_delay(Duration::from_millis(10))
        .start();
    let shown = nghttp(&["-n", &server.url("/")]);
    assert_eq!(
        shown.server_setting("SETTINGS_MAX_CONCURRENT_STREAMS"),
        Some(2),
        "{}",
        shown.output
    );
    let out = load(&server.url("/"), &["-n", "40", "-c", "1", "-m", "8"]);
    let rec = server.record_when_idle(IDLE);
    // Streams h2load opened before it had the settings were refused
    // (not a violation: it could not know); after them it kept to 2.
    assert!(rec.violations.is_empty(), "{:?}", rec.violations);
    assert_eq!(rec.max_open_streams, 2);
    let refused = rec.resets_sent.len() as u64;
    assert!(
        rec.resets_sent
            .iter()
            .all(|&(_, c)| c == frame::REFUSED_STREAM)
    );
    assert_eq!(out.succeeded, 40 - refused, "{}", out.output);
    assert_eq!(rec.responses, 1 + 40 - refused);
}

#[test]
fn a_tiny_stream_window_stalls_request_bodies() {
    if !have_nghttp2() {
        return;
    }
    let body = BodyFile::new("1k", 1024);
    let server = H2Server::plain(Behaviour::SlowStreamWindow {
        window: 16,
        update: 16,
        every: Duration::from_millis(1),
    });
    let started = loadgen_tests::start_clock();
    let out = load(
        &server.url("/"),
        &["-n", "8", "-c", "1", "-m", "4", "-d", body.path()],
    );
    let took = started.elapsed();
    assert_eq!(out.succeeded, 8, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert!(rec.violations.is_empty(), "{:?}", rec.violations);
    assert!(rec.requests.iter().all(|r| r.body_len == 1024));
    // The first 4 streams went by the default window (h2load sent them
    // with its preface); the other 4 got 16 bytes per stream per update,
    // at most one update a millisecond.
    assert!(
        rec.window_updates_sent >= 4 * (1024 / 16 - 1),
        "{}",
        rec.window_updates_sent
    );
    assert!(took >= Duration::from_millis(63), "{took:?}");
}

#[test]
fn a_slow_connection_window_stalls_request_bodies() {
    if !have_nghttp2() {
        return;
    }
    let body = BodyFile::new("100k", 100 << 10);
    let server = H2Server::plain(Behaviour::SlowConnWindow {
        update: 4096,
        every: Duration::from_millis(2),
    });
    let started = loadgen_tests::start_clock();
    let out = load(
        &server.url("/"),
        &["-n", "2", "-c", "1", "-m", "2", "-d", body.path()],
    );
    let took = started.elapsed();
    assert_eq!(out.succeeded, 2, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert!(rec.violations.is_empty(), "{:?}", rec.violations);
    assert_eq!(rec.data_bytes_received, 2 * (100 << 10));
    // All but the first 65,535 bytes waited for 4 KiB a 2 ms.
    let waits = (2 * (100 << 10) - 65_535) / 4096;
    assert!(took >= Duration::from_millis(2 * waits), "{took:?}");
}

#[test]
fn a_server_that_never_sends_settings_writes_nothing() {
    if !have_nghttp2() {
        return;
    }
    let server = H2Server::plain(Behaviour::NoSettings);
    let out = load(&server.url("/"), &["-n", "3", "-c", "1"]);
    assert_eq!(out.succeeded, 0, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert_eq!(rec.bytes_sent, 0);
    // It still heard the request.
    assert_eq!((rec.connections, rec.requests.len()), (1, 1));
}

#[test]
fn a_server_that_sends_settings_but_never_answers() {
    if !have_nghttp2() {
        return;
    }
    let server = H2Server::plain(Behaviour::SilentAfterSettings);
    let out = load(&server.url("/"), &["-n", "3", "-c", "1", "-m", "3"]);
    assert_eq!(out.succeeded, 0, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert_eq!((rec.requests.len(), rec.responses), (3, 0));
    assert_eq!(rec.settings_acks, 1);
    // Our (empty) SETTINGS and the ACK of h2load's: 9 bytes each.
    assert_eq!(rec.bytes_sent, 18);
}

#[test]
fn huge_header_lists_go_out_in_continuations() {
    if !have_nghttp2() {
        return;
    }
    let bytes = (1 << 20) + 1000;
    let server = H2Server::plain(Behaviour::HugeHeaders { bytes });
    let out = load(&server.url("/"), &["-n", "2", "-c", "1"]);
    // nghttp2 refuses a header list that large.
    assert_eq!(out.succeeded, 0, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert!(rec.mischief >= 1);
    assert!(rec.bytes_sent > bytes as u64);
    assert!(
        rec.continuations_sent >= (bytes / 16_384) as u64,
        "{}",
        rec.continuations_sent
    );
}

#[test]
fn an_hpack_bomb_is_small_on_the_wire_and_large_decoded() {
    if !have_nghttp2() {
        return;
    }
    let server = H2Server::plain(Behaviour::HpackBomb {
        value_len: 4000,
        refs: 1000,
    });
    // nghttp decodes it: the entry once, then 1,000 references to it.
    let shown = nghttp(&["-n", &server.url("/")]);
    let stream = shown.first_stream().expect("a response");
    let bombs = shown
        .received_headers(stream)
        .iter()
        .filter(|(n, v)| n == "x-bomb" && v.len() == 4000)
        .count();
    assert_eq!(
        bombs,
        1001,
        "{}",
        &shown.output[..2000.min(shown.output.len())]
    );
    // h2load decodes 4 MB of header list per response and carries on.
    let server = H2Server::plain(Behaviour::HpackBomb {
        value_len: 4000,
        refs: 10_000,
    });
    let out = load(&server.url("/"), &["-n", "20", "-c", "1", "-m", "4"]);
    assert_eq!(out.succeeded, 20, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert_eq!(rec.mischief, 20);
    // About 14 KB a response on the wire, for 40 MB decoded.
    assert!(rec.bytes_sent < 20 * 15_000, "{}", rec.bytes_sent);
}

#[test]
fn malformed_frames_draw_nghttp2s_goaway_with_the_right_code() {
    if !have_nghttp2() {
        return;
    }
    let cases = [
        (Malformed::BadPingLength, frame::FRAME_SIZE_ERROR),
        (Malformed::BadWindowUpdateLength, frame::FRAME_SIZE_ERROR),
        (Malformed::DataOnStreamZero, frame::PROTOCOL_ERROR),
        (Malformed::OversizedFrame, frame::FRAME_SIZE_ERROR),
        (Malformed::HeadersOnEvenStream, frame::PROTOCOL_ERROR),
        (Malformed::InvalidHpack, frame::COMPRESSION_ERROR),
        (Malformed::WindowOverflow, frame::FLOW_CONTROL_ERROR),
        (Malformed::PushPromise, frame::PROTOCOL_ERROR),
        (Malformed::ContinuationWithoutHeaders, frame::PROTOCOL_ERROR),
        // A SETTINGS ACK must be empty.
        (
            Malformed::Raw {
                kind: frame::SETTINGS,
                flags: frame::ACK,
                stream: Some(0),
                payload: vec![0; 6],
            },
            frame::FRAME_SIZE_ERROR,
        ),
    ];
    for (m, code) in cases {
        let what = format!("{m:?}");
        let server = H2Server::plain(Behaviour::Malformed(m));
        let out = load(&server.url("/"), &["-n", "2", "-c", "1"]);
        assert_eq!(out.succeeded, 0, "{what}: {}", out.output);
        let rec = server.record_when_idle(IDLE);
        assert_eq!(rec.mischief, 1, "{what}");
        assert_eq!(rec.goaways_received, [(0, code)], "{what}");
    }
    // Unknown frame types are ignored: every request succeeds.
    let server = H2Server::plain(Behaviour::Malformed(Malformed::UnknownFrameTypes));
    let out = load(&server.url("/"), &["-n", "20", "-c", "2", "-m", "4"]);
    assert_eq!(out.succeeded, 20, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert_eq!((rec.mischief, rec.responses), (20, 20));
    assert!(
        rec.goaways_received
            .iter()
            .all(|&(_, c)| c == frame::NO_ERROR)
    );
}

#[test]
fn a_ping_flood_is_acknowledged_ping_by_ping() {
    if !have_nghttp2() {
        return;
    }
    let server = H2Server::plain(Behaviour::PingFlood { count: 5000 });
    let out = load(&server.url("/"), &["-n", "20", "-c", "2", "-m", "4"]);
    assert_eq!(out.succeeded, 20, "{}", out.output);
    let rec = server.record_when_idle(IDLE);
    assert_eq!((rec.pings_sent, rec.ping_acks), (10_000, 10_000));
}

#[test]
fn unusual_but_valid_responses_frame_by_frame() {
    if !have_nghttp2() {
        return;
    }
    let status = |h: &[(String, String)]| -> Vec<String> {
        h.iter()
            .filter(|(n, _)| n == ":status")
            .map(|(_, v)| v.clone())
            .collect()
    };
    // Trailers after the body.
    let server = H2Server::plain(Behaviour::Trailers);
    let shown = nghttp(&["-n", &server.url("/")]);
    let h = shown.received_headers(shown.first_stream().expect("a response"));
    let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [":status", "content-length", "x-trailer", "x-body-bytes"],
        "{}",
        shown.output
    );
    assert_eq!(shown.frames_received("HEADERS"), 2);
    // Padded HEADERS (with PRIORITY) and DATA.
    let server = H2Server::plain(Behaviour::Padded { pad: 7 });
    let shown = nghttp(&["-n", &server.url("/")]);
    assert!(
        shown.output.contains("; END_HEADERS | PADDED | PRIORITY"),
        "{}",
        shown.output
    );
    assert!(
        shown
            .output
            .contains("; END_STREAM | PADDED\n          (padlen=8)"),
        "{}",
        shown.output
    );
    // The body a byte a frame, then an empty END_STREAM.
    let server = H2Options::default()
        .behaviour(Behaviour::SplitData { chunk: 1 })
        .body("split me")
        .start();
    let shown = nghttp(&["-n", &server.url("/")]);
    assert_eq!(shown.frames_received("DATA"), 9, "{}", shown.output);
    // 103 Early Hints, then the 200.
    let server = H2Server::plain(Behaviour::Informational { status: 103 });
    let shown = nghttp(&["-n", &server.url("/")]);
    let h = shown.received_headers(shown.first_stream().expect("a response"));
    assert_eq!(status(&h), ["103", "200"], "{}", shown.output);
    // h2load takes each kind in its stride.
    for b in [
        Behaviour::Trailers,
        Behaviour::Padded { pad: 255 },
        Behaviour::SplitData { chunk: 2 },
        Behaviour::Informational { status: 100 },
    ] {
        let what = format!("{b:?}");
        let server = H2Server::plain(b);
        let out = load(&server.url("/"), &["-n", "50", "-c", "2", "-m", "4"]);
        assert_eq!(out.succeeded, 50, "{what}: {}", out.output);
        assert_eq!(server.record_when_idle(IDLE).responses, 50, "{what}");
    }
}

#[test]
fn dropping_the_server_ends_its_connections_promptly() {
    let server = H2Server::plain(Behaviour::NoSettings);
    let mut client = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    client.write_all(frame::PREFACE).expect("preface");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let deadline = Instant::now() + IDLE;
    while server.active_connections() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.active_connections(), 1);
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).expect("EOF, not a timeout"), 0);
}
