//! No heap allocation per request: run the engine in-process twice, with
//! 10x the requests the second time, and count allocations. Setup costs
//! the same both times and the per-second series the same per second, so
//! the allowance grows with seconds; any per-request allocation shows up
//! ×18000. (The io_uring engine only: glommio allocates an I/O source per
//! readiness wait, about 1.6 per request here.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use loadgen::config::Config;
use loadgen::http::RequestSpec;
use loadgen::scenario::{Entry, Feed, Options, Scenario};
use loadgen::stats::ShardStats;
use loadgen::url::Url;
use loadgen_tests::Target;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's allocations: work that runs on the test's own thread
    /// is counted apart from the harness, which allocates on its main
    /// thread whenever another test ends.
    static MINE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count() {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    // Not during the thread's teardown, when the slot is gone.
    let _ = MINE.try_with(|m| m.set(m.get() + 1));
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is process-wide: tests that read it take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Allocations and measured seconds of one in-process run.
fn measure(cfg: Config, n: u64) -> (u64, usize) {
    let cfg = cfg.validated().unwrap();
    let stop = AtomicBool::new(false);
    let before = ALLOCS.load(Ordering::SeqCst);
    let out = loadgen::engine::run(&cfg, &stop).unwrap();
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(out.total.responses, n);
    assert_eq!(
        out.total.status[200], n,
        "the target answered every request"
    );
    let seconds = out.shards.iter().map(|s| s.seconds.len()).sum();
    (after - before, seconds)
}

/// What closing one second of the per-second series allocates (its
/// encoded histogram, and the series growing), averaged over a few.
fn allocations_per_second() -> u64 {
    let mut s = ShardStats::new();
    let before = ALLOCS.load(Ordering::SeqCst);
    for i in 0..8 {
        s.record_response(200, 100 + i);
        s.roll_second();
    }
    (ALLOCS.load(Ordering::SeqCst) - before).div_ceil(8)
}

/// 2000 then 20000 requests: setup costs the same, the series costs the
/// same per second, and anything per request would show ×18000.
fn assert_flat(what: &str, run: impl Fn(u64) -> (u64, usize)) {
    let (small, small_s) = run(2_000);
    let (large, large_s) = run(20_000);
    let per_second = allocations_per_second();
    let allowed = small + per_second * (large_s.saturating_sub(small_s) as u64 + 1) + 8;
    assert!(
        large <= allowed,
        "{what}: {small} allocations for 2000 requests ({small_s} s), {large} for 20000 \
         ({large_s} s); the series costs {per_second} per second"
    );
}

fn base_config(target: &Target, path: &str, n: u64, pipeline: usize) -> Config {
    config_for(&target.url(path), n, pipeline)
}

fn config_for(url: &str, n: u64, pipeline: usize) -> Config {
    let url = Url::parse(url).unwrap();
    let addr = url.resolve().unwrap();
    let mut cfg = Config::for_url(url, addr);
    cfg.connections = 8;
    cfg.duration = None;
    cfg.requests = Some(n);
    cfg.pipeline = pipeline;
    cfg
}

/// Templated requests: a random path segment, `{{seq}}`, a uuid header, a
/// feed row and a per-connection JWT.
fn templated_config(target: &Target, feed: &std::path::Path, n: u64, pipeline: usize) -> Config {
    templated_config_for(&target.url("/"), feed, n, pipeline)
}

fn templated_config_for(base: &str, feed: &std::path::Path, n: u64, pipeline: usize) -> Config {
    let mut cfg = config_for(base, n, pipeline);
    let url = format!(
        "{}bytes/{{{{rand:1:100}}}}?id={{{{seq}}}}&u={{{{feed:users.id}}}}",
        base
    );
    let url = Url::parse(&url).unwrap();
    let mut spec = RequestSpec::get(&url.host_header(), &url.target);
    spec.headers.push(("X-Id".into(), "{{uuid}}".into()));
    let scenario = Scenario::compile(
        vec![Entry {
            name: "templated".into(),
            weight: 1,
            spec,
            grpc: None,
        }],
        Options {
            feeds: vec![Feed::from_arg(&format!("users={}", feed.display())).unwrap()],
            jwt: Some((
                b"k".to_vec(),
                r#"{"sub":"{{feed:users.name}}"}"#.into(),
                3600,
            )),
            seed: 7,
            named: false,
            env: &|_| None,
        },
    )
    .unwrap();
    assert!(scenario.fixed_bytes().is_none());
    cfg.scenario = std::sync::Arc::new(scenario);
    cfg
}

#[test]
fn no_allocation_per_templated_request() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(1);
    let feed = std::env::temp_dir().join(format!("loadgen-alloc-feed-{}.csv", std::process::id()));
    std::fs::write(&feed, "id,name\n1,ann\n2,bob\n").unwrap();
    for pipeline in [1, 16] {
        assert_flat(&format!("templated, pipeline {pipeline}"), |n| {
            measure(templated_config(&t, &feed, n, pipeline), n)
        });
    }
    let _ = std::fs::remove_file(feed);
}

#[test]
fn no_allocation_per_request() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(1);
    for (pipeline, path) in [(1, "/"), (16, "/"), (1, "/chunked/5000")] {
        assert_flat(&format!("pipeline {pipeline} {path}"), |n| {
            measure(base_config(&t, path, n, pipeline), n)
        });
    }
}

/// `--request-log`: each shard formats its lines into a buffer it
/// allocated at the start and writes it out from there.
#[test]
fn no_allocation_per_logged_request() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(1);
    let log = std::env::temp_dir().join(format!("loadgen-alloc-log-{}.tsv", std::process::id()));
    for pipeline in [1, 16] {
        assert_flat(&format!("request log, pipeline {pipeline}"), |n| {
            let mut cfg = base_config(&t, "/", n, pipeline);
            cfg.request_log = Some(loadgen::config::RequestLogSpec {
                path: log.clone(),
                sample: 1,
            });
            let _ = std::fs::remove_file(&log);
            let measured = measure(cfg, n);
            let lines = std::fs::read_to_string(&log).unwrap().lines().count();
            assert_eq!(lines as u64, n, "a line per request");
            measured
        });
    }
    let _ = std::fs::remove_file(log);
}

/// HTTP/2 against nginx over h2c (another process, so only our
/// allocations count): a fixed and a templated request, 1 and 16 streams.
#[test]
fn no_allocation_per_h2_request() {
    use loadgen_tests::nginx::{Nginx, NginxOptions, find_nginx};
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if find_nginx().is_none() {
        loadgen_tests::skip("nginx is not installed (apt-get install nginx-light)");
        return;
    }
    let nginx = Nginx::start_with(&NginxOptions {
        http2: true,
        ..NginxOptions::default()
    })
    .expect("nginx h2c");
    let base = format!("http://127.0.0.1:{}/", nginx.port);
    let feed = std::env::temp_dir().join(format!("loadgen-alloc-h2-{}.csv", std::process::id()));
    std::fs::write(&feed, "id,name\n1,ann\n2,bob\n").unwrap();
    let h2 = |mut cfg: Config, streams: u32| {
        cfg.http2 = Some(loadgen::http::h2::Settings {
            streams,
            stream_window: (1 << 30) - 1,
            conn_window: (1 << 30) - 1,
            max_header_list: 65536,
        });
        cfg
    };
    for streams in [1, 16] {
        assert_flat(&format!("HTTP/2, {streams} streams"), |n| {
            measure(h2(config_for(&base, n, 1), streams), n)
        });
        assert_flat(&format!("HTTP/2 templated, {streams} streams"), |n| {
            measure(h2(templated_config_for(&base, &feed, n, 1), streams), n)
        });
    }
    let _ = std::fs::remove_file(feed);
}

/// Response header blocks as servers sent them to a GET / over HTTP/2
/// (captured with a raw client): nginx 1.22.1 (every response inserts
/// server, date, content-type, content-length and last-modified into our
/// table, Huffman-coded, and sends etag and accept-ranges as literals), and
/// Go 1.19 net/http (the first response inserts content-type,
/// content-length and date; later ones are four indexes).
const NGINX_BLOCK: &str = "887689aa6355e580ae212e1f6196dd6d5f4a01c52f948a080271403b704edc6dc53168df\
    5f87497ca589d34d1f5c0231376c96dd6d5f4a01c52f948a080271403b704edc6da53168df00832a47378afe5c8c2d\
    80ae8d6087f9008919085ad2b583aa62a3848fd24a8f";
const GO_FIRST_BLOCK: &str = "885f92497ca58ae819aafb50938ec415305a99567b5c0231346196dd6d5f4a01c52f\
    948a080271403b704f5c0b4a62d1bf";
const GO_REPEAT_BLOCK: &str = "88c0bfbe";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// HPACK in steady state: decoding typical response blocks (the table
/// churning under nginx's inserts, Go's indexes) and translating and
/// encoding templated requests allocate nothing once warm.
#[test]
fn no_allocation_per_hpack_block() {
    use loadgen::http::h2::hpack::{Decoder, RequestEncoder, RequestFields};
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = unhex(NGINX_BLOCK);
    let go_first = unhex(GO_FIRST_BLOCK);
    let go_repeat = unhex(GO_REPEAT_BLOCK);
    let mut heads = Vec::new();
    for (i, target) in ["/a?id=1", "/items/123456789?q=long-enough-to-differ"]
        .iter()
        .enumerate()
    {
        let mut spec = RequestSpec::get("127.0.0.1:8080", target);
        spec.headers.push(("X-Id".into(), format!("{i:0>36}")));
        heads.push(spec.to_bytes().unwrap());
    }
    let mut nginx_dec = Decoder::new(4096, 64 * 1024);
    let mut go_dec = Decoder::new(4096, 64 * 1024);
    let mut fields = RequestFields::new();
    let mut conn = RequestEncoder::new();
    let mut out = Vec::new();
    let mut value = Vec::new();
    let mut round = |i: usize| {
        let d = nginx_dec
            .decode(&nginx, |name, v| {
                // What a caller that reads one header does.
                if name == b"etag" {
                    v.bytes(&mut value).unwrap();
                }
            })
            .unwrap();
        assert_eq!(d.status, Some(200));
        let block = if i.is_multiple_of(100) {
            &go_first
        } else {
            &go_repeat
        };
        assert_eq!(go_dec.decode(block, |_, _| {}).unwrap().status, Some(200));
        fields.from_http1(&heads[i % 2], b"http").unwrap();
        out.clear();
        conn.encode_literal(fields.iter(), &mut out);
    };
    for i in 0..200 {
        round(i);
    }
    // All on this thread: its own count (see `MINE`).
    let before = MINE.with(|m| m.get());
    for i in 0..20_000 {
        round(i);
    }
    let allocs = MINE.with(|m| m.get()) - before;
    assert_eq!(allocs, 0, "allocations in 20000 rounds of HPACK work");
}
