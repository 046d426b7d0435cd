//! The text summary and the JSON agree; Ctrl-C still reports.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loadgen_tests::{Target, loadgen_bin, run, run_json};

#[test]
fn json_has_the_documented_fields_and_agrees_with_the_text() {
    let t = Target::start(1);
    let (json, text, code) = run_json(&["-t1", "-c8", "-d", "1s", "--latency", &t.url("/")]);
    assert_eq!(code, 0, "{text}");
    for key in [
        "url",
        "engine",
        "shards",
        "connections",
        "duration_s",
        "requests",
        "rps",
        "bytes_read",
        "bytes_written",
        "latency_us",
        "status",
        "errors",
    ] {
        assert!(!json[key].is_null(), "missing {key}: {json}");
    }
    for key in [
        "min", "mean", "stdev", "max", "p50", "p75", "p90", "p99", "p99_9", "p99_99",
    ] {
        assert!(
            json["latency_us"][key].is_number(),
            "missing latency_us.{key}"
        );
    }
    for key in [
        "connect", "read", "write", "timeout", "parse", "closed", "reset",
    ] {
        assert!(json["errors"][key].is_number(), "missing errors.{key}");
    }
    for key in ["2xx", "3xx", "4xx", "5xx", "codes"] {
        assert!(!json["status"][key].is_null(), "missing status.{key}");
    }
    let requests = json["requests"].as_u64().unwrap();
    assert!(requests > 100);
    assert!(
        text.contains(&format!("  {requests} requests in ")),
        "text and JSON disagree on requests: {text}"
    );
    let rps = json["rps"].as_f64().unwrap();
    assert!(text.contains(&format!("Requests/sec: {rps:9.2}")), "{text}");
    assert!(text.contains("Running 1s test @ "), "{text}");
    assert!(text.contains("  1 threads and 8 connections"), "{text}");
    assert!(text.contains("  Latency Distribution"), "{text}");
    assert!(text.contains("    Latency "), "{text}");
    assert!(text.contains("    Req/Sec "), "{text}");
    let p = json["latency_us"]["p50"].as_u64().unwrap();
    assert!(p >= 1 && p <= json["latency_us"]["max"].as_u64().unwrap());
}

#[test]
fn json_to_a_file_keeps_the_text_on_stdout() {
    let t = Target::start(1);
    let path = std::env::temp_dir().join(format!("loadgen-report-{}.json", std::process::id()));
    let out = run(&[
        "-t1",
        "-c2",
        "-n",
        "100",
        "--json",
        path.to_str().unwrap(),
        &t.url("/"),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("100 requests in"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["requests"], 100);
    let _ = std::fs::remove_file(path);
}

#[test]
fn sigint_mid_run_still_reports() {
    let t = Target::start(1);
    let path = std::env::temp_dir().join(format!("loadgen-sigint-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut child = Command::new(loadgen_bin())
        .args(["-t1", "-c8", "-d", "30s", "--json"])
        .arg(&path)
        .arg(t.url("/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let started = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("requests in"), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["interrupted"], true);
    assert!(json["requests"].as_u64().unwrap() > 0);
    let secs = json["duration_s"].as_f64().unwrap();
    assert!((0.8..3.0).contains(&secs), "measured {secs} s");
    let _ = std::fs::remove_file(path);
}

#[test]
fn run_json_helper_sees_the_engine_name() {
    let t = Target::start(1);
    let (json, _, _) = run_json(&["-t1", "-c1", "-n", "1", &t.url("/")]);
    assert_eq!(json["engine"], "io_uring");
}
