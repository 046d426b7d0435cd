//! `--http3`: what it refuses (one line, exit 2, before anything is
//! sent), and loads against Caddy 2.6 (`apt-get install caddy`), whose
//! JSON access log counts the requests it served over `HTTP/3.0`; and a
//! QUIC server with no HTTP/3 (aioquic's, `pip install aioquic`).

use loadgen_tests::aioquic::{AioquicServer, H3Options};
use loadgen_tests::caddy::Caddy;
use loadgen_tests::pki::Pki;
use loadgen_tests::{run, run_json, skip};

#[test]
fn what_http3_cannot_carry_is_one_line_and_exit_2() {
    let url = "https://localhost:1/";
    for (args, want) in [
        (
            &["--http3", "http://127.0.0.1:1/"][..],
            "needs an https:// URL",
        ),
        (&["--h3", "-k", "--http2", url], "give one of them"),
        (
            &["--http3", "-k", "--pipeline", "4", url],
            "--pipeline is HTTP/1.1's",
        ),
        (
            &["--http3", "-k", "--no-keepalive", url],
            "HTTP/3 keeps its connections",
        ),
        (
            &["--http3", "-k", "--streams", "0", url],
            "--streams must be between",
        ),
        (
            &["--http3", "-k", "--unix-socket", "/nonexistent.sock", url],
            "no such socket",
        ),
        (
            &["--http3", "-k", "--engine", "glommio", url],
            "glommio's UDP sockets",
        ),
        (
            &["--http3", "-k", "--tls-version", "1.2", url],
            "HTTP/3 needs TLS 1.3",
        ),
        (
            &["--http3", "-k", "--grpc", "a.B/C", "-b", "{}", url],
            "gRPC over HTTP/3 is not supported",
        ),
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("loadgen: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Caddy with the test CA, or None after a loud SKIP.
fn caddy() -> Option<(Pki, Caddy)> {
    let pki = Pki::new().map_err(|e| skip(&e)).ok()?;
    let caddy = Caddy::start(&pki)?;
    Some((pki, caddy))
}

#[test]
fn n_is_exact_against_caddy_with_1_and_8_streams_on_1_and_2_shards() {
    let Some((pki, caddy)) = caddy() else { return };
    let ca = pki.ca.to_str().unwrap();
    let url = caddy.url("/");
    let mut served = 0;
    for (streams, threads, n) in [
        ("1", "1", 300),
        ("8", "1", 1000),
        ("1", "2", 300),
        ("8", "2", 1000),
    ] {
        let n_str = n.to_string();
        let args = [
            "--http3",
            "-t",
            threads,
            "-c",
            "4",
            "--streams",
            streams,
            "-n",
            &n_str,
            "--cacert",
            ca,
            &url,
        ];
        let (json, text, code) = run_json(&args);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert_eq!(json["requests"], n, "{args:?}: {text}");
        assert_eq!(json["status"]["2xx"], n, "{args:?}: {text}");
        let errors: u64 = json["errors"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|v| v.as_u64())
            .sum();
        assert_eq!(errors, 0, "{args:?}: {text}");
        served += n;
        assert_eq!(caddy.requests("HTTP/3.0"), served, "{args:?}: {text}");
        assert_eq!(json["http_version"], "3", "{json}");
        let q = &json["quic"];
        assert_eq!(q["handshakes"], 4, "{args:?}: {q}");
        // A datagram carries at least one packet, a send one datagram.
        let (packets, datagrams, sends) = (
            q["packets_sent"].as_u64().unwrap(),
            q["datagrams_sent"].as_u64().unwrap(),
            q["sends"].as_u64().unwrap(),
        );
        assert!(
            packets >= datagrams && datagrams >= sends && sends > 0,
            "{q}"
        );
        assert!(q["datagrams_per_send"].as_f64().unwrap() >= 1.0, "{q}");
        assert!(q["rtt_us"]["p50"].as_u64().unwrap() > 0, "{q}");
        assert_eq!(q["connection_errors"], serde_json::json!({}), "{q}");
        assert!(
            text.contains(&format!("HTTP/3, {streams} stream")),
            "{text}"
        );
        assert!(text.contains("QUIC: 4 handshakes"), "{text}");
    }
}

#[test]
fn open_loop_holds_its_rate_against_caddy_within_one_percent() {
    let Some((pki, caddy)) = caddy() else { return };
    let ca = pki.ca.to_str().unwrap();
    let url = caddy.url("/");
    let args = [
        "--h3",
        "-t1",
        "-c4",
        "--streams",
        "4",
        "-R",
        "1000",
        "-d",
        "3s",
        "--cacert",
        ca,
        &url,
    ];
    let (json, text, code) = run_json(&args);
    assert_eq!(code, 0, "{text}");
    let rps = json["rps"].as_f64().unwrap();
    assert_eq!(json["target_rps"].as_f64().unwrap(), 1000.0);
    assert!((rps - 1000.0).abs() <= 10.0, "achieved {rps} req/s: {text}");
    // Every response Caddy sent was counted, bar those in flight at the
    // end (at most one a stream).
    let counted = json["requests"].as_u64().unwrap();
    let served = caddy.requests("HTTP/3.0");
    assert!(
        served >= counted && served - counted <= 16,
        "served {served}, counted {counted}: {text}"
    );
}

/// Caddy's site is `localhost`: an IP-address URL sends no SNI and another
/// `:authority`. Caddy 2.6 still completes the QUIC handshake here (the
/// issue expected it to fail) and answers each request with an empty 200
/// that its site's log does not count; either way the run must end at
/// once, as a result or as one line, never hang.
#[test]
fn an_ip_address_url_against_the_localhost_site_ends_at_once() {
    let Some((pki, caddy)) = caddy() else { return };
    let url = format!("https://127.0.0.1:{}/", caddy.port);
    let ca = pki.ca.to_str().unwrap();
    let started = loadgen_tests::start_clock();
    let out = run(&[
        "--http3",
        "-c2",
        "-n",
        "50",
        "--cacert",
        ca,
        "--timeout",
        "2s",
        &url,
    ]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        took < std::time::Duration::from_secs(10),
        "took {took:?}: {err}"
    );
    match out.status.code() {
        Some(0) => {
            assert!(summary.contains("50 requests in"), "{summary}");
            assert_eq!(caddy.requests("HTTP/3.0"), 0, "not the site's: {summary}");
        }
        Some(1 | 2) => {
            let last = err.trim().lines().last().unwrap_or_default();
            assert!(last.starts_with("loadgen: "), "{err}");
        }
        other => panic!("exit {other:?}: {err}"),
    }
}

/// Templates and a scenario of a GET and a POST with a body go over
/// HTTP/3 as over HTTP/2: every request counted once, by name too.
#[test]
fn templates_and_scenarios_are_exact_against_caddy() {
    let Some((pki, caddy)) = caddy() else { return };
    let ca = pki.ca.to_str().unwrap();
    let templated = caddy.url("/item/{{seq}}?r={{rand:1:1000}}");
    let args = [
        "--h3",
        "-c2",
        "--streams",
        "4",
        "-n",
        "400",
        "--cacert",
        ca,
        &templated,
    ];
    let (json, text, code) = run_json(&args);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 400, "{text}");
    assert_eq!(caddy.requests("HTTP/3.0"), 400, "{text}");

    let dir = std::env::temp_dir().join(format!("loadgen-h3-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mix.toml");
    std::fs::write(
        &file,
        format!(
            "[[request]]\nname = \"get\"\nurl = \"{}\"\nweight = 3\n\n\
             [[request]]\nname = \"post\"\nmethod = \"POST\"\nurl = \"/orders\"\n\
             headers = [\"Content-Type: application/json\"]\n\
             body = '{{\"id\": {{{{seq}}}}}}'\n",
            caddy.url("/items/{{rand:1:100}}")
        ),
    )
    .unwrap();
    let args = [
        "--http3",
        "--scenario",
        file.to_str().unwrap(),
        "-c2",
        "--streams",
        "4",
        "-n",
        "600",
        "--cacert",
        ca,
    ];
    let (json, text, code) = run_json(&args);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 600, "{text}");
    let by_name: u64 = json["by_request"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(by_name, 600, "{json}");
    assert_eq!(caddy.requests("HTTP/3.0"), 1000, "{text}");
}

/// A certificate the client does not trust ends the run at once, in one
/// line, as over TCP (before, each connection retried its handshake).
#[test]
fn an_untrusted_certificate_ends_the_run_in_one_line() {
    let Some((_pki, caddy)) = caddy() else { return };
    let started = loadgen_tests::start_clock();
    let out = run(&["--http3", "-c2", "-d", "5s", &caddy.url("/")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("TLS certificate verification failed for localhost: UnknownIssuer"),
        "{err}"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("CRYPTO_ERROR(UnknownCA)"), "{summary}");
}

/// Nothing listening on the UDP port (a server with HTTP/1.1 and HTTP/2
/// only, say, as Caddy with `protocols h1 h2`): the ICMP refusals are
/// connect errors, and the run ends in one line that says QUIC found
/// nothing there, not only "is the server running?".
#[test]
fn a_closed_udp_port_is_a_connect_error_in_one_line() {
    let closed = loadgen_tests::closed_port();
    let url = format!("https://localhost:{}/", closed.port);
    let out = run(&["--http3", "-k", "-c2", "-n", "10", "--timeout", "1s", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "loadgen: could not connect to 127.0.0.1:{} over QUIC",
            closed.port
        )),
        "{err}"
    );
    assert!(err.contains("serve HTTP/3 on that UDP port"), "{err}");
    assert!(err.trim().ends_with("drop --http3"), "{err}");
}

/// A UDP port that takes datagrams and never answers (a firewall that
/// drops them, a server gone deaf): every handshake times out, and the
/// `-n` run ends after `--timeout` in one line about QUIC, not about TLS
/// settings.
#[test]
fn a_udp_port_that_never_answers_ends_in_one_line_about_quic() {
    let deaf = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = deaf.local_addr().unwrap().port();
    let url = format!("https://localhost:{port}/");
    let started = loadgen_tests::start_clock();
    let out = run(&["--http3", "-k", "-c2", "-n", "10", "--timeout", "1s", &url]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?}: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "loadgen: no QUIC handshake with 127.0.0.1:{port} succeeded"
        )),
        "{err}"
    );
    assert!(err.trim().ends_with("drop --http3"), "{err}");
    drop(deaf);
}

/// A fleet over HTTP/3: two parts of one `-n` (half the connections
/// each), judged by thresholds, and merged into one report whose counts
/// are the parts' sums and Caddy's own.
#[test]
fn fleet_parts_thresholds_and_merge_over_http3() {
    let Some((pki, caddy)) = caddy() else { return };
    let ca = pki.ca.to_str().unwrap();
    let url = caddy.url("/");
    let dir = std::env::temp_dir().join(format!("loadgen-h3-fleet-{}", caddy.port));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for part in ["1/2", "2/2"] {
        let path = dir.join(format!("part{}.json", &part[..1]));
        let (json, text, code) = run_json(&[
            "--http3",
            "-n",
            "1001",
            "-c4",
            "--streams",
            "4",
            "--part",
            part,
            "--cacert",
            ca,
            "--threshold",
            "p99<10s",
            "--threshold",
            "errors==0",
            &url,
        ]);
        assert_eq!(code, 0, "{part}: {text}");
        assert_eq!(json["connections"], 2, "{part}: {text}");
        assert!(
            json["thresholds"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["ok"] == true)
        );
        std::fs::write(&path, json.to_string()).unwrap();
        paths.push(path.to_str().unwrap().to_string());
    }
    let out = run(&["merge", &paths[0], &paths[1], "--threshold", "p50<1us"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    // Nothing here answers in a microsecond: the merged report fails it.
    assert_eq!(out.status.code(), Some(5), "{text}{err}");
    assert!(text.contains("1001 requests in"), "{text}");
    assert!(text.contains("QUIC: 4 handshakes"), "{text}");
    let merged = dir.join("merged.json");
    let out = run(&[
        "merge",
        &paths[0],
        &paths[1],
        "--json",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    assert_eq!(m["requests"], 1001);
    assert_eq!(m["http_version"], "3");
    assert_eq!(m["quic"]["handshakes"], 4);
    assert_eq!(caddy.requests("HTTP/3.0"), 1001, "Caddy's count");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--profile` without a PID finds the server by its port: for HTTP/3 the
/// process whose UDP socket is bound to it (aioquic serves no TCP at all).
/// Without a UDP server there, one line says so and the load still runs.
#[test]
fn the_profiler_finds_an_http3_server_by_its_udp_port() {
    use loadgen_tests::aioquic::{AioquicServer, H3Options};
    let Some(pki) = Pki::new().map_err(|e| skip(&e)).ok() else {
        return;
    };
    let Some(srv) = AioquicServer::start(&pki, &H3Options::default()) else {
        return;
    };
    let ca = pki.ca.to_str().unwrap();
    let folded = std::env::temp_dir().join(format!("loadgen-h3-profile-{}.folded", srv.port));
    let url = srv.url("/");
    let (json, text, code) = run_json(&[
        "--http3",
        "-c2",
        "-d",
        "2s",
        "--cacert",
        ca,
        "--profile",
        "--folded",
        folded.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(json["requests"].as_u64().unwrap() > 0, "{text}");
    assert!(text.contains("Profile of python"), "{text}");
    let stacks = std::fs::read_to_string(&folded).expect("the folded profile");
    let _ = std::fs::remove_file(&folded);
    // aioquic's receive path, named by the Python frames of its process.
    assert!(
        stacks
            .lines()
            .any(|l| l.contains("QuicConnection.receive_datagram (")),
        "{}",
        &stacks[..stacks.len().min(3000)]
    );

    // No UDP server on the port (a TCP listener is not one): one line.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let url = format!("https://localhost:{port}/");
    let out = run(&[
        "--http3",
        "-k",
        "-c1",
        "-n",
        "1",
        "--timeout",
        "1s",
        "--profile",
        &url,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no process has a UDP socket bound to port {port}")),
        "{err}"
    );
}

/// The value of the sample `name` (a whole sample name, labels included)
/// in a Prometheus text exposition.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `--metrics-listen` over HTTP/3: the run's QUIC figures are served, and
/// after the run (`--metrics-linger`) they are the JSON report's own.
#[test]
fn the_quic_figures_are_served_to_prometheus_as_the_report_has_them() {
    let Some((pki, caddy)) = caddy() else { return };
    let ca = pki.ca.to_str().unwrap();
    let port = loadgen_tests::free_port();
    let json = std::env::temp_dir().join(format!("loadgen-h3-prom-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let child = std::process::Command::new(loadgen_tests::loadgen_bin())
        .args(["--http3", "-t2", "-c4", "--streams", "4", "-n", "2000"])
        .args(["--metrics-linger", "10s", "--cacert", ca, "--json"])
        .arg(&json)
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .arg(caddy.url("/"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // The report is written before the linger starts.
    let report: serde_json::Value = loop {
        if let Some(v) = std::fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            break v;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no report"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&json);
    let body = loadgen_tests::http_get(port, "/metrics");
    // SAFETY: kill only sends a signal to the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = &report["quic"];
    let got = |name: &str| sample(&body, name).unwrap_or_else(|| panic!("no {name}: {body}"));
    for (name, field) in [
        ("loadgen_quic_handshakes_total", &q["handshakes"]),
        (
            "loadgen_quic_zero_rtt_attempts_total",
            &q["zero_rtt"]["attempted"],
        ),
        (
            "loadgen_quic_zero_rtt_accepted_total",
            &q["zero_rtt"]["accepted"],
        ),
        ("loadgen_quic_retries_total", &q["retries"]),
        ("loadgen_quic_packets_sent_total", &q["packets_sent"]),
        ("loadgen_quic_packets_lost_total", &q["packets_lost"]),
        ("loadgen_quic_datagrams_sent_total", &q["datagrams_sent"]),
        ("loadgen_quic_sends_total", &q["sends"]),
        (
            "loadgen_quic_datagrams_received_total",
            &q["datagrams_received"],
        ),
        ("loadgen_quic_receives_total", &q["receives"]),
        // One RTT sample per response.
        ("loadgen_quic_rtt_seconds_count", &report["requests"]),
    ] {
        let want = field.as_u64().unwrap_or_else(|| panic!("{name}: {q}"));
        assert_eq!(got(name) as u64, want, "{name}: {q}\n{body}");
    }
    assert_eq!(got("loadgen_quic_handshakes_total"), 4.0, "{body}");
    let ratio = got("loadgen_quic_datagrams_sent_total") / got("loadgen_quic_sends_total");
    let per_send = q["datagrams_per_send"].as_f64().unwrap();
    assert!((ratio - per_send).abs() < 0.01, "{ratio} vs {per_send}");
    // The report's RTT p50 lies in the bucket where half the samples are.
    let count = got("loadgen_quic_rtt_seconds_count");
    let mut below = 0.0;
    let mut median_in = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("loadgen_quic_rtt_seconds_bucket{le=\"") else {
            continue;
        };
        let (le, n) = rest.split_once("\"} ").unwrap();
        let (le, n): (f64, f64) = (le.parse().unwrap(), n.trim().parse().unwrap());
        if n >= count / 2.0 {
            median_in = Some((below, le));
            break;
        }
        below = le;
    }
    let (low, high) = median_in.unwrap_or_else(|| panic!("no median bucket: {body}"));
    let p50 = q["rtt_us"]["p50"].as_f64().unwrap() / 1e6;
    assert!(
        low < p50 && p50 <= high * 1.001,
        "p50 {p50} s not in ({low}, {high}]: {body}"
    );
    let errors: u64 = body
        .lines()
        .filter(|l| l.starts_with("loadgen_quic_connection_errors_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum();
    let want: u64 = q["connection_errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, want, "{body}");
    assert!(
        body.contains("# TYPE loadgen_quic_rtt_seconds histogram"),
        "{body}"
    );
    if loadgen_tests::have("promtool") {
        let mut check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}\n{body}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A QUIC server without HTTP/3 (aioquic offering only ALPN `hq-interop`)
/// refuses our handshake with the TLS alert no_application_protocol: the
/// run ends at once, in one line that says so, with exit 2 as `--http2`
/// against a server without h2 (before, every connection retried its
/// handshake until the run's end).
#[test]
fn a_quic_server_refusing_alpn_h3_ends_the_run_in_one_line() {
    let Ok(pki) = Pki::new().map_err(|e| skip(&e)) else {
        return;
    };
    let other = H3Options {
        alpn: Some("hq-interop"),
        ..H3Options::default()
    };
    let Some(server) = AioquicServer::start(&pki, &other) else {
        return;
    };
    let ca = pki.ca.to_str().unwrap();
    let started = loadgen_tests::start_clock();
    let out = run(&[
        "--http3",
        "-c2",
        "-d",
        "10s",
        "--cacert",
        ca,
        &server.url("/"),
    ]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        took < std::time::Duration::from_secs(3),
        "took {took:?}: {err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(
        err.trim(),
        "loadgen: the server refused ALPN h3 (no_application_protocol): it answers QUIC but serves no HTTP/3; drop --http3"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("CRYPTO_ERROR(NoApplicationProtocol)"),
        "{summary}"
    );
}
