//! Nothing listening, timeouts, bad flags: counted, bounded, one line.

use std::time::Duration;

use loadgen_tests::{Target, closed_port, run, run_json};

#[test]
fn nothing_listening_duration_mode() {
    let closed = closed_port();
    let port = closed.port;
    let started = loadgen_tests::start_clock();
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-d",
        "1s",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(code, 1, "exit 1 when no connection could be made: {text}");
    assert!(json["errors"]["connect"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["requests"], 0);
    assert!(text.contains("Socket errors: connect"), "{text}");
    assert!(text.contains("is the server running?"), "{text}");
}

#[test]
fn nothing_listening_count_mode_gives_up_after_the_timeout() {
    let closed = closed_port();
    let port = closed.port;
    // The binary is built on first use: not inside the timed window.
    loadgen_tests::loadgen_bin();
    let started = loadgen_tests::start_clock();
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-n",
        "100",
        "--timeout",
        "500ms",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(code, 1, "{text}");
    assert!(json["errors"]["connect"].as_u64().unwrap() > 0);
}

#[test]
fn slow_responses_time_out_and_the_run_ends_on_time() {
    let t = Target::start(1);
    let started = loadgen_tests::start_clock();
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-d",
        "1500ms",
        "--timeout",
        "300ms",
        &t.url("/delay/5000"),
    ]);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert_eq!(code, 0, "{text}");
    // 4 connections, each timing out every ~300 ms for 1.5 s.
    let timeouts = json["errors"]["timeout"].as_u64().unwrap();
    assert!((8..=24).contains(&timeouts), "{timeouts} timeouts: {json}");
    assert_eq!(json["requests"], 0);
}

#[test]
fn bad_usage_is_one_line_and_exit_2() {
    for args in [
        &["-c", "0", "http://127.0.0.1:1/"][..],
        &["ftp://127.0.0.1/"],
        &["-k", "http://127.0.0.1:1/"],
        &["--cacert", "/nonexistent.pem", "https://127.0.0.1:1/"],
        &["--no-keepalive", "--pipeline", "8", "http://127.0.0.1:1/"],
        &["-R", "1k->5k", "http://127.0.0.1:1/"],
        &["-d", "ten", "http://127.0.0.1:1/"],
        &["-t", "8", "-c", "2", "http://127.0.0.1:1/"],
        &["--body-file", "/nonexistent/file", "http://127.0.0.1:1/"],
        &["http://no-such-host.invalid/"],
        &["not a url"],
        &["--no-such-flag", "http://127.0.0.1:1/"],
        &["-t", "0", "http://127.0.0.1:1/"],
        &["-t", "5000", "-c", "10000", "http://127.0.0.1:1/"],
        &["-c", "2M", "http://127.0.0.1:1/"],
        &["-R", "0", "http://127.0.0.1:1/"],
        &["-R", "1e12", "http://127.0.0.1:1/"],
        &["-R", "fast", "http://127.0.0.1:1/"],
        &["--stages", "10s", "http://127.0.0.1:1/"],
        &["--pipeline", "0", "http://127.0.0.1:1/"],
        &["--timeout", "0s", "http://127.0.0.1:1/"],
        &["-n", "0", "http://127.0.0.1:1/"],
        // 1.6 G requests in flight: refused before the shards allocate.
        &["-c", "400k", "--pipeline", "4096", "http://127.0.0.1:1/"],
        // HTTP/2: the pipeline is HTTP/1.1's, streams within bounds.
        &["--http2", "--pipeline", "4", "http://127.0.0.1:1/"],
        &["--http2", "--no-keepalive", "http://127.0.0.1:1/"],
        &["--http2", "--streams", "0", "http://127.0.0.1:1/"],
        &["--http2", "--streams", "5000", "http://127.0.0.1:1/"],
        &["--streams", "8", "http://127.0.0.1:1/"],
        &["--http2", "--h2-window", "40", "http://127.0.0.1:1/"],
        &[],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("loadgen: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_port_refuses_connects_and_no_server_can_take_it() {
    let closed = closed_port();
    let refused = std::net::TcpStream::connect(("127.0.0.1", closed.port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(std::net::TcpListener::bind(("127.0.0.1", closed.port)).is_err());
}
