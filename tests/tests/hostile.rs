//! Against a deliberately broken server: valid responses are counted
//! exactly, every violation under its named kind, nothing hangs, memory
//! stays bounded. The expected behaviour of each case is documented in the
//! README's "Errors" section.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use loadgen_tests::hostile::Hostile;
use loadgen_tests::{Measured, run_measured};

/// The tests that time a run (wall and CPU time against a 2 s load) take
/// turns with the one that loads both CPUs (320 MiB of bodies), so that
/// neither measures the other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn n_run(h: &Hostile, path: &str, n: u64, extra: &[&str]) -> Measured {
    let url = h.url(path);
    let n = n.to_string();
    let mut args = vec!["-t1", "-c2", "-n", n.as_str(), "--timeout", "1s"];
    args.extend_from_slice(extra);
    args.push(&url);
    let m = run_measured(&args);
    assert_eq!(m.code, 0, "{path}: {}", m.text);
    m
}

fn errors(m: &Measured, kind: &str) -> u64 {
    m.json["errors"][kind].as_u64().unwrap()
}

/// Every error kind other than `except` is zero.
fn only(m: &Measured, except: &[&str]) {
    for kind in [
        "connect", "read", "write", "timeout", "parse", "closed", "reset",
    ] {
        if !except.contains(&kind) {
            assert_eq!(errors(m, kind), 0, "unexpected {kind} errors: {}", m.json);
        }
    }
}

#[test]
fn valid_but_unusual_responses_are_counted_exactly() {
    let h = Hostile::start();
    for (path, body_each) in [
        ("/chunked", 11),
        ("/one-byte", 5),
        ("/continue", 5),
        ("/204", 0),
        ("/304", 0),
        ("/500", 3),
    ] {
        let m = n_run(&h, path, 200, &[]);
        assert_eq!(m.json["requests"], 200, "{path}: {}", m.json);
        only(&m, &[]);
        let _ = body_each;
    }
    let m = n_run(&h, "/500", 50, &[]);
    assert_eq!(m.json["status"]["5xx"], 50);
    let m = n_run(&h, "/head", 100, &["-m", "HEAD"]);
    assert_eq!(m.json["requests"], 100);
    only(&m, &[]);
}

#[test]
fn servers_that_close_are_reconnected_not_failed() {
    let h = Hostile::start();
    for path in ["/close-each", "/eof-body"] {
        let m = n_run(&h, path, 100, &[]);
        assert_eq!(m.json["requests"], 100, "{path}: {}", m.json);
        only(&m, &[]);
        assert!(
            m.json["reconnects"].as_u64().unwrap() >= 98,
            "{path}: {}",
            m.json
        );
    }
}

#[test]
fn protocol_violations_are_parse_errors() {
    let h = Hostile::start();
    for path in [
        "/garbage",
        "/huge-head",
        "/negative-length",
        "/dup-length",
        "/bad-chunk",
    ] {
        let m = n_run(&h, path, 50, &[]);
        assert_eq!(m.json["requests"], 0, "{path}: {}", m.json);
        assert_eq!(errors(&m, "parse"), 50, "{path}: {}", m.json);
        only(&m, &["parse"]);
    }
}

#[test]
fn header_limit_is_configurable() {
    let h = Hostile::start();
    // 100 KiB of headers: a parse error at the default 64 KiB limit, fine
    // at 1 MiB.
    let m = n_run(&h, "/huge-head", 10, &["--max-header-bytes", "1048576"]);
    assert_eq!(m.json["requests"], 10, "{}", m.json);
    only(&m, &[]);
}

#[test]
fn short_bodies_and_resets_are_counted_by_kind() {
    let h = Hostile::start();
    let m = n_run(&h, "/short-body", 50, &[]);
    assert_eq!(errors(&m, "closed"), 50, "{}", m.json);
    only(&m, &["closed"]);
    let m = n_run(&h, "/reset", 50, &[]);
    assert_eq!(errors(&m, "reset"), 50, "{}", m.json);
    only(&m, &["reset"]);
    assert!(m.text.contains("reset 50"), "{}", m.text);
}

#[test]
fn silent_and_dripping_servers_time_out_and_the_run_ends_on_time() {
    let _g = serial();
    let h = Hostile::start();
    for path in ["/silent", "/drip"] {
        let url = h.url(path);
        let m = run_measured(&["-t1", "-c4", "-d", "2s", "--timeout", "400ms", &url]);
        assert_eq!(m.code, 0, "{}", m.text);
        assert!(m.wall < Duration::from_secs(3), "{path}: took {:?}", m.wall);
        // 4 connections × (2 s / 0.4 s) timeouts, give or take one each.
        let t = errors(&m, "timeout");
        assert!((12..=24).contains(&t), "{path}: {t} timeouts: {}", m.json);
        assert_eq!(m.json["requests"], 0);
    }
}

#[test]
fn big_bodies_stream_in_bounded_memory() {
    let _g = serial();
    let h = Hostile::start();
    let m = n_run(&h, "/big", 40, &[]);
    assert_eq!(m.json["requests"], 40);
    only(&m, &[]);
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n".len() as u64;
    assert_eq!(m.json["bytes_read"], 40 * (head + (8 << 20)));
    // 320 MiB went through; the client's peak RSS stays far below one body
    // per request (buffer ring 4 MiB, histograms, binary).
    assert!(m.max_rss_kib < 64 * 1024, "peak RSS {} KiB", m.max_rss_kib);
}

#[test]
fn pipelined_requests_lost_to_a_close_are_counted_and_resent() {
    let h = Hostile::start();
    let m = n_run(&h, "/close-after-3", 200, &["--pipeline", "8"]);
    let answered = m.json["requests"].as_u64().unwrap();
    let closed = errors(&m, "closed");
    // Every request ends as a response or a counted error, exactly N.
    assert_eq!(answered + closed, 200, "{}", m.json);
    assert!(answered >= 100, "{}", m.json);
    // The requests behind the one that failed were sent again and counted.
    assert!(m.json["reissued"].as_u64().unwrap() > 0, "{}", m.json);
    only(&m, &["closed"]);
}

#[test]
fn refused_connections_back_off_instead_of_spinning() {
    let _g = serial();
    let closed = loadgen_tests::closed_port();
    let url = format!("http://127.0.0.1:{}/", closed.port);
    let m = run_measured(&["-t1", "-c64", "-d", "2s", &url]);
    assert_eq!(m.code, 1, "{}", m.text);
    assert!(m.wall < Duration::from_secs(3), "took {:?}", m.wall);
    let connects = errors(&m, "connect");
    assert!(connects >= 64, "{}", m.json);
    // Backoff (10 ms doubling to 1 s) bounds the attempts per connection,
    // and the CPU used is a small fraction of the wall time.
    assert!(connects < 64 * 12, "{connects} attempts: no backoff?");
    assert!(m.cpu < m.wall / 10, "cpu {:?} for wall {:?}", m.cpu, m.wall);
}
