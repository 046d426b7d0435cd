//! HTTP/2 (`--http2`) against real servers: nginx over h2c and over TLS
//! (ALPN h2), Go's net/http, and the scriptable raw server of the tests,
//! both engines; exact counts against each server's own.

use std::time::Duration;

use loadgen_tests::go::{GoOptions, GoServer};
use loadgen_tests::h2server::frame::{INTERNAL_ERROR, NO_ERROR, REFUSED_STREAM};
use loadgen_tests::h2server::{Behaviour, H2Options, H2Server, Malformed};
use loadgen_tests::nginx::{Nginx, NginxOptions, NginxTls, find_nginx};
use loadgen_tests::pki::Pki;
use loadgen_tests::{Target, run_json, skip};

fn have_nginx() -> bool {
    if find_nginx().is_none() {
        skip("nginx is not installed (apt-get install nginx-light)");
        return false;
    }
    true
}

fn pki() -> Option<Pki> {
    match Pki::new() {
        Ok(p) => Some(p),
        Err(e) => {
            skip(&e);
            None
        }
    }
}

/// Runs loadgen with `args` then `url`, expecting exit 0.
fn load(args: &[&str], url: &str) -> (serde_json::Value, String) {
    let mut all = args.to_vec();
    all.push(url);
    let (json, text, code) = run_json(&all);
    assert_eq!(code, 0, "{all:?}: {text}");
    (json, text)
}

fn errors(json: &serde_json::Value) -> u64 {
    json["errors"]
        .as_object()
        .expect("errors")
        .values()
        .map(|v| v.as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn exact_counts_over_h2c_and_tls_on_both_engines() {
    if !have_nginx() {
        return;
    }
    let Some(pki) = pki() else {
        return;
    };
    let tls = NginxTls {
        cert: &pki.server_cert,
        key: &pki.server_key,
        client_ca: None,
    };
    let plain = Nginx::start_with(&NginxOptions {
        http2: true,
        ..NginxOptions::default()
    })
    .expect("nginx h2c");
    let secure = Nginx::start_with(&NginxOptions {
        http2: true,
        tls: Some(tls),
        ..NginxOptions::default()
    })
    .expect("nginx h2 over TLS");
    let ca = pki.ca.to_str().unwrap();
    for (nginx, url) in [
        (&plain, format!("http://127.0.0.1:{}/", plain.port)),
        (&secure, format!("https://localhost:{}/", secure.port)),
    ] {
        for engine in ["uring", "glommio"] {
            for streams in ["1", "16"] {
                let before = nginx.counts().requests;
                let mut args = vec![
                    "--http2",
                    "-n",
                    "3000",
                    "-c4",
                    "-t2",
                    "--streams",
                    streams,
                    "--engine",
                    engine,
                ];
                if url.starts_with("https") {
                    args.extend(["--cacert", ca]);
                }
                let (json, text) = load(&args, &url);
                let what = format!("{url} {engine} --streams {streams}");
                assert_eq!(json["requests"], 3000, "{what}: {text}");
                assert_eq!(json["status"]["codes"]["200"], 3000, "{what}");
                assert_eq!(errors(&json), 0, "{what}: {}", json["errors"]);
                assert_eq!(
                    nginx.counts().requests - before,
                    3000,
                    "{what}: nginx's own count"
                );
                if url.starts_with("https") {
                    assert_eq!(json["tls"]["alpn"], "h2", "{what}");
                }
            }
        }
    }
}

/// nginx sends GOAWAY after `keepalive_requests`: the streams it did not
/// take are sent again on a new connection, none lost and none twice (its
/// own count is exactly N). h2load loses them.
#[test]
fn goaway_every_thousand_requests_loses_nothing() {
    if !have_nginx() {
        return;
    }
    let nginx = Nginx::start_with(&NginxOptions {
        http2: true,
        keepalive_requests: Some(1000),
        ..NginxOptions::default()
    })
    .expect("nginx h2c");
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let (json, text) = load(&["--http2", "-n", "20000", "-c4", "--streams", "16"], &url);
    assert_eq!(json["requests"], 20000, "{text}");
    assert_eq!(errors(&json), 0, "{}", json["errors"]);
    assert_eq!(nginx.counts().requests, 20000, "processed once each");
    assert!(json["reconnects"].as_u64().unwrap() >= 16, "{text}");
}

#[test]
fn go_net_http_over_tls_counts_exactly() {
    let Some(pki) = pki() else {
        return;
    };
    let Some(go) = GoServer::start(&pki, &GoOptions::default()) else {
        return;
    };
    let ca = pki.ca.to_str().unwrap();
    let url = go.url("/");
    for engine in ["uring", "glommio"] {
        let before = go.stats().h2_requests;
        let (json, text) = load(
            &[
                "--http2",
                "-n",
                "4000",
                "-c4",
                "--streams",
                "8",
                "--engine",
                engine,
                "--cacert",
                ca,
            ],
            &url,
        );
        assert_eq!(json["requests"], 4000, "{engine}: {text}");
        assert_eq!(errors(&json), 0, "{engine}: {}", json["errors"]);
        assert_eq!(
            go.stats().h2_requests - before,
            4000,
            "{engine}: Go's own count"
        );
    }
}

#[test]
fn a_server_without_h2_is_one_line_and_exit_2() {
    if !have_nginx() {
        return;
    }
    let Some(pki) = pki() else {
        return;
    };
    // TLS without http2: nginx picks http/1.1 in ALPN.
    let nginx = Nginx::start_tls(
        0,
        &NginxTls {
            cert: &pki.server_cert,
            key: &pki.server_key,
            client_ca: None,
        },
    )
    .expect("nginx TLS");
    let url = format!("https://localhost:{}/", nginx.port);
    let ca = pki.ca.to_str().unwrap();
    let (_, text, code) = run_json(&["--http2", "-n", "100", "--cacert", ca, &url]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("the server chose http/1.1; drop --http2"),
        "{text}"
    );
    // Plain HTTP/1.1 answers the preface in HTTP/1.1.
    let target = Target::start(1);
    let (_, text, code) = run_json(&["--http2", "-n", "100", &target.url("/")]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("HTTP/1"), "{text}");
}

fn raw(behaviour: Behaviour) -> H2Server {
    H2Server::plain(behaviour)
}

#[test]
fn refused_and_goaway_streams_are_sent_again_exactly_once() {
    for (name, behaviour) in [
        (
            "graceful GOAWAY every 10 streams",
            Behaviour::GoawayAfter {
                streams: 10,
                code: NO_ERROR,
                abrupt: false,
            },
        ),
        (
            "REFUSED_STREAM every 5th",
            Behaviour::ResetEvery {
                every: 5,
                code: REFUSED_STREAM,
            },
        ),
    ] {
        let server = raw(behaviour);
        let (json, text) = load(
            &["--http2", "-n", "500", "-c2", "--streams", "8"],
            &server.url("/"),
        );
        let rec = server.record_when_idle(Duration::from_secs(5));
        assert_eq!(json["requests"], 500, "{name}: {text}");
        assert_eq!(errors(&json), 0, "{name}: {}", json["errors"]);
        assert_eq!(rec.responses, 500, "{name}: answered once each");
        assert!(rec.violations.is_empty(), "{name}: {:?}", rec.violations);
        assert!(json["reissued"].as_u64().unwrap() > 0, "{name}");
    }
}

#[test]
fn reset_streams_fail_their_request_only() {
    let server = raw(Behaviour::ResetEvery {
        every: 4,
        code: INTERNAL_ERROR,
    });
    let (json, text) = load(
        &["--http2", "-n", "400", "-c2", "--streams", "4"],
        &server.url("/"),
    );
    assert_eq!(json["errors"]["stream_reset"], 100, "{text}");
    assert_eq!(json["requests"], 300, "{text}");
    let rec = server.record_when_idle(Duration::from_secs(5));
    assert_eq!(rec.connections, 2, "the connections stay up");
}

#[test]
fn a_stream_limit_is_kept() {
    let server = H2Options::default()
        .behaviour(Behaviour::MaxConcurrentStreams(3))
        .response_delay(Duration::from_millis(2))
        .start();
    let (json, text) = load(
        &["--http2", "-n", "300", "-c1", "--streams", "16"],
        &server.url("/"),
    );
    let rec = server.record_when_idle(Duration::from_secs(5));
    assert_eq!(json["requests"], 300, "{text}");
    assert_eq!(errors(&json), 0, "{}", json["errors"]);
    assert!(rec.violations.is_empty(), "{:?}", rec.violations);
}

#[test]
fn bodies_wait_for_small_windows() {
    let dir = std::env::temp_dir().join(format!("loadgen-h2-body-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = dir.join("body");
    std::fs::write(&body, vec![b'x'; 20_000]).unwrap();
    let body = body.to_str().unwrap();
    for behaviour in [
        // 1000 bytes a stream at a time, given back every millisecond.
        Behaviour::SlowStreamWindow {
            window: 1000,
            update: 1000,
            every: Duration::from_millis(1),
        },
        // The connection's window opened 4 KiB a millisecond.
        Behaviour::SlowConnWindow {
            update: 4096,
            every: Duration::from_millis(1),
        },
    ] {
        let server = raw(behaviour.clone());
        let (json, text) = load(
            &[
                "--http2",
                "-n",
                "40",
                "-c1",
                "--streams",
                "2",
                "-m",
                "POST",
                "--body-file",
                body,
                // Correctness, not speed: each body takes 20 of the
                // server's 5 ms ticks, and a loaded machine stretches them.
                "--timeout",
                "20s",
            ],
            &server.url("/"),
        );
        let rec = server.record_when_idle(Duration::from_secs(5));
        assert_eq!(json["requests"], 40, "{behaviour:?}: {text}");
        assert_eq!(errors(&json), 0, "{behaviour:?}: {}", json["errors"]);
        assert_eq!(rec.data_bytes_received, 40 * 20_000, "{behaviour:?}");
        assert!(
            json["h2"]["window_stalls"].as_u64().unwrap() > 0,
            "{behaviour:?}: the client waited: {}",
            json["h2"]
        );
        assert!(
            rec.violations.is_empty(),
            "{behaviour:?}: {:?}",
            rec.violations
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every hostile behaviour ends in bounded time with its failures counted
/// by kind, or with every request answered where the behaviour is legal.
#[test]
fn hostile_servers_are_counted_and_survived() {
    let quick = [
        "--http2",
        "-n",
        "40",
        "-c2",
        "--streams",
        "4",
        "--timeout",
        "300ms",
    ];
    let legal = [
        Behaviour::Trailers,
        Behaviour::Padded { pad: 17 },
        Behaviour::SplitData { chunk: 1 },
        Behaviour::Informational { status: 103 },
        Behaviour::PingFlood { count: 2000 },
        Behaviour::Malformed(Malformed::UnknownFrameTypes),
    ];
    for b in legal {
        let server = raw(b.clone());
        let (json, text) = load(&quick, &server.url("/"));
        assert_eq!(json["requests"], 40, "{b:?}: {text}");
        assert_eq!(errors(&json), 0, "{b:?}: {}", json["errors"]);
        let rec = server.record_when_idle(Duration::from_secs(5));
        assert!(rec.violations.is_empty(), "{b:?}: {:?}", rec.violations);
        if let Behaviour::PingFlood { count } = b {
            assert!(
                rec.ping_acks >= count,
                "{} of {count} PINGs answered",
                rec.ping_acks
            );
        }
    }
    let broken: [(Behaviour, &str); 13] = [
        (Behaviour::NoSettings, "timeout"),
        (Behaviour::SilentAfterSettings, "timeout"),
        (Behaviour::HugeHeaders { bytes: 2 << 20 }, "protocol"),
        (
            Behaviour::HpackBomb {
                value_len: 4000,
                refs: 10_000,
            },
            "protocol",
        ),
        (Behaviour::Malformed(Malformed::BadPingLength), "protocol"),
        (
            Behaviour::Malformed(Malformed::BadWindowUpdateLength),
            "protocol",
        ),
        (
            Behaviour::Malformed(Malformed::DataOnStreamZero),
            "protocol",
        ),
        (Behaviour::Malformed(Malformed::OversizedFrame), "protocol"),
        (
            Behaviour::Malformed(Malformed::HeadersOnEvenStream),
            "protocol",
        ),
        (Behaviour::Malformed(Malformed::InvalidHpack), "protocol"),
        (Behaviour::Malformed(Malformed::WindowOverflow), "protocol"),
        (Behaviour::Malformed(Malformed::PushPromise), "protocol"),
        (
            Behaviour::Malformed(Malformed::ContinuationWithoutHeaders),
            "protocol",
        ),
    ];
    for (b, kind) in broken {
        let server = raw(b.clone());
        let started = loadgen_tests::start_clock();
        let (json, text) = load(&quick, &server.url("/"));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{b:?} took {:?}",
            started.elapsed()
        );
        let failed = errors(&json);
        assert_eq!(
            json["requests"].as_u64().unwrap() + failed,
            40,
            "{b:?}: {text}"
        );
        assert!(
            json["errors"][kind].as_u64().unwrap() > 0,
            "{b:?}: {}",
            json["errors"]
        );
    }
    // An abrupt GOAWAY loses what was in flight below it: counted, and the
    // rest sent again.
    let server = raw(Behaviour::GoawayAfter {
        streams: 10,
        code: NO_ERROR,
        abrupt: true,
    });
    let (json, text) = load(&quick, &server.url("/"));
    assert_eq!(
        json["requests"].as_u64().unwrap() + errors(&json),
        40,
        "{text}"
    );
}

#[test]
fn templated_requests_reach_the_server_as_sent() {
    let server = raw(Behaviour::Normal);
    let url = server.url("/item/{{seq}}");
    let (json, text) = load(
        &[
            "--http2",
            "-n",
            "200",
            "-c2",
            "--streams",
            "4",
            "-H",
            "x-seq: {{seq}}",
            "-m",
            "PUT",
            "-b",
            "v={{seq}}",
        ],
        &url,
    );
    assert_eq!(json["requests"], 200, "{text}");
    let rec = server.record_when_idle(Duration::from_secs(5));
    let mut seqs: Vec<u64> = rec
        .requests
        .iter()
        .map(|r| {
            assert_eq!(r.method, "PUT");
            let seq: u64 = r.path.strip_prefix("/item/").unwrap().parse().unwrap();
            assert_eq!(r.header("x-seq"), Some(seq.to_string().as_str()), "{r:?}");
            assert_eq!(r.body_len, format!("v={seq}").len() as u64);
            seq
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
}

#[test]
fn open_loop_over_h2_holds_its_rate() {
    if !have_nginx() {
        return;
    }
    let nginx = Nginx::start_with(&NginxOptions {
        http2: true,
        ..NginxOptions::default()
    })
    .expect("nginx h2c");
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let (json, text) = load(
        &["--http2", "-R", "2000", "-d", "3s", "-c4", "--streams", "8"],
        &url,
    );
    let rps = json["rps"].as_f64().unwrap();
    assert!((rps - 2000.0).abs() < 40.0, "{rps} req/s: {text}");
    assert_eq!(errors(&json), 0, "{}", json["errors"]);
}

/// What a run can do over HTTP/1.1 it does over HTTP/2: a named, weighted
/// scenario with a feed, `--expect-status`, thresholds, the HTML page and
/// the breakdown, then a fleet of two parts merged.
#[test]
fn scenarios_gates_reports_and_fleets_over_h2() {
    let server = H2Options::default().start();
    let dir = std::env::temp_dir().join(format!("loadgen-h2-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ids = dir.join("ids.csv");
    std::fs::write(&ids, "id\n7\n8\n9\n").unwrap();
    let scenario = dir.join("mix.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[request]]\nname = \"item\"\nurl = \"{}\"\nweight = 3\n\n[[request]]\nname = \"post\"\nurl = \"/form\"\nmethod = \"POST\"\nbody = \"n={{{{seq}}}}\"\nweight = 1\n",
            server.url("/items/{{feed:ids.id}}")
        ),
    )
    .unwrap();
    let html = dir.join("page.html");
    let feed = format!("ids={}", ids.display());
    let (json, text) = load(
        &[
            "--http2",
            "--streams",
            "4",
            "-c2",
            "-n",
            "400",
            "--feed",
            &feed,
            "--expect-status",
            "2xx",
            "--threshold",
            "errors==0",
            "--threshold",
            "p99<2s",
            "--latency",
            "--html",
            html.to_str().unwrap(),
            "--scenario",
            scenario.to_str().unwrap(),
        ],
        &server.url("/"),
    );
    assert_eq!(json["requests"], 400, "{text}");
    assert_eq!(json["http_version"], "2");
    let by: Vec<(String, u64)> = json["by_request"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by.iter().map(|(_, n)| n).sum::<u64>(), 400, "{by:?}");
    assert!(by.iter().all(|(_, n)| *n > 50), "both requests ran: {by:?}");
    assert!(
        json["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["ok"] == true)
    );
    assert!(text.contains("HTTP/2, 4 streams per connection"), "{text}");
    assert!(text.contains("first byte"), "the breakdown: {text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("HTTP/2, 4 streams per connection"),
        "the page shows the summary"
    );
    let rec = server.record_when_idle(Duration::from_secs(5));
    let items = rec
        .requests
        .iter()
        .filter(|r| r.path.starts_with("/items/"))
        .count();
    let posts = rec
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/form")
        .count();
    assert_eq!(items + posts, 400);
    assert!(
        rec.requests
            .iter()
            .filter(|r| r.path.starts_with("/items/"))
            .all(|r| ["/items/7", "/items/8", "/items/9"].contains(&r.path.as_str())),
        "feed values in the path"
    );
    // Two parts of one fleet, merged: counts add, the HTTP/2 section too.
    let mut parts = Vec::new();
    for k in 1..=2 {
        let out = dir.join(format!("part{k}.json"));
        let (json, text, code) = run_json(&[
            "--http2",
            "--streams",
            "2",
            "-c4",
            "-n",
            "600",
            "--part",
            &format!("{k}/2"),
            &server.url("/"),
        ]);
        assert_eq!(code, 0, "{text}");
        std::fs::write(&out, json.to_string()).unwrap();
        parts.push(out);
    }
    let merged = loadgen_tests::run(&[
        "merge",
        parts[0].to_str().unwrap(),
        parts[1].to_str().unwrap(),
        "--json",
        "-",
    ]);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert_eq!(m["requests"], 600);
    assert_eq!(m["http_version"], "2");
    assert_eq!(m["h2"]["streams_per_conn"], 2);
    assert!(
        m["h2"]["frames_in"].as_u64().unwrap() >= 1200,
        "{}",
        m["h2"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
