//! No heap allocation per request: run the engine in-process twice, with
//! 10x the requests the second time, and count allocations. Setup costs
//! the same both times; any per-request allocation shows up ×18000.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use clap::Parser;
use loadgen::config::Config;
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

fn allocations_for(target: &Target, n: u64, pipeline: usize, path: &str) -> u64 {
    let url = Url::parse(&target.url(path)).unwrap();
    let addr = url.resolve().unwrap();
    let mut cfg = Config::for_url(url, addr);
    cfg.shards = 1;
    cfg.cpus.clear();
    cfg.connections = 8;
    cfg.duration = None;
    cfg.requests = Some(n);
    cfg.pipeline = pipeline;
    cfg.validate().unwrap();
    let stop = AtomicBool::new(false);
    let before = ALLOCS.load(Ordering::SeqCst);
    let out = loadgen::engine::run(&cfg, &stop).unwrap();
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(out.total.responses, n);
    after - before
}

/// The same with templated requests: a random path segment, `{{seq}}`, a
/// uuid header, a feed row and a per-connection JWT, built the way the CLI
/// builds them.
fn templated_allocations_for(target: &Target, n: u64, pipeline: usize) -> u64 {
    let feed = std::env::temp_dir().join(format!("loadgen-alloc-feed-{}.csv", std::process::id()));
    std::fs::write(&feed, "id,name\n1,ann\n2,bob\n").unwrap();
    let feed_arg = format!("users={}", feed.display());
    let n_arg = n.to_string();
    let pipeline_arg = pipeline.to_string();
    let url = target.url("/bytes/{{rand:1:100}}?id={{seq}}&u={{feed:users.id}}");
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-t1",
        "-c8",
        "--no-pin",
        "--engine",
        "uring",
        "-n",
        &n_arg,
        "--pipeline",
        &pipeline_arg,
        "--feed",
        &feed_arg,
        "--jwt-secret",
        "k",
        "--jwt-claims",
        r#"{"sub":"{{feed:users.name}}"}"#,
        "-H",
        "X-Id: {{uuid}}",
        &url,
    ])
    .unwrap();
    let cfg = cli.run.to_config().unwrap();
    assert!(cfg.scenario.fixed_bytes().is_none());
    let stop = AtomicBool::new(false);
    let before = ALLOCS.load(Ordering::SeqCst);
    let out = loadgen::engine::run(&cfg, &stop).unwrap();
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(out.total.responses, n);
    assert_eq!(
        out.total.status[200], n,
        "the target answered every templated request"
    );
    after - before
}

#[test]
fn no_allocation_per_templated_request() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(1);
    for pipeline in [1, 16] {
        let small = templated_allocations_for(&t, 2_000, pipeline);
        let large = templated_allocations_for(&t, 20_000, pipeline);
        assert!(
            large <= small + 16,
            "templated, pipeline {pipeline}: {small} allocations for 2000 requests, {large} for 20000"
        );
    }
}

#[test]
fn no_allocation_per_request() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(1);
    for (pipeline, path) in [(1, "/"), (16, "/"), (1, "/chunked/5000")] {
        let small = allocations_for(&t, 2_000, pipeline, path);
        let large = allocations_for(&t, 20_000, pipeline, path);
        assert!(
            large <= small + 16,
            "pipeline {pipeline} {path}: {small} allocations for 2000 requests, {large} for 20000"
        );
    }
}
