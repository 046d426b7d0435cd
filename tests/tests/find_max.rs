//! `loadgen find-max`: against a target of known capacity (one thread that
//! burns a fixed CPU time per request), the answer is near that capacity,
//! and it holds up in separate runs.

use std::sync::Mutex;

use loadgen_tests::{Target, run_json};

/// One search at a time: the capacity search saturates a CPU, and a
/// second search running beside it would rightly find its own shard
/// starved (busy) and stop as `generator_limited`.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn finds_the_rate_the_server_can_take_and_it_holds_up() {
    let _g = serial();
    // loadgen's one shard is pinned to the first CPU (0); the target gets
    // the other, so a saturated target never delays the generator. On one
    // CPU the search's steps above capacity were late as often as they
    // were slow, and it stopped as `generator_limited` (seen in a full
    // cargo test here).
    let t = Target::start_pinned(1, 1);
    let url = t.url("/cpu/20000");
    // The capacity: a closed-loop run saturates the one thread.
    let (closed, text, code) = run_json(&["-t1", "-c32", "-d", "2s", &url]);
    assert_eq!(code, 0, "{text}");
    let capacity = closed["rps"].as_f64().unwrap();
    let html = std::env::temp_dir().join(format!("loadgen-find-max-{}.html", std::process::id()));
    let (json, text, code) = run_json(&[
        "find-max",
        "-t1",
        "-c32",
        "--slo",
        "p99<20ms",
        "--slo",
        "errors<1%",
        "--step",
        "1s",
        "--step-warmup",
        "300ms",
        "--precision",
        "10",
        "--html",
        html.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["verdict"], "max_rate", "{text}");
    let max = json["max_rate"].as_f64().unwrap();
    assert!(
        (0.6 * capacity..=1.05 * capacity).contains(&max),
        "answer {max} against a capacity of {capacity}: {text}"
    );
    let steps = json["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["ok"] == false),
        "a failing step bounded it"
    );
    assert!(text.contains("Maximum rate: "), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("SLO bound"),
        "the search chart"
    );
    let _ = std::fs::remove_file(html);
    // The answer holds at 0.8×, and 1.5× does not.
    let run_at = |rate: f64| {
        let r = format!("{rate:.0}");
        let (json, text, _) = run_json(&[
            "-t1", "-c32", "-R", &r, "-d", "2s", "--warmup", "300ms", &url,
        ]);
        let p99 = json["latency_us"]["p99"].as_u64().unwrap();
        let delivered = json["rps"].as_f64().unwrap() >= 0.99 * rate;
        (p99 < 20_000 && delivered, text)
    };
    let (ok, text) = run_at(0.8 * max);
    assert!(ok, "0.8 × {max}: {text}");
    let (ok, text) = run_at(1.5 * max);
    assert!(!ok, "1.5 × {max}: {text}");
}

#[test]
fn a_rate_that_never_holds_exits_non_zero_and_bad_flags_are_usage_errors() {
    let _g = serial();
    let t = Target::start(1);
    // A p99 no response can meet, missed by 50 ms a request: more than
    // a generator starved by a busy machine lags, so the verdict is the
    // server's (none passes), not "generator limited".
    let (json, text, code) = run_json(&[
        "find-max",
        "-t1",
        "-c8",
        "--slo",
        "p99<1us",
        "--step",
        "300ms",
        "--step-warmup",
        "100ms",
        "--start-rate",
        "40",
        &t.url("/delay/50"),
    ]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(json["verdict"], "none_passes", "{text}");
    assert!(text.contains("No rate held"), "{text}");
    for bad in [
        &["find-max", "--slo", "p99<10ms", "-R", "100"][..],
        &["find-max", "--slo", "p99<10ms", "-n", "100"],
        &["find-max", "--slo", "fast", ""],
        &["find-max"],
    ] {
        let mut args = bad.to_vec();
        let url = t.url("/");
        args.push(&url);
        let out = loadgen_tests::run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
