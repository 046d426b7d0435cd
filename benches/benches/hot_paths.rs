//! Micro benchmarks of the per-request hot paths: building a request,
//! parsing responses (small, chunked, a pipelined batch), recording latency,
//! rendering templated requests, and the shard core's work per response
//! (the event in, the next send out), which both engines pay; and, not per
//! request, the shard's once-per-second publication of its live numbers.

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use loadgen::histogram::new_latency_histogram;
use loadgen::http::{RequestSpec, ResponseParser};
use loadgen::scenario::{ConnGen, Entry, Feed, Options, Scenario, ShardGen};
use loadgen::stats::ShardStats;

const SMALL: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 08:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 17\r\nConnection: keep-alive\r\n\r\nHello from nginx\n";

fn chunked_response() -> Vec<u8> {
    let mut v =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        v.extend_from_slice(b"400;ext=1\r\n");
        v.extend(std::iter::repeat_n(b'x', 0x400));
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"0\r\nTrailer: v\r\n\r\n");
    v
}

/// Parses every response in `input`, returning how many completed.
fn parse_all(p: &mut ResponseParser, input: &[u8]) -> usize {
    let mut off = 0;
    let mut n = 0;
    while off < input.len() {
        let (used, r) = p.parse(&input[off..], false).expect("valid input");
        off += used;
        n += usize::from(r.is_some());
    }
    n
}

fn requests(c: &mut Criterion) {
    let mut spec = RequestSpec::get("127.0.0.1:8080", "/api/v1/items?id=42");
    spec.headers
        .push(("Accept".into(), "application/json".into()));
    spec.headers
        .push(("Authorization".into(), "Bearer abcdef0123456789".into()));
    c.bench_function("request/serialize", |b| {
        b.iter(|| black_box(&spec).to_bytes().expect("valid"))
    });
}

fn responses(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    let mut p = ResponseParser::new(64 * 1024);
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_small", |b| {
        b.iter(|| parse_all(&mut p, black_box(SMALL)))
    });
    let chunked = chunked_response();
    g.bench_function("parse_chunked_4k", |b| {
        b.iter(|| parse_all(&mut p, black_box(&chunked)))
    });
    let batch = SMALL.repeat(16);
    g.throughput(Throughput::Elements(16));
    g.bench_function("parse_pipelined_16", |b| {
        b.iter(|| parse_all(&mut p, black_box(&batch)))
    });
    // The same batch split at an awkward point: the spill path.
    g.bench_function("parse_pipelined_16_split", |b| {
        let cut = SMALL.len() * 7 + 40;
        b.iter(|| {
            parse_all(&mut p, black_box(&batch[..cut]))
                + parse_all(&mut p, black_box(&batch[cut..]))
        })
    });
    g.finish();
}

fn recording(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats");
    g.bench_function("histogram_record", |b| {
        let mut h = new_latency_histogram();
        let mut v = 1u64;
        b.iter(|| {
            v = v.wrapping_mul(6364136223846793005).wrapping_add(1);
            h.saturating_record(black_box(50 + (v >> 54)));
        })
    });
    g.bench_function("record_response", |b| {
        b.iter_batched_ref(
            ShardStats::new,
            |s| {
                for i in 0..1000u64 {
                    s.record_response(200, black_box(100 + i));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn scenario(targets: &[(&str, u32)], jwt: bool, feeds: Vec<Feed>) -> Scenario {
    let entries = targets
        .iter()
        .map(|&(t, weight)| {
            let mut spec = RequestSpec::get("127.0.0.1:8080", t);
            spec.headers
                .push(("Accept".into(), "application/json".into()));
            Entry {
                name: t.into(),
                weight,
                spec,
                grpc: None,
            }
        })
        .collect();
    Scenario::compile(
        entries,
        Options {
            feeds,
            jwt: jwt.then(|| (b"secret".to_vec(), r#"{"sub":"user-{{seq}}"}"#.into(), 3600)),
            seed: 1,
            named: false,
            env: &|_| None,
        },
    )
    .expect("valid scenario")
}

/// Rendering one request into a connection's reused buffer: what a
/// templated run adds per request over a fixed one.
fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Elements(1));
    let two = "/items/{{rand:1:100000}}?id={{seq}}";
    let feed = Feed::parse(
        "users",
        std::path::Path::new("users.csv"),
        b"id,name\n1,ann\n2,bob\n3,cy\n",
    )
    .expect("valid feed");
    let cases = [
        ("fixed", scenario(&[("/items/42?id=7", 1)], false, vec![])),
        ("two_placeholders", scenario(&[(two, 1)], false, vec![])),
        ("two_placeholders_jwt", scenario(&[(two, 1)], true, vec![])),
        (
            "weighted_3_with_feed",
            scenario(
                &[
                    (two, 8),
                    ("/users/{{feed:users.id}}", 1),
                    ("/search?q={{uuid}}", 1),
                ],
                false,
                vec![feed],
            ),
        ),
    ];
    for (name, sc) in &cases {
        let mut sg = ShardGen::new(sc, 0, 1);
        let mut cg = ConnGen::new(sc, 0, 0);
        let mut out = Vec::with_capacity(sc.max_request_len());
        g.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                match sc.fixed_bytes() {
                    Some(bytes) => out.extend_from_slice(bytes),
                    None => {
                        sc.render(&mut sg, &mut cg, black_box(1_800_000_000_000), &mut out);
                    }
                }
                black_box(out.len())
            })
        });
    }
    // A token is minted once per connection per lifetime; this is that
    // cost (HMAC-SHA256 and base64), paid when the token expires.
    let sc = scenario(&[(two, 1)], true, vec![]);
    let mut sg = ShardGen::new(&sc, 0, 1);
    let mut cg = ConnGen::new(&sc, 0, 0);
    let mut out = Vec::with_capacity(sc.max_request_len());
    let mut now_ms = 1_800_000_000_000u64;
    g.bench_function("jwt_mint_and_render", |b| {
        b.iter(|| {
            out.clear();
            now_ms += 3_600_000;
            sc.render(&mut sg, &mut cg, now_ms, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

/// The shard core benches' run: 64 connections for an hour, to
/// 127.0.0.1:8080.
fn core_config() -> loadgen::config::Config {
    let url = loadgen::url::Url::parse("http://127.0.0.1:8080/").expect("valid URL");
    let addr = url.resolve().expect("an IP literal");
    let mut cfg = loadgen::config::Config::for_url(url, addr);
    cfg.connections = 64;
    cfg.duration = Some(std::time::Duration::from_secs(3600));
    cfg
}

/// A shard core for `cfg` with every connection up and its first sends
/// taken.
fn connected_core<'a>(
    cfg: &'a loadgen::config::Config,
    progress: &'a loadgen::shard::ShardProgress,
    stop: &'a std::sync::atomic::AtomicBool,
) -> loadgen::shard::Core<'a> {
    use loadgen::shard::{Action, Core, EngineCaps, plan};
    let shard = plan(cfg).remove(0);
    let mut core = Core::new(
        cfg,
        &shard,
        EngineCaps { silent_sends: true },
        progress,
        stop,
    );
    core.start(0);
    let mut actions = Vec::new();
    core.take_actions(&mut actions);
    for a in std::mem::take(&mut actions) {
        if let Action::Connect {
            conn, generation, ..
        } = a
        {
            core.on_connected(conn, generation, 1);
        }
    }
    core.take_actions(&mut actions);
    core
}

/// One closed-loop exchange through the shard core, as an engine drives it:
/// a response arrives, the core books it and asks for the next send, the
/// engine takes the action and stamps the send. `_logged`: with
/// `--request-log`, the core's line per response (the buffer emptied when
/// full, as the engine does after writing it; the write is not timed).
fn shard_core(c: &mut Criterion) {
    use loadgen::shard::ShardProgress;
    use std::sync::atomic::AtomicBool;

    let mut g = c.benchmark_group("shard_core");
    for (depth, logged) in [(1usize, false), (16, false), (1, true), (16, true)] {
        let mut cfg = core_config();
        cfg.pipeline = depth;
        cfg.request_log = logged.then(|| loadgen::config::RequestLogSpec {
            path: "/dev/null".into(),
            sample: 1,
        });
        let (progress, stop) = (ShardProgress::default(), AtomicBool::new(false));
        let mut core = connected_core(&cfg, &progress, &stop);
        let mut actions = Vec::with_capacity(256);
        let batch = SMALL.repeat(depth);
        let mut now = 1_000u64;
        let mut conn = 0u32;
        g.throughput(Throughput::Elements(depth as u64));
        let name = format!(
            "response_and_next_send_depth_{depth}{}",
            if logged { "_logged" } else { "" }
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 1_000;
                core.on_received(conn, 0, black_box(&batch), now);
                core.take_actions(&mut actions);
                let sent = actions.len();
                actions.clear();
                core.stamp(now);
                conn = (conn + 1) % 64;
                if let Some(log) = core.request_log()
                    && log.is_full()
                {
                    log.clear();
                }
                sent
            })
        });
    }
    g.finish();
}

/// A response header block as nginx sends it over HTTP/2: `:status` from
/// the static table, the rest literals without indexing, Huffman-coded.
fn nginx_h2_head() -> Vec<u8> {
    use loadgen::http::h2::hpack::huffman_encode;
    let mut b = vec![0x88];
    for (index, value) in [
        (54u8, &b"nginx/1.22.1"[..]),
        (33, b"Fri, 27 Nov 2026 08:00:00 GMT"),
        (31, b"text/plain"),
        (28, b"17"),
    ] {
        let mut coded = Vec::new();
        huffman_encode(value, &mut coded);
        // Literal without indexing, indexed name (4-bit prefix).
        b.push(0x0f);
        b.push(index - 15);
        b.push(0x80 | coded.len() as u8);
        b.extend(coded);
    }
    b
}

/// The same exchange over HTTP/2 (`--http2 --streams N`): the server's
/// HEADERS and DATA for every stream of one connection arrive, the core
/// books them and opens as many new streams, and the send is acked. The
/// fake server's own work (finding the new stream ids) is not timed.
fn shard_core_h2(c: &mut Criterion) {
    use loadgen::http::h2::{Settings, frame};
    use loadgen::shard::ShardProgress;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    let head = nginx_h2_head();
    let mut g = c.benchmark_group("shard_core_h2");
    for streams in [1u32, 16] {
        let mut cfg = core_config();
        cfg.http2 = Some(Settings {
            streams,
            stream_window: (1 << 30) - 1,
            conn_window: (1 << 30) - 1,
            max_header_list: 65536,
        });
        let (progress, stop) = (ShardProgress::default(), AtomicBool::new(false));
        let mut core = connected_core(&cfg, &progress, &stop);
        let mut actions = Vec::with_capacity(256);
        // Each connection's open streams, read from its last send.
        let opened = |bytes: &[u8]| -> Vec<u32> {
            let mut b = bytes.strip_prefix(&frame::PREFACE[..]).unwrap_or(bytes);
            let mut ids = Vec::new();
            while b.len() >= frame::HEADER_LEN {
                let h = frame::Header::parse(b[..frame::HEADER_LEN].try_into().expect("9 bytes"));
                if h.kind == frame::HEADERS {
                    ids.push(h.stream);
                }
                b = &b[frame::HEADER_LEN + h.len as usize..];
            }
            ids
        };
        let mut open: Vec<Vec<u32>> = (0..64).map(|c| opened(core.send_bytes(c))).collect();
        let mut first = [true; 64];
        for conn in 0..64 {
            core.on_sent(conn, 0, 2);
        }
        core.take_actions(&mut actions);
        actions.clear();
        let mut now = 1_000u64;
        let mut conn = 0u32;
        let mut server = Vec::new();
        g.throughput(Throughput::Elements(streams as u64));
        g.bench_function(format!("response_and_next_stream_streams_{streams}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    server.clear();
                    if std::mem::take(&mut first[conn as usize]) {
                        frame::settings(&mut server, &[]);
                    }
                    for &id in &open[conn as usize] {
                        frame::write_header(
                            &mut server,
                            head.len(),
                            frame::HEADERS,
                            frame::END_HEADERS,
                            id,
                        );
                        server.extend_from_slice(&head);
                        frame::data(&mut server, id, b"Hello from nginx\n", true);
                    }
                    now += 1_000;
                    let t = Instant::now();
                    core.on_received(conn, 0, black_box(&server), now);
                    core.take_actions(&mut actions);
                    core.stamp(now);
                    core.on_sent(conn, 0, now);
                    spent += t.elapsed();
                    assert_eq!(actions.len(), 1, "one send per exchange");
                    actions.clear();
                    open[conn as usize] = opened(core.send_bytes(conn));
                    core.take_actions(&mut actions);
                    actions.clear();
                    conn = (conn + 1) % 64;
                }
                spent
            })
        });
    }
    g.finish();
}

/// What a shard does once per second for the live numbers (the progress
/// line and `--metrics-listen`): a second of a busy shard, 100k responses
/// spread over 20 µs … 50 ms, and as many lag samples.
fn progress(c: &mut Criterion) {
    use loadgen::shard::ShardProgress;
    let mut stats = ShardStats::with_requests(3);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..100_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        stats.record_request((i % 3) as u16, 200, 20 + x % 50_000);
        stats.lag.saturating_record(1 + x % 2_000);
    }
    stats.roll_second();
    let p = ShardProgress::with_requests(3);
    c.bench_function("progress/publish_once_per_second", |b| {
        b.iter(|| p.publish(black_box(&stats)))
    });
}

criterion_group!(
    benches,
    requests,
    responses,
    recording,
    render,
    shard_core,
    shard_core_h2,
    progress
);
criterion_main!(benches);
