//! `--server-metrics`: the built-in target's own `/metrics` count set
//! beside ours, closed and open loop, and each way it can fail leaving the
//! load result alone.

use std::sync::{Mutex, MutexGuard};

use loadgen_tests::{Target, free_port, run_json};

/// The closed-loop test loads both CPUs for 2 s; the open-loop one checks
/// the rate the server saw to 5 %: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_agrees(json: &serde_json::Value, text: &str) {
    let m = &json["server_metrics"];
    assert!(m["error"].is_null(), "{m}\n{text}");
    let server = m["requests"].as_f64().unwrap();
    let client = json["requests"].as_u64().unwrap() as f64;
    assert_eq!(m["client_requests"].as_f64(), Some(client));
    let margin = m["margin"].as_f64().unwrap();
    assert!(client > 100.0, "{text}");
    // The server answers every request we count, and at most the requests
    // in flight at the window's edges more.
    assert!(
        server >= client,
        "server {server} < client {client}\n{text}"
    );
    assert!((server - client).abs() <= margin, "{m}\n{text}");
    assert_eq!(m["agrees"], true, "{m}");
    assert!(
        text.contains("Server's count (http_requests_total)"),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("--server-") || l.contains("the server counted")),
        "{text}"
    );
    let p50 = m["p50_us"].as_f64().expect("the server's p50");
    let p99 = m["p99_us"].as_f64().expect("the server's p99");
    assert!(p50 > 0.0 && p50 <= p99, "{m}");
    // Server time is inside client time (allowing for bucket interpolation).
    assert!(
        p50 <= 2.0 * json["latency_us"]["p50"].as_f64().unwrap() + 25.0,
        "{m}\n{text}"
    );
    assert!(
        text.contains("Server's latency (http_request_duration_seconds)"),
        "{text}"
    );
}

#[test]
fn the_servers_count_matches_closed_loop() {
    let _g = serial();
    let t = Target::start(1);
    let (json, text, code) = run_json(&[
        "-t1",
        "-c8",
        "-d2s",
        "--server-metrics",
        &t.url("/metrics"),
        "--server-histogram",
        "http_request_duration_seconds",
        &t.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    check_agrees(&json, &text);
    // A label filter picks the series.
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-n",
        "3000",
        "--server-metrics",
        &t.url("/metrics"),
        "--server-counter",
        "http_requests_total{code=\"404\"}",
        &t.url("/nope"),
    ]);
    assert_eq!(code, 0, "{text}");
    let m = &json["server_metrics"];
    assert_eq!(m["requests"], 3000.0, "-n is exact on both sides: {m}");
    assert_eq!(m["counter"], "http_requests_total{code=\"404\"}");
}

#[test]
fn the_servers_count_matches_open_loop_with_a_warmup() {
    let _g = serial();
    let t = Target::start(1);
    let (json, text, code) = run_json(&[
        "-t1",
        "-c8",
        "-R",
        "2000",
        "-d2s",
        "--warmup",
        "500ms",
        "--server-metrics",
        &t.url("/metrics"),
        "--server-histogram",
        "http_request_duration_seconds",
        &t.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    check_agrees(&json, &text);
    let rps = json["server_metrics"]["rps"].as_f64().unwrap();
    assert!(
        (rps - 2000.0).abs() < 100.0,
        "the server saw the schedule: {rps}"
    );
}

/// Each failure: exit 0, the load reported, exactly one warning line.
fn one_warning(args: &[&str], says: &str) {
    let (json, text, code) = run_json(args);
    assert_eq!(code, 0, "{text}");
    assert!(
        json["requests"].as_u64().unwrap() > 0,
        "the load result is kept: {text}"
    );
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("--server-metrics"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains(says), "{}", warnings[0]);
    assert!(
        warnings[0].contains("the load result is kept"),
        "{}",
        warnings[0]
    );
    assert!(
        json["server_metrics"]["error"].is_string(),
        "{}",
        json["server_metrics"]
    );
    assert!(
        json["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains(says)),
        "{}",
        json["warnings"]
    );
}

#[test]
fn each_failure_is_one_warning_and_keeps_the_result() {
    let t = Target::start(1);
    let base = ["-t1", "-c2", "-n", "500"];
    let url = t.url("/");
    let metrics = t.url("/metrics");
    // A target without the counter.
    let args = [
        &base[..],
        &[
            "--server-metrics",
            &metrics,
            "--server-counter",
            "nope_total",
            &url,
        ],
    ]
    .concat();
    one_warning(&args, "has no counter nope_total");
    // An unreachable metrics URL.
    let closed = format!("http://127.0.0.1:{}/metrics", free_port());
    let args = [&base[..], &["--server-metrics", &closed, &url]].concat();
    one_warning(&args, "cannot scrape");
    // Malformed exposition: the target's `/` is not Prometheus text.
    let args = [&base[..], &["--server-metrics", &url, &url]].concat();
    one_warning(&args, "malformed exposition at line 1");
    // A bad counter name is a usage error, before anything runs.
    let (code, text) = {
        let out = loadgen_tests::run(&[
            "-n",
            "10",
            "--server-metrics",
            &metrics,
            "--server-counter",
            "1bad{",
            &url,
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("bad metric name"), "{text}");
    assert!(!text.contains("requests in"), "nothing ran: {text}");
}
