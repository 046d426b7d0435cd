//! The core over HTTP/2: a fake server reads the client's frames from the
//! send buffer and answers with frames of its own.

use super::*;
use crate::http::h2::{Settings, frame};

/// `:status: 200` as HPACK's static entry 8.
const STATUS_200: u8 = 0x88;

fn h2_config(streams: u32) -> Config {
    let mut cfg = config();
    cfg.http2 = Some(Settings {
        streams,
        stream_window: (1 << 30) - 1,
        conn_window: (1 << 30) - 1,
        max_header_list: 64 * 1024,
    });
    cfg
}

fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_header(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

fn settings() -> Vec<u8> {
    frame_bytes(frame::SETTINGS, 0, 0, &[])
}

/// A whole response on `stream`.
fn ok(stream: u32) -> Vec<u8> {
    let mut b = frame_bytes(frame::HEADERS, frame::END_HEADERS, stream, &[STATUS_200]);
    b.extend(frame_bytes(frame::DATA, frame::END_STREAM, stream, b"ok"));
    b
}

fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame_bytes(frame::RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// The streams the client opened in the send buffer of `conn`.
fn opened(f: &Fake<'_>, conn: u32) -> Vec<u32> {
    let mut b = f.core.send_bytes(conn);
    if b.starts_with(frame::PREFACE) {
        b = &b[frame::PREFACE.len()..];
    }
    let mut ids = Vec::new();
    while b.len() >= 9 {
        let h = frame::Header::parse(b[..9].try_into().unwrap());
        if h.kind == frame::HEADERS {
            ids.push(h.stream);
        }
        b = &b[9 + h.len as usize..];
    }
    ids
}

/// Frames of `kind` in the send buffer of `conn`.
fn frames_of(f: &Fake<'_>, conn: u32, kind: u8) -> Vec<(u32, Vec<u8>)> {
    let mut b = f.core.send_bytes(conn);
    if b.starts_with(frame::PREFACE) {
        b = &b[frame::PREFACE.len()..];
    }
    let mut v = Vec::new();
    while b.len() >= 9 {
        let h = frame::Header::parse(b[..9].try_into().unwrap());
        let end = 9 + h.len as usize;
        if h.kind == kind {
            v.push((h.stream, b[9..end].to_vec()));
        }
        b = &b[end..];
    }
    v
}

#[test]
fn streams_complete_in_any_order_and_n_is_exact() {
    let mut cfg = h2_config(4);
    cfg.duration = None;
    cfg.requests = Some(10);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    assert_eq!(
        sends(&f.connect(0, 0)),
        1,
        "preface, settings and 4 requests"
    );
    let mut ids = opened(&f, 0);
    assert_eq!(ids.len(), 4);
    f.sent(0, 0);
    let mut server = settings();
    let mut answered = 0;
    while answered < 10 {
        // The newest first: HTTP/2 does not answer in order.
        let id = ids.pop().expect("a stream to answer");
        server.extend(ok(id));
        let a = f.recv(0, 0, &std::mem::take(&mut server));
        answered += 1;
        if sends(&a) > 0 {
            // The answered stream's slot got the next request.
            ids.extend(opened(&f, 0));
            f.sent(0, 0);
        }
    }
    assert!(ids.is_empty(), "{ids:?} left open");
    let st = f.core.stats();
    assert_eq!(st.responses, 10);
    assert_eq!(st.errors.total(), 0);
    assert_eq!(st.reissued, 0);
    assert_eq!(st.ttfb.len(), 10);
    assert!(f.at(MS).iter().any(|a| matches!(a, Action::Close { .. })));
    assert!(f.core.is_finished());
}

#[test]
fn goaway_sends_the_unprocessed_streams_again_on_a_new_connection() {
    let mut cfg = h2_config(4);
    cfg.duration = None;
    cfg.requests = Some(4);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    let ids = opened(&f, 0);
    f.sent(0, 0);
    // The server takes the first stream only, answers it, then closes.
    let mut server = settings();
    let mut goaway = Vec::new();
    frame::goaway(&mut goaway, ids[0], frame::NO_ERROR);
    server.extend(goaway);
    assert!(
        connects(&f.recv(0, 0, &server)).is_empty(),
        "one stream left"
    );
    assert_eq!(f.core.stats().reissued, 3);
    let a = f.recv(0, 0, &ok(ids[0]));
    assert_eq!(connects(&a), [(0, 1)], "drained: replaced");
    assert_eq!(f.core.stats().responses, 1);
    f.core.on_eof(0, 0, f.now);
    f.connect(0, 1);
    let again = opened(&f, 0);
    assert_eq!(again.len(), 3);
    f.sent(0, 1);
    let mut server = settings();
    for id in again {
        server.extend(ok(id));
    }
    f.recv(0, 1, &server);
    let st = f.core.stats();
    assert_eq!((st.responses, st.errors.total()), (4, 0));
    assert_eq!(st.h2.as_ref().unwrap().goaways, 1);
    f.at(MS);
    assert!(f.core.is_finished());
}

#[test]
fn refused_streams_are_retried_and_resets_fail_their_request() {
    let mut cfg = h2_config(2);
    cfg.duration = None;
    cfg.requests = Some(3);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    let ids = opened(&f, 0);
    f.sent(0, 0);
    let mut server = settings();
    server.extend(rst(ids[0], frame::REFUSED_STREAM));
    server.extend(rst(ids[1], frame::INTERNAL_ERROR));
    assert_eq!(sends(&f.recv(0, 0, &server)), 1);
    let st = f.core.stats();
    assert_eq!(st.errors.stream_reset, 1);
    assert_eq!(st.reissued, 1);
    let resets: Vec<_> = st.h2.as_ref().unwrap().resets().collect();
    assert_eq!(resets, [("INTERNAL_ERROR", 1), ("REFUSED_STREAM", 1)]);
    // The refused request and the third one, on the same connection.
    let ids = opened(&f, 0);
    assert_eq!(ids.len(), 2);
    f.sent(0, 0);
    f.recv(0, 0, &[ok(ids[0]), ok(ids[1])].concat());
    let st = f.core.stats();
    assert_eq!((st.responses, st.errors.total()), (2, 1));
    f.at(MS);
    assert!(f.core.is_finished(), "2 answered + 1 failed = -n 3");
}

#[test]
fn a_slow_stream_is_cancelled_but_a_silent_connection_is_replaced() {
    let cfg = h2_config(2);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    let ids = opened(&f, 0);
    f.sent(0, 0);
    // ids[1] is never answered; ids[0] and the request after it are, the
    // second one after ids[1] left: the server is alive.
    f.now = 10 * MS;
    f.recv(0, 0, &[settings(), ok(ids[0])].concat());
    let next = opened(&f, 0);
    f.sent(0, 0);
    f.now = 105 * MS;
    f.recv(0, 0, &ok(next[0]));
    f.sent(0, 0);
    let a = f.at(150 * MS);
    assert!(connects(&a).is_empty(), "the connection stays");
    assert_eq!(f.core.stats().errors.timeout, 1);
    let rsts = frames_of(&f, 0, frame::RST_STREAM);
    assert_eq!(rsts, [(ids[1], frame::CANCEL.to_be_bytes().to_vec())]);
    // Now nothing comes back at all: the connection is dead.
    f.sent(0, 0);
    let a = f.at(400 * MS);
    assert_eq!(connects(&a), [(0, 1)]);
    assert_eq!(f.core.stats().errors.timeout, 2);
}

#[test]
fn open_loop_puts_due_requests_on_free_streams() {
    let mut cfg = h2_config(8);
    cfg.schedule = Some(Schedule::constant(1000.0));
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.sent(0, 0);
    // Five requests come due over 4 ms with nothing answered: five
    // streams, one connection, each send one batch.
    for t in 0..5 {
        f.at(t * MS);
        f.sent(0, 0);
    }
    assert_eq!(f.core.conns[0].slots.inflight, 5);
    assert_eq!(f.core.stats().conn_waits, 0);
    // Three more fill the eight streams; the ninth waits for one.
    for t in 5..9 {
        f.at(t * MS);
        f.sent(0, 0);
    }
    assert_eq!(f.core.conns[0].slots.inflight, 8);
    let st = f.core.stats();
    assert_eq!(st.lag.len() + st.conn_waits, 8);
}

#[test]
fn a_server_that_answers_in_http1_ends_the_run() {
    let cfg = h2_config(1);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.sent(0, 0);
    f.recv(
        0,
        0,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    );
    f.at(MS);
    assert!(f.core.is_finished());
    let st = f.core.stats();
    assert_eq!(st.errors.protocol, 1);
    let why = st.h2.as_ref().unwrap().refused.as_deref().unwrap();
    assert!(why.contains("HTTP/1"), "{why}");
}

#[test]
fn templated_requests_become_streams_with_their_own_fields() {
    let mut cfg = h2_config(2);
    let mut spec = crate::http::RequestSpec::get("h", "/item/{{seq}}");
    spec.method = "POST".into();
    spec.body = b"n={{seq}}".to_vec();
    cfg.scenario = templated(spec);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    let data: Vec<Vec<u8>> = frames_of(&f, 0, frame::DATA)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(data, [b"n=0".to_vec(), b"n=1".to_vec()]);
    let heads = frames_of(&f, 0, frame::HEADERS);
    let path = |block: &[u8]| {
        let mut d = crate::http::h2::hpack::Decoder::new(4096, 65536);
        let mut path = Vec::new();
        d.decode(block, |name, value| {
            if name == b":path" {
                path = value.bytes(&mut Vec::new()).unwrap().to_vec();
            }
        })
        .unwrap();
        String::from_utf8(path).unwrap()
    };
    assert_eq!(path(&heads[0].1), "/item/0");
    assert_eq!(path(&heads[1].1), "/item/1");
}

/// A literal header field, without indexing, its name given.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

/// A named scenario of fixed requests, weight 1 each: `(name, call)`,
/// a gRPC call of `s.S/M` or a plain GET.
fn grpc_scenario(requests: &[(&str, bool)]) -> std::sync::Arc<Scenario> {
    use crate::scenario::{Entry, Options};
    let entries = requests
        .iter()
        .map(|&(name, call)| {
            let mut spec = crate::http::RequestSpec::get("h:1", "/page");
            let mut grpc = None;
            if call {
                let m = crate::grpc::Method::parse("s.S/M").unwrap();
                spec.method = "POST".into();
                spec.target = m.path();
                spec.headers = vec![("content-type".into(), "application/grpc".into())];
                spec.body = crate::grpc::frame::body_of(&[]);
                grpc = Some(m);
            }
            Entry {
                name: name.into(),
                weight: 1,
                spec,
                grpc,
            }
        })
        .collect();
    let options = Options {
        feeds: Vec::new(),
        jwt: None,
        seed: 1,
        named: requests.len() > 1,
        env: &|_| None,
    };
    std::sync::Arc::new(Scenario::compile(entries, options).unwrap())
}

/// gRPC calls and plain requests share the connections: only the calls'
/// answers have a gRPC status (each counted for its request too), and
/// what failed is non-OK calls plus the plain requests' non-2xx, each
/// counted once (a call's 503 is UNAVAILABLE, not also a non-2xx).
#[test]
fn grpc_calls_and_plain_requests_mix_on_one_connection() {
    for (status, grpc_status, want_code, plain_failed) in [
        (STATUS_200, "3", 3u8, false),
        // `:status: 503` as a literal: the calls are UNAVAILABLE.
        (0, "0", 14, true),
    ] {
        let mut cfg = h2_config(16);
        cfg.duration = None;
        cfg.requests = Some(16);
        cfg.scenario = grpc_scenario(&[("call", true), ("page", false)]);
        cfg.grpc = Some(crate::grpc::GrpcRun::default());
        let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
        let mut f = Fake::new(&cfg, &p, &s);
        f.actions();
        f.connect(0, 0);
        let ids = opened(&f, 0);
        assert_eq!(ids.len(), 16);
        f.sent(0, 0);
        let mut server = settings();
        for &id in &ids {
            // The same answer to every stream: a status, then trailers
            // with a grpc-status a plain request's response may carry
            // too (it means nothing there).
            let head = if status == 0 {
                vec![0x08, 3, b'5', b'0', b'3']
            } else {
                vec![status]
            };
            server.extend(frame_bytes(frame::HEADERS, frame::END_HEADERS, id, &head));
            server.extend(frame_bytes(
                frame::HEADERS,
                frame::END_HEADERS | frame::END_STREAM,
                id,
                &literal("grpc-status", grpc_status),
            ));
        }
        f.recv(0, 0, &server);
        let st = f.core.stats();
        assert_eq!(st.responses, 16);
        let (calls, pages) = (&st.by_request[0], &st.by_request[1]);
        assert_eq!(calls.responses + pages.responses, 16);
        assert!(
            calls.responses > 0 && pages.responses > 0,
            "seed 1 picks both"
        );
        let g = st.grpc.as_deref().expect("gRPC stats");
        assert_eq!(g.status.iter().sum::<u64>(), calls.responses, "calls only");
        assert_eq!(g.status[want_code as usize], calls.responses);
        assert_eq!(calls.grpc[want_code as usize], calls.responses);
        assert_eq!(
            pages.grpc.iter().sum::<u64>(),
            0,
            "a plain request has none"
        );
        let plain = if plain_failed { pages.responses } else { 0 };
        assert_eq!(st.unsuccessful(), calls.responses + plain);
    }
}

#[test]
fn grpc_calls_are_counted_by_status_from_trailers_trailers_only_and_http() {
    let mut cfg = h2_config(4);
    cfg.duration = None;
    cfg.requests = Some(3);
    cfg.scenario = grpc_scenario(&[("call", true)]);
    cfg.grpc = Some(crate::grpc::GrpcRun::default());
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    let ids = opened(&f, 0);
    assert_eq!(ids.len(), 3);
    f.sent(0, 0);
    let mut server = settings();
    // OK in the trailers, after a message.
    server.extend(frame_bytes(
        frame::HEADERS,
        frame::END_HEADERS,
        ids[0],
        &[STATUS_200],
    ));
    server.extend(frame_bytes(frame::DATA, 0, ids[0], &[0, 0, 0, 0, 0]));
    server.extend(frame_bytes(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        ids[0],
        &literal("grpc-status", "0"),
    ));
    // INVALID_ARGUMENT, Trailers-Only.
    let mut only = vec![STATUS_200];
    only.extend(literal("grpc-status", "3"));
    server.extend(frame_bytes(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        ids[1],
        &only,
    ));
    // A proxy's 503 without a gRPC status: UNAVAILABLE.
    server.extend(frame_bytes(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        ids[2],
        &[0x08, 3, b'5', b'0', b'3'],
    ));
    f.recv(0, 0, &server);
    let st = f.core.stats();
    assert_eq!(st.responses, 3);
    assert_eq!((st.status[200], st.status[503]), (2, 1));
    let g = st.grpc.as_deref().expect("gRPC stats");
    let names: Vec<_> = g.by_name().collect();
    assert_eq!(
        names,
        [("OK", 1), ("INVALID_ARGUMENT", 1), ("UNAVAILABLE", 1)]
    );
    assert_eq!(g.latency.iter().map(|h| h.len()).sum::<u64>(), 3);
    assert_eq!(st.unsuccessful(), 2, "non-OK calls, not non-2xx responses");
    f.at(MS);
    assert!(
        f.core.is_finished(),
        "-n 3: three calls whatever their status"
    );
}
