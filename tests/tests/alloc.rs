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

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
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
    let url = Url::parse(&target.url(path)).unwrap();
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
    let mut cfg = base_config(target, "/", n, pipeline);
    let url = target.url("/bytes/{{rand:1:100}}?id={{seq}}&u={{feed:users.id}}");
    let url = Url::parse(&url).unwrap();
    let mut spec = RequestSpec::get(&url.host_header(), &url.target);
    spec.headers.push(("X-Id".into(), "{{uuid}}".into()));
    let scenario = Scenario::compile(
        vec![Entry {
            name: "templated".into(),
            weight: 1,
            spec,
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
