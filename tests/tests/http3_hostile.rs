//! What an HTTP/3 server (and the network on the way) does to loadgen,
//! through the loadgen binary (issue 27, section 5): loss and reordering
//! through the UDP relay and through the netns + nftables link, and the
//! aioquic server's misbehaviours (GOAWAY, REQUEST_REJECTED, a stream cap
//! below `--streams`, slow answers, Retry, silence, a short idle timeout,
//! a stateless reset, version negotiation). Each run is counted at the
//! server, must end within a bound, and must say in its report what
//! happened. The peers themselves are proved in h3_peers.rs.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use loadgen_tests::aioquic::{AioquicServer, Counts, H3Options};
use loadgen_tests::netns_loss::{LossyLink, Side};
use loadgen_tests::pki::Pki;
use loadgen_tests::udp_relay::{Impairment, RelayConfig, UdpRelay};
use loadgen_tests::{loadgen_bin, skip};
use serde_json::Value;

fn pki() -> Option<Pki> {
    Pki::new().map_err(|e| skip(&e)).ok()
}

fn server(pki: &Pki, o: H3Options) -> Option<AioquicServer> {
    AioquicServer::start(pki, &o)
}

/// A finished loadgen run: its JSON report, its text (stderr), exit code
/// and wall time.
struct Ran {
    json: Value,
    text: String,
    code: i32,
    took: Duration,
}

impl Ran {
    fn errors(&self, kind: &str) -> u64 {
        self.json["errors"][kind].as_u64().unwrap_or(0)
    }

    fn error_total(&self) -> u64 {
        self.json["errors"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
    }

    fn quic(&self, key: &str) -> u64 {
        self.json["quic"][key].as_u64().unwrap_or(0)
    }

    fn connection_errors(&self, name: &str) -> u64 {
        self.json["quic"]["connection_errors"][name]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Runs `cmd` (loadgen, maybe in a namespace) with `args` plus `--json -`,
/// killed after `bound` (then the test fails: a hang).
fn run_in(mut cmd: Command, args: &[&str], bound: Duration) -> Ran {
    let started = Instant::now();
    let out = cmd
        .args(args)
        .args(["--json", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cannot run loadgen");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.code() != Some(124),
        "loadgen {args:?} was still running after {bound:?}: {text}"
    );
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("loadgen {args:?} printed no JSON ({e}) in {took:?}: {text}"));
    Ran {
        json,
        text,
        code: out.status.code().unwrap_or(-1),
        took,
    }
}

fn bounded(bound: Duration) -> Command {
    let mut c = Command::new("timeout");
    c.arg(bound.as_secs().to_string()).arg(loadgen_bin());
    c
}

/// loadgen `--http3` against `url`, trusting the test CA.
fn loadgen(pki: &Pki, url: &str, args: &[&str], bound: Duration) -> Ran {
    let ca = pki.ca.to_str().unwrap();
    let all = [&["--http3", "--cacert", ca][..], args, &[url]].concat();
    run_in(bounded(bound), &all, bound)
}

/// `-n`'s count is exact at both ends: the report's requests are the
/// server's answers, and no request was answered twice.
fn exact(r: &Ran, c: &Counts, n: u64) {
    assert_eq!(r.code, 0, "{}", r.text);
    assert_eq!(r.json["requests"], n, "{}", r.text);
    assert_eq!(r.error_total(), 0, "{}", r.text);
    assert_eq!(c.answered_total(), n, "served: {c:?}\n{}", r.text);
}

/// 5 % of the datagrams lost each way, every 7th held behind the next,
/// 2 ms each way: every request is answered once, and the losses show.
#[test]
fn loss_and_reordering_through_the_relay_lose_no_request() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(&pki, H3Options::default()) else {
        return;
    };
    let bad = Impairment {
        drop_percent: 5.0,
        reorder_every: 7,
    };
    let relay = UdpRelay::start(
        SocketAddr::from(([127, 0, 0, 1], srv.port)),
        RelayConfig {
            to_server: bad,
            to_client: bad,
            delay: Duration::from_millis(2),
            seed: 27,
            ..RelayConfig::default()
        },
    )
    .unwrap();
    let url = format!("https://localhost:{}/", relay.addr.port());
    // A generous --timeout: a lost request must be recovered by QUIC, not
    // failed and sent again by loadgen (that would be counted twice).
    let r = loadgen(
        &pki,
        &url,
        &["-c2", "--streams", "4", "-n", "400", "--timeout", "10s"],
        Duration::from_secs(30),
    );
    exact(&r, &srv.counts(), 400);
    assert!(r.quic("packets_lost") > 0, "{}", r.json["quic"]);
    let c = relay.counts();
    for f in [c.to_server, c.to_client] {
        assert!(f.dropped > 0 && f.reordered > 0, "{c:?}");
    }
}

/// Kernel loss: aioquic in one namespace, loadgen in another, nftables
/// dropping 3 % of the UDP datagrams arriving on each side.
#[test]
fn loss_on_a_netns_link_loses_no_request() {
    let Some(pki) = pki() else { return };
    let Some(link) = LossyLink::new(3, 3) else {
        return;
    };
    let python = link.command(Side::Server, &loadgen_tests::python::python());
    let o = H3Options {
        host: Some(link.ip(Side::Server).to_string()),
        ..H3Options::default()
    };
    let Some(mut srv) = AioquicServer::start_with(python, &pki, &o) else {
        return;
    };
    // The certificate names localhost and 127.0.0.1: -k for this address.
    let url = format!("https://{}:{}/", link.ip(Side::Server), srv.port);
    let mut cmd = link.command(Side::Client, "timeout");
    cmd.arg("30").arg(loadgen_bin());
    let args = [
        "--http3",
        "-k",
        "-c2",
        "--streams",
        "4",
        "-n",
        "400",
        "--timeout",
        "10s",
        &url,
    ];
    let r = run_in(cmd, &args, Duration::from_secs(30));
    exact(&r, &srv.counts(), 400);
    assert!(r.quic("packets_lost") > 0, "{}", r.json["quic"]);
    let dropped = (link.dropped(Side::Server), link.dropped(Side::Client));
    assert!(dropped.0 > 0 && dropped.1 > 0, "nft dropped {dropped:?}");
}

/// GOAWAY after 7 requests on each connection (the streams beyond it are
/// reset with REQUEST_REJECTED), and REQUEST_REJECTED on every 5th request:
/// each request is sent again elsewhere and served exactly once, and the
/// re-sends are counted.
#[test]
fn goaway_and_request_rejected_are_sent_again_and_served_once() {
    let Some(pki) = pki() else { return };
    let Some(mut goaway) = server(
        &pki,
        H3Options {
            goaway_after: 7,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let args = ["-c2", "--streams", "4", "-n", "200"];
    let r = loadgen(&pki, &goaway.url("/"), &args, Duration::from_secs(20));
    let c = goaway.counts();
    exact(&r, &c, 200);
    // 200 requests, 7 a connection: at least 29 connections, each told.
    assert!(c.goaways >= 28, "{c:?}");
    assert_eq!(r.quic("handshakes"), c.connections, "{}", r.text);
    // What the server rejected was sent again; so was what a GOAWAY gave
    // back before the server saw it.
    let reissued = r.json["reissued"].as_u64().unwrap();
    assert!(reissued >= c.rejected, "{reissued} re-sent, {c:?}");
    assert_eq!(c.received, 200 + c.rejected, "{c:?}");

    let Some(mut reject) = server(
        &pki,
        H3Options {
            reject_every: 5,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let r = loadgen(&pki, &reject.url("/"), &args, Duration::from_secs(20));
    let c = reject.counts();
    exact(&r, &c, 200);
    assert!(c.rejected >= 40, "{c:?}");
    assert_eq!(r.json["reissued"].as_u64(), Some(c.rejected), "{c:?}");
    assert_eq!(c.received, 200 + c.rejected, "{c:?}");
    assert_eq!(r.quic("handshakes"), 2, "{}", r.text);
}

/// A server allowing 2 streams at a time, answering each after 30 ms,
/// against `--streams 8`: the requests wait for credit (never sent twice)
/// and their latency shows the delay.
#[test]
fn a_stream_cap_below_streams_and_slow_answers_are_waited_for() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            max_streams: 2,
            delay_ms: 30,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let args = ["-c1", "--streams", "8", "-n", "40"];
    let r = loadgen(&pki, &srv.url("/"), &args, Duration::from_secs(20));
    let c = srv.counts();
    exact(&r, &c, 40);
    assert_eq!(c.peak_streams, 2, "{c:?}");
    assert_eq!(r.json["reissued"], 0, "{}", r.text);
    assert_eq!(r.quic("handshakes"), 1);
    let p50 = r.json["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50 >= 30_000, "p50 {p50} µs under the server's 30 ms delay");
    // 40 requests, 2 at a time, 30 ms each: at least 20 rounds.
    assert!(r.took >= Duration::from_millis(600), "{:?}", r.took);
}

/// A Retry before every handshake: the handshakes complete, every
/// request is served once, and the Retry packets are counted.
#[test]
fn retry_before_each_handshake_completes() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            retry: true,
            goaway_after: 10,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let args = ["-c2", "--streams", "2", "-n", "60"];
    let r = loadgen(&pki, &srv.url("/"), &args, Duration::from_secs(20));
    let c = srv.counts();
    exact(&r, &c, 60);
    assert!(c.connections >= 6, "{c:?}");
    assert_eq!(r.quic("handshakes"), c.connections, "{}", r.text);
    assert_eq!(r.quic("retries"), c.connections, "{}", r.text);
    assert!(
        r.text.contains(&format!(", Retry {})", c.connections)),
        "{}",
        r.text
    );
}

/// A server that answers 30 requests and then sends nothing at all (no
/// answers, no acks, no handshakes). With `-d` the run ends at its
/// deadline; with `-n` (which can no longer be reached) it ends once no
/// connection has worked for a whole `--timeout`, in one line, exit 1.
/// Either way the requests the server left unanswered are `timeout`
/// errors (or were sent again on a connection that then failed too, and
/// counted in `reissued`), and the failed handshakes are TLS handshake
/// timeouts.
#[test]
fn a_server_that_falls_silent_ends_the_run_by_its_timeout() {
    let Some(pki) = pki() else { return };
    for (args, bound) in [
        (&["-d", "3s"][..], Duration::from_secs(5)),
        (&["-n", "200"][..], Duration::from_secs(8)),
    ] {
        let Some(mut srv) = server(
            &pki,
            H3Options {
                silent_after: 30,
                ..H3Options::default()
            },
        ) else {
            return;
        };
        let all = [&["-c2", "--streams", "4", "--timeout", "1s"][..], args].concat();
        let r = loadgen(&pki, &srv.url("/"), &all, Duration::from_secs(20));
        let c = srv.counts();
        assert!(r.took < bound, "{args:?} took {:?}: {}", r.took, r.text);
        assert_eq!(r.json["requests"], 30, "{args:?}: {}", r.text);
        assert_eq!(c.answered_total(), 30, "{c:?}");
        let timeouts = r.errors("timeout");
        assert!(timeouts > 0, "{args:?}: {}", r.text);
        assert_eq!(r.error_total(), timeouts, "{args:?}: {}", r.text);
        // Each request the server left unanswered failed, or was sent
        // again; with -d some were still in flight at the deadline.
        let reissued = r.json["reissued"].as_u64().unwrap();
        let accounted = timeouts + reissued;
        if args[0] == "-n" {
            assert_eq!(accounted, c.unanswered, "{c:?}\n{}", r.text);
        } else {
            assert!(accounted <= c.unanswered, "{c:?}\n{}", r.text);
        }
        let tls_timeouts = r.json["tls"]["errors"]["timeout"].as_u64();
        assert!(tls_timeouts >= Some(1), "{args:?}: {}", r.text);
        if args[0] == "-n" {
            assert_eq!(r.code, 1, "{}", r.text);
            let last = r.text.trim().lines().last().unwrap_or_default();
            assert!(
                last.starts_with("loadgen: lost 127.0.0.1:") && last.contains("-n"),
                "{}",
                r.text
            );
        } else {
            assert_eq!(r.code, 0, "{}", r.text);
        }
    }
}

/// A server whose idle timeout (300 ms) is shorter than the gaps of a
/// slow open-loop run (1 s): each connection idles out on both sides, the next
/// request goes on a new one, nothing is lost, and the timeouts are
/// counted by name.
#[test]
fn connections_that_idle_out_are_replaced() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            idle_timeout_ms: 300,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    // A second between requests: quinn idles out after max(300 ms, 3
    // PTOs), which on a loaded machine (RTT variance) can pass 500 ms
    // while aioquic's side has already gone.
    let args = ["-c1", "-R", "1", "-d", "3500ms"];
    let r = loadgen(&pki, &srv.url("/"), &args, Duration::from_secs(20));
    let c = srv.counts();
    assert_eq!(r.code, 0, "{}", r.text);
    assert_eq!(r.error_total(), 0, "{}", r.text);
    let n = r.json["requests"].as_u64().unwrap();
    assert!(n >= 3, "{}", r.text);
    assert_eq!(c.answered_total(), n, "{c:?}");
    assert!(c.idle_timeouts >= 2, "{c:?}");
    assert!(
        r.connection_errors("IDLE_TIMEOUT") >= 2,
        "{}",
        r.json["quic"]
    );
    assert_eq!(r.quic("handshakes"), c.connections);
}

/// Every connection loadgen lets go is closed at the server with
/// H3_NO_ERROR, at the end of the run too, and the end of the run does
/// not wait for the server's side of it.
#[test]
fn the_server_sees_each_connection_closed() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            goaway_after: 25,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let args = ["-c3", "--streams", "4", "-n", "300"];
    let r = loadgen(&pki, &srv.url("/"), &args, Duration::from_secs(20));
    exact(&r, &srv.counts(), 300);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
    // aioquic reports a close after its draining period (3 PTOs).
    let deadline = Instant::now() + Duration::from_secs(3);
    let c = loop {
        let c = srv.counts();
        if c.closes.values().sum::<u64>() >= c.connections || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(c.connections >= 12, "{c:?}");
    assert_eq!(c.closes.get("0x100"), Some(&c.connections), "{c:?}");
}

/// The server forgets each connection after 20 answers and answers what
/// comes for it with a stateless reset (as a restarted server would).
/// The connection is replaced, and its requests in flight go as over
/// HTTP/1.1 and HTTP/2 when a connection dies under them: the oldest
/// fails (`closed`: the server may have seen it), the others are sent
/// again. Every request is accounted for, none served twice, and the
/// resets are counted by name.
#[test]
fn a_stateless_reset_replaces_the_connection_and_loses_no_request() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            reset_after: 20,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let args = ["-c2", "--streams", "4", "-n", "200", "--timeout", "5s"];
    let r = loadgen(&pki, &srv.url("/"), &args, Duration::from_secs(20));
    let c = srv.counts();
    assert_eq!(r.code, 0, "{}", r.text);
    let answered = r.json["requests"].as_u64().unwrap();
    let closed = r.errors("closed");
    assert_eq!(answered + closed, 200, "{}", r.text);
    assert_eq!(r.error_total(), closed, "{}", r.text);
    assert_eq!(c.answered_total(), answered, "{c:?}");
    assert!(c.resets > 0, "{c:?}");
    // A connection per 20 answers (and up to 4 more in flight on each).
    let resets = r.connection_errors("STATELESS_RESET");
    assert!(resets >= 7 && closed <= resets, "{}", r.json["quic"]);
    assert_eq!(r.quic("handshakes"), c.connections);
    assert!(r.took < Duration::from_secs(10), "{:?}", r.took);
}

/// A server that speaks only QUIC version 2 answers loadgen's version 1
/// Initial with version negotiation: no retry can help, so the run ends
/// at once in one line, exit 2 as for a server without HTTP/2 under
/// `--http2` (before, every slot retried its handshake until `-d` ran
/// out, and the line blamed TLS).
#[test]
fn version_negotiation_to_a_version_we_lack_is_one_line() {
    let Some(pki) = pki() else { return };
    let Some(srv) = server(
        &pki,
        H3Options {
            only_v2: true,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let r = loadgen(
        &pki,
        &srv.url("/"),
        &["-c2", "-d", "5s"],
        Duration::from_secs(20),
    );
    assert!(r.took < Duration::from_secs(2), "{:?}: {}", r.took, r.text);
    assert_eq!(r.code, 2, "{}", r.text);
    let last = r.text.trim().lines().last().unwrap_or_default();
    assert!(last.contains("version negotiation"), "{}", r.text);
    assert!(
        r.connection_errors("VERSION_MISMATCH") >= 1,
        "{}",
        r.json["quic"]
    );
}
