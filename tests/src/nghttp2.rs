//! nghttp2's clients (Debian's nghttp2-client): h2load, the load
//! generator, and nghttp, which prints every frame it sends and receives.
//! They are the independent HTTP/2 clients that prove the test servers
//! right before loadgen is measured against them.

use std::process::{Command, Stdio};

/// What one h2load run reported.
#[derive(Debug, Clone, Default)]
pub struct H2load {
    /// "requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout"
    pub total: u64,
    pub started: u64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// "status codes: A 2xx, B 3xx, C 4xx, D 5xx"
    pub status_2xx: u64,
    pub status_5xx: u64,
    /// "Application protocol: h2" (h2c for prior knowledge); empty when no
    /// connection got that far.
    pub protocol: String,
    /// Its whole stdout and stderr, for assertion messages.
    pub output: String,
    pub exit_code: i32,
}

/// Whether h2load and nghttp are installed; a loud skip (a failure under
/// `LOADGEN_REQUIRE_ALL=1`) when they are not.
pub fn have_nghttp2() -> bool {
    let ok = crate::have("h2load") && crate::have("nghttp");
    if !ok {
        crate::skip("h2load/nghttp are not installed (apt-get install nghttp2-client)");
    }
    ok
}

/// Runs `cmd args…` bounded to 60 s: its exit code, and stdout and stderr
/// together.
fn bounded(cmd: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("timeout")
        .arg("60")
        .arg(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Runs `h2load args…`, bounded to 60 s, and parses its summary.
pub fn h2load(args: &[&str]) -> H2load {
    let (exit_code, output) = bounded("h2load", args);
    let mut r = H2load {
        exit_code,
        ..H2load::default()
    };
    for line in output.lines() {
        if let Some(p) = line.strip_prefix("Application protocol: ") {
            r.protocol = p.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for field in rest.split(", ") {
                let Some((n, what)) = field.trim().split_once(' ') else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "total" => r.total = n,
                    "started" => r.started = n,
                    "done" => r.done = n,
                    "succeeded" => r.succeeded = n,
                    "failed" => r.failed = n,
                    "errored" => r.errored = n,
                    "timeout" => r.timeout = n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            for field in rest.split(", ") {
                match field.trim().split_once(' ') {
                    Some((n, "2xx")) => r.status_2xx = n.parse().unwrap_or(0),
                    Some((n, "5xx")) => r.status_5xx = n.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
    }
    r.output = output;
    r
}

/// What `nghttp -v` printed: every frame, with the header fields it
/// decoded.
#[derive(Debug, Clone)]
pub struct Nghttp {
    pub output: String,
    pub exit_code: i32,
}

/// Runs `nghttp -v args…` (bounded to 60 s).
pub fn nghttp(args: &[&str]) -> Nghttp {
    let (exit_code, output) = bounded("nghttp", &[&["-v"], args].concat());
    Nghttp { output, exit_code }
}

impl Nghttp {
    /// The settings of the server's first SETTINGS frame (not its ACK),
    /// by name: `("SETTINGS_MAX_CONCURRENT_STREAMS", 7)`.
    pub fn server_settings(&self) -> Vec<(String, u32)> {
        let mut lines = self.output.lines();
        let mut out = Vec::new();
        while let Some(l) = lines.next() {
            if l.contains("] recv SETTINGS frame") && l.contains("flags=0x00") {
                // "          [SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7]"
                for l in lines.by_ref().take_while(|l| !l.starts_with('[')) {
                    let Some(inner) = l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']'))
                    else {
                        continue;
                    };
                    if let Some((name, value)) = inner.split_once(':') {
                        let name = name.split('(').next().unwrap_or(name);
                        if let Ok(v) = value.parse() {
                            out.push((name.to_string(), v));
                        }
                    }
                }
                break;
            }
        }
        out
    }

    /// One server setting by name, if it was sent.
    pub fn server_setting(&self, name: &str) -> Option<u32> {
        self.server_settings()
            .into_iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// The header fields nghttp received on `stream`, in order (response
    /// headers, then trailers).
    pub fn received_headers(&self, stream: u32) -> Vec<(String, String)> {
        let tag = format!("] recv (stream_id={stream}) ");
        self.output
            .lines()
            .filter_map(|l| l.split_once(&tag).map(|(_, f)| f))
            .filter_map(|f| {
                // ":status: 200": a pseudo-header's name starts with ':'.
                let split = if let Some(rest) = f.strip_prefix(':') {
                    rest.split_once(": ").map(|(n, v)| (format!(":{n}"), v))
                } else {
                    f.split_once(": ").map(|(n, v)| (n.to_string(), v))
                };
                split.map(|(n, v)| (n, v.to_string()))
            })
            .collect()
    }

    /// The id of the first stream nghttp received header fields on
    /// (nghttp numbers its first request 13, after its priority groups).
    pub fn first_stream(&self) -> Option<u32> {
        self.output.lines().find_map(|l| {
            let rest = l.split_once("] recv (stream_id=")?.1;
            rest.split_once(')')?.0.parse().ok()
        })
    }

    /// How many frames of `kind` (`DATA`, `HEADERS`, `PING`, …) it
    /// received.
    pub fn frames_received(&self, kind: &str) -> usize {
        let tag = format!("] recv {kind} frame ");
        self.output.lines().filter(|l| l.contains(&tag)).count()
    }
}
