//! Bodies framed every way: counts and byte totals exact.

use loadgen_tests::{Target, keepalive_response_len, run_json};

/// Runs `-n n` against `path` and checks responses and bytes read against
/// the size of one response fetched by hand.
fn bytes_exact(path: &str, n: u64, extra: &[&str]) {
    let t = Target::start(1);
    let one = keepalive_response_len(t.port, path);
    let url = t.url(path);
    let n_s = n.to_string();
    let mut args = vec!["-t1", "-c4", "-n", n_s.as_str()];
    args.extend_from_slice(extra);
    args.push(&url);
    let (json, text, code) = run_json(&args);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], n, "{json}");
    assert_eq!(json["bytes_read"], n * one, "{json}");
    assert_eq!(json["errors"]["parse"], 0);
    assert_eq!(json["errors"]["closed"], 0);
}

#[test]
fn chunked_bodies() {
    bytes_exact("/chunked/10000", 500, &[]);
}

#[test]
fn chunked_bodies_pipelined() {
    bytes_exact("/chunked/3000", 500, &["--pipeline", "8"]);
}

#[test]
fn content_length_bodies_large() {
    bytes_exact("/bytes/300000", 100, &[]);
}

#[test]
fn eof_delimited_bodies() {
    // Every response closes its connection: each one is a reconnect.
    bytes_exact("/eof/5000", 300, &[]);
}

#[test]
fn eof_delimited_bodies_pipelined_resend_unanswered_requests() {
    let t = Target::start(1);
    let one = keepalive_response_len(t.port, "/eof/100");
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-n",
        "200",
        "--pipeline",
        "4",
        &t.url("/eof/100"),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 200);
    assert_eq!(json["bytes_read"], 200 * one);
    // Three of every four pipelined requests die with their connection and
    // are sent again; they are counted, not lost.
    assert!(json["reissued"].as_u64().unwrap() >= 200, "{json}");
}

#[test]
fn head_requests_have_no_body() {
    let t = Target::start(1);
    let (json, text, code) = run_json(&[
        "-t1",
        "-c2",
        "-n",
        "100",
        "-m",
        "HEAD",
        &t.url("/bytes/5000"),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 100);
    assert_eq!(json["errors"]["parse"], 0);
}

#[test]
fn status_codes_are_counted_exactly() {
    let t = Target::start(1);
    let (json, text, code) = run_json(&["-t1", "-c2", "-n", "50", &t.url("/status/503")]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["status"]["5xx"], 50);
    assert_eq!(json["status"]["codes"]["503"], 50);
    assert!(text.contains("Non-2xx or 3xx responses: 50"), "{text}");
    let (json, _, _) = run_json(&["-t1", "-c2", "-n", "50", &t.url("/status/204")]);
    assert_eq!(json["status"]["2xx"], 50);
}
