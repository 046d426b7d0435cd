//! A second HTTP/3 server beside Caddy, on an independent QUIC stack:
//! Python's aioquic (`h3_server.py`). It answers every GET with 200 and
//! [`BODY`], on 127.0.0.1 at a UDP port it picks and prints, with a
//! certificate from the test's [`Pki`] (the URL host must be `localhost`).
//! Its own counts — answers by path, requests received, rejected and left
//! unanswered, connections (handshakes completed), GOAWAYs sent, the most
//! requests open at once on a connection — are asked for over its stdin.
//!
//! It misbehaves on request ([`H3Options`]): a delay before each answer,
//! GOAWAY after N requests on a connection (later streams are reset with
//! H3_REQUEST_REJECTED), H3_REQUEST_REJECTED on every Nth request, silence
//! (nothing sent at all, on any connection) after N answers, a cap on
//! concurrent request streams (initial_max_streams_bidi, raised as streams
//! close), a Retry before every handshake, a short idle timeout, a
//! connection forgotten after N answers (what comes for it then gets a
//! stateless reset, as from a restarted server), QUIC version 2 only (a
//! version-1 client gets version negotiation), and another ALPN than `h3`.
//! It counts the connections the client closed (CONNECTION_CLOSE, by code)
//! and those that idled out.
//!
//! [`client`] runs aioquic's own client (`h3_client.py`), which proves the
//! server (and the relay, `udp_relay.rs`) in tests/tests/h3_peers.rs.
//!
//! Needs `pip install aioquic` (.ci/run does it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::pki::Pki;
use crate::python::python;

const SERVER: &str = include_str!("h3_server.py");
const CLIENT: &str = include_str!("h3_client.py");

/// The body of every answer.
pub const BODY: &str = "hello from aioquic";

/// H3_REQUEST_REJECTED (RFC 9114 §8.1): the request was not processed.
pub const REQUEST_REJECTED: u64 = 0x10b;

/// How the server misbehaves; the default behaves.
#[derive(Debug, Default, Clone)]
pub struct H3Options {
    /// Milliseconds to wait before answering each request.
    pub delay_ms: u32,
    /// GOAWAY after this many requests on a connection (0: never).
    pub goaway_after: u32,
    /// Reset every Nth request the server receives (counted over all
    /// connections) with H3_REQUEST_REJECTED (0: never).
    pub reject_every: u32,
    /// Send nothing more, on any connection, after this many answers (0: never).
    pub silent_after: u32,
    /// At most this many request streams open at once per connection (0: aioquic's 128).
    pub max_streams: u32,
    /// Answer each client's first Initial with a Retry.
    pub retry: bool,
    /// Listen here (default 127.0.0.1).
    pub host: Option<String>,
    /// The idle timeout it offers, ms (0: aioquic's 60 s).
    pub idle_timeout_ms: u32,
    /// Forget a connection after this many answers on it, and answer what
    /// comes for it with stateless resets (0: never).
    pub reset_after: u32,
    /// Speak QUIC version 2 only.
    pub only_v2: bool,
    /// Offer only this ALPN protocol instead of `h3` (a QUIC server with
    /// no HTTP/3: it refuses an h3 client with no_application_protocol).
    pub alpn: Option<&'static str>,
}

/// The server's own count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// 200s sent, by path.
    pub answered: BTreeMap<String, u64>,
    /// Requests whose headers arrived (answered, rejected or not).
    pub received: u64,
    pub rejected: u64,
    /// Requests that arrived, or were due an answer, while silent.
    pub unanswered: u64,
    /// Handshakes completed.
    pub connections: u64,
    pub goaways: u64,
    /// The most requests open at once (arrived, not answered) on one connection.
    pub peak_streams: u64,
    /// Connections the client closed (CONNECTION_CLOSE), by error code
    /// (`0x100`: H3_NO_ERROR).
    pub closes: BTreeMap<String, u64>,
    /// Connections that ended by the idle timeout.
    pub idle_timeouts: u64,
    /// Stateless resets sent.
    pub resets: u64,
}

impl Counts {
    pub fn answered_total(&self) -> u64 {
        self.answered.values().sum()
    }
}

pub struct AioquicServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub port: u16,
}

/// The loud SKIP for a missing python3 or aioquic; None.
fn missing<T>(what: &str) -> Option<T> {
    crate::skip(&format!(
        "aioquic {what} (pip install aioquic; python3 from $LOADGEN_PYTHON or PATH)"
    ));
    None
}

impl AioquicServer {
    /// None (after a loud SKIP) when python3 or aioquic is missing.
    pub fn start(pki: &Pki, o: &H3Options) -> Option<AioquicServer> {
        Self::start_with(Command::new(python()), pki, o)
    }

    /// [`AioquicServer::start`] with `python` as the command that runs
    /// python3 (`ip netns exec NS python3`, say).
    pub fn start_with(python: Command, pki: &Pki, o: &H3Options) -> Option<AioquicServer> {
        let mut cmd = python;
        cmd.args(["-c", SERVER])
            .arg(&pki.server_cert)
            .arg(&pki.server_key);
        for (flag, n) in [
            ("--delay-ms", o.delay_ms),
            ("--goaway-after", o.goaway_after),
            ("--reject-every", o.reject_every),
            ("--silent-after", o.silent_after),
            ("--max-streams", o.max_streams),
            ("--reset-after", o.reset_after),
        ] {
            if n > 0 {
                cmd.args([flag, &n.to_string()]);
            }
        }
        if o.retry {
            cmd.arg("--retry");
        }
        if o.only_v2 {
            cmd.arg("--only-v2");
        }
        if o.idle_timeout_ms > 0 {
            cmd.args([
                "--idle-timeout",
                &(o.idle_timeout_ms as f64 / 1000.0).to_string(),
            ]);
        }
        if let Some(host) = &o.host {
            cmd.args(["--host", host]);
        }
        if let Some(alpn) = o.alpn {
            cmd.args(["--alpn", alpn]);
        }
        let spawned = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = spawned else {
            return missing("needs python3");
        };
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Ok(port) = line.trim().parse() else {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take()?, &mut err);
            let _ = child.kill();
            let _ = child.wait();
            return missing(&format!(
                "server did not start: {}",
                err.lines().last().unwrap_or("")
            ));
        };
        // aioquic logs warnings (a callback on a stream the client reset,
        // say): drain them, or a full pipe would stop the server.
        if let Some(mut err) = child.stderr.take() {
            std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        }
        Some(AioquicServer {
            child,
            stdin,
            stdout,
            port,
        })
    }

    /// The URL to load: the certificate's name, the server's port.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// What the server counted so far.
    pub fn counts(&mut self) -> Counts {
        writeln!(self.stdin, "counts").expect("aioquic server stdin");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("aioquic server stdout");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("aioquic server counts {line:?}: {e}"));
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let map = |k: &str| -> BTreeMap<String, u64> {
            v[k].as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, c)| (k.clone(), c.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Counts {
            answered: map("answered"),
            closes: map("closes"),
            idle_timeouts: n("idle_timeouts"),
            resets: n("resets"),
            received: n("received"),
            rejected: n("rejected"),
            unanswered: n("unanswered"),
            connections: n("connections"),
            goaways: n("goaways"),
            peak_streams: n("peak_streams"),
        }
    }
}

impl Drop for AioquicServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What aioquic's client is asked to do: `connections` connections one
/// after another to 127.0.0.1:`port` (SNI `localhost`), each with
/// `requests` GETs of `path`, `concurrency` at a time, each given up after
/// `timeout_s` seconds.
#[derive(Debug, Clone)]
pub struct ClientRun<'a> {
    pub port: u16,
    pub connections: u32,
    pub requests: u32,
    pub concurrency: u32,
    pub path: &'a str,
    pub timeout_s: f64,
}

impl Default for ClientRun<'_> {
    fn default() -> Self {
        ClientRun {
            port: 0,
            connections: 1,
            requests: 1,
            concurrency: 1,
            path: "/",
            timeout_s: 5.0,
        }
    }
}

/// What the client saw.
#[derive(Debug, Default)]
pub struct ClientSaw {
    /// Responses by status.
    pub status: BTreeMap<String, u64>,
    /// Responses by body.
    pub bodies: BTreeMap<String, u64>,
    /// Streams the server reset, by error code.
    pub resets: BTreeMap<u64, u64>,
    pub timed_out: u64,
    pub connect_failed: u64,
    /// Stream ids of the GOAWAY frames received, in order.
    pub goaway: Vec<u64>,
    /// Retry packets received.
    pub retried: u64,
    /// The server's initial_max_streams_bidi, per connection.
    pub peer_max_streams_bidi: Vec<u64>,
    /// Each completed request's time, milliseconds.
    pub durations_ms: Vec<f64>,
    pub elapsed_ms: f64,
}

impl ClientSaw {
    pub fn ok(&self) -> u64 {
        self.status.get("200").copied().unwrap_or(0)
    }
}

/// Runs aioquic's client, trusting `ca`. None (after a loud SKIP) when
/// python3 or aioquic is missing.
pub fn client(ca: &Path, r: &ClientRun<'_>) -> Option<ClientSaw> {
    let out = Command::new("timeout")
        .arg("120")
        .arg(python())
        .args(["-c", CLIENT, &r.port.to_string()])
        .arg(ca)
        .args(["--connections", &r.connections.to_string()])
        .args(["--requests", &r.requests.to_string()])
        .args(["--concurrency", &r.concurrency.to_string()])
        .args(["--path", r.path, "--timeout", &r.timeout_s.to_string()])
        .stdin(Stdio::null())
        .output();
    let Ok(out) = out else {
        return missing("client needs python3 and timeout");
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'aioquic'") {
            return missing("is not installed");
        }
        panic!("aioquic client printed no JSON: {text}\n{err}");
    };
    let map = |k: &str| -> BTreeMap<String, u64> {
        v[k].as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, c)| (k.clone(), c.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = |k: &str| -> Vec<u64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
            .unwrap_or_default()
    };
    Some(ClientSaw {
        status: map("status"),
        bodies: map("bodies"),
        resets: map("resets")
            .into_iter()
            .filter_map(|(k, c)| Some((k.parse().ok()?, c)))
            .collect(),
        timed_out: v["timed_out"].as_u64().unwrap_or(0),
        connect_failed: v["connect_failed"].as_u64().unwrap_or(0),
        goaway: list("goaway"),
        retried: v["retried"].as_u64().unwrap_or(0),
        peer_max_streams_bidi: list("peer_max_streams_bidi"),
        durations_ms: v["durations_ms"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default(),
        elapsed_ms: v["elapsed_ms"].as_f64().unwrap_or(0.0),
    })
}
