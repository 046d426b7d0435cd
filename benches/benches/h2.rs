//! Micro benchmarks of HPACK (issue 23): decoding the response header
//! blocks that nginx and Go's net/http send, and encoding requests.
//!
//! Timed in thread CPU time, not wall time: what loadgen competes on is
//! client CPU per request, and these VMs are shared, so wall time also
//! counts the turns other processes take on the CPU.

use std::time::Duration;

use criterion::{Bencher, Criterion, Throughput, black_box, criterion_group, criterion_main};
use loadgen::http::RequestSpec;
use loadgen::http::h2::hpack::{Decoder, FixedRequest, RequestEncoder, RequestFields};

/// Response blocks to `GET /` captured from the servers with a raw HTTP/2
/// client (the same as in tests/tests/alloc.rs). nginx 1.22.1: `:status`
/// indexed; server, date, content-type, content-length and last-modified
/// as literals with incremental indexing (Huffman-coded), every response;
/// etag and accept-ranges as literals without indexing, names and values
/// Huffman-coded. Go 1.19: the first response inserts content-type,
/// content-length and date; later ones are four indexed bytes.
/// `_fresh`: on a new connection's decoder, every coded value decoded;
/// otherwise on one decoder, as the responses of one connection (nginx's
/// repeated inserts then find their coded values in the table).
const NGINX_BLOCK: &str = "887689aa6355e580ae212e1f6196dd6d5f4a01c52f948a080271403b704edc6dc53168df\
    5f87497ca589d34d1f5c0231376c96dd6d5f4a01c52f948a080271403b704edc6da53168df00832a47378afe5c8c2d\
    80ae8d6087f9008919085ad2b583aa62a3848fd24a8f";
const GO_FIRST_BLOCK: &str = "885f92497ca58ae819aafb50938ec415305a99567b5c0231346196dd6d5f4a01c52f\
    948a080271403b704f5c0b4a62d1bf";
const GO_REPEAT_BLOCK: &str = "88c0bfbe";

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `b.iter(f)`, timed in CPU time.
fn cpu_iter<R>(b: &mut Bencher<'_>, mut f: impl FnMut() -> R) {
    b.iter_custom(|iters| {
        let start = thread_cpu();
        for _ in 0..iters {
            black_box(f());
        }
        thread_cpu() - start
    })
}

/// Decoding `block` as the first response of a connection: on a fresh
/// decoder each time (made outside the timing), so every coded value is
/// Huffman-decoded.
fn cpu_iter_fresh(b: &mut Bencher<'_>, block: &[u8]) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(256);
            let mut decoders: Vec<Decoder> =
                (0..n).map(|_| Decoder::new(4096, 64 * 1024)).collect();
            let start = thread_cpu();
            for d in &mut decoders {
                black_box(d.decode(black_box(block), |_, _| {}).expect("valid").status);
            }
            total += thread_cpu() - start;
            left -= n;
        }
        total
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn decoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("hpack");
    g.throughput(Throughput::Elements(1));
    let nginx = unhex(NGINX_BLOCK);
    let go_first = unhex(GO_FIRST_BLOCK);
    let go_repeat = unhex(GO_REPEAT_BLOCK);
    // One decoder per case, as one connection: nginx's inserts churn the
    // table (evictions, the ring's moves) as they would in a run.
    let mut dec = Decoder::new(4096, 64 * 1024);
    g.bench_function("decode_nginx", |b| {
        cpu_iter(b, || {
            dec.decode(black_box(&nginx), |_, _| {})
                .expect("valid")
                .status
        })
    });
    let mut dec = Decoder::new(4096, 64 * 1024);
    let mut buf = Vec::new();
    g.bench_function("decode_nginx_every_value", |b| {
        cpu_iter(b, || {
            dec.decode(black_box(&nginx), |_, v| {
                buf.clear();
                v.decode_into(&mut buf).expect("valid");
                black_box(&buf);
            })
            .expect("valid")
            .status
        })
    });
    g.bench_function("decode_nginx_fresh", |b| cpu_iter_fresh(b, &nginx));
    g.bench_function("decode_go_first_fresh", |b| cpu_iter_fresh(b, &go_first));
    let mut dec = Decoder::new(4096, 64 * 1024);
    dec.decode(&go_first, |_, _| {}).expect("valid");
    g.bench_function("decode_go_repeat", |b| {
        cpu_iter(b, || {
            dec.decode(black_box(&go_repeat), |_, _| {})
                .expect("valid")
                .status
        })
    });
    // A general-purpose decoder on the same nginx block, for scale: every
    // field decoded into owned vectors.
    let mut oracle = httlib_hpack::Decoder::with_dynamic_size(4096);
    let mut fields = Vec::with_capacity(16);
    g.bench_function("httlib_hpack_decode_nginx", |b| {
        cpu_iter(b, || {
            let mut block = black_box(&nginx).clone();
            fields.clear();
            oracle.decode(&mut block, &mut fields).expect("valid");
            fields.len()
        })
    });
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("hpack");
    g.throughput(Throughput::Elements(1));
    let mut spec = RequestSpec::get("127.0.0.1:8080", "/api/v1/items?id=42");
    spec.headers
        .push(("Accept".into(), "application/json".into()));
    spec.headers
        .push(("Authorization".into(), "Bearer abcdef0123456789".into()));
    spec.headers.push((
        "X-Request-Id".into(),
        "0b3c9e6a-5f1d-4c2b-9a7e-2d8f6b1c3e4a".into(),
    ));
    let head = spec.to_bytes().expect("valid");
    let mut fields = RequestFields::new();
    let mut conn = RequestEncoder::new();
    let mut out = Vec::new();
    // A templated request: its rendered HTTP/1.1 head to fields to a block.
    g.bench_function("encode_templated", |b| {
        cpu_iter(b, || {
            fields.from_http1(black_box(&head), b"http").expect("valid");
            out.clear();
            conn.encode_literal(fields.iter(), &mut out);
            out.len()
        })
    });
    fields.from_http1(&head, b"http").expect("valid");
    g.bench_function("encode_templated_fields_ready", |b| {
        cpu_iter(b, || {
            out.clear();
            conn.encode_literal(black_box(&fields).iter(), &mut out);
            out.len()
        })
    });
    let fixed = FixedRequest::new(fields.iter());
    conn.encode_fixed(&fixed, &mut out);
    g.bench_function("encode_fixed_repeat", |b| {
        cpu_iter(b, || {
            out.clear();
            conn.encode_fixed(black_box(&fixed), &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, decoding, encoding);
criterion_main!(benches);
