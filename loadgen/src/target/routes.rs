//! What the built-in target answers. Pure functions of the request, so
//! they are easy to test and the event loop stays about I/O.

use std::io::Write;

/// Bodies larger than this are streamed from a static buffer instead of
/// being built in the connection's write buffer.
pub const STREAM_THRESHOLD: u64 = 64 * 1024;
pub const MAX_BODY: u64 = 1 << 30;
pub const HELLO: &[u8] = b"Hello from loadgen\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Respond now: status, body of `len` bytes of `x` (or `HELLO`).
    Fixed {
        status: u16,
        body: Body,
    },
    /// Respond after `ms` milliseconds.
    Delay {
        ms: u64,
    },
    /// Burn CPU for `iters` rounds, then respond.
    Cpu {
        iters: u64,
    },
    /// A chunked body of `len` bytes.
    Chunked {
        len: u64,
    },
    /// A body delimited by closing the connection.
    Eof {
        len: u64,
    },
    Stats,
    /// The server's own Prometheus metrics.
    Metrics,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Hello,
    Bytes(u64),
    Text(&'static str),
}

fn num(s: &str) -> Option<u64> {
    s.split(['?', '/']).next()?.parse().ok()
}

pub fn route(path: &str) -> Route {
    let path = path.split('?').next().unwrap_or(path);
    let bad = Route::Fixed {
        status: 400,
        body: Body::Text("bad number in path\n"),
    };
    let bounded = |v: Option<u64>, max: u64| v.filter(|&n| n <= max);
    if path == "/" {
        Route::Fixed {
            status: 200,
            body: Body::Hello,
        }
    } else if let Some(rest) = path.strip_prefix("/bytes/") {
        bounded(num(rest), MAX_BODY).map_or(bad, |n| Route::Fixed {
            status: 200,
            body: Body::Bytes(n),
        })
    } else if let Some(rest) = path.strip_prefix("/delay/") {
        bounded(num(rest), 3_600_000).map_or(bad, |ms| Route::Delay { ms })
    } else if let Some(rest) = path.strip_prefix("/cpu/") {
        bounded(num(rest), 1 << 40).map_or(bad, |iters| Route::Cpu { iters })
    } else if let Some(rest) = path.strip_prefix("/chunked/") {
        bounded(num(rest), MAX_BODY).map_or(bad, |len| Route::Chunked { len })
    } else if let Some(rest) = path.strip_prefix("/eof/") {
        bounded(num(rest), MAX_BODY).map_or(bad, |len| Route::Eof { len })
    } else if let Some(rest) = path.strip_prefix("/status/") {
        bounded(num(rest), 999)
            .filter(|&c| c >= 200)
            .map_or(bad, |c| Route::Fixed {
                status: c as u16,
                body: Body::Bytes(0),
            })
    } else if path == "/__stats" {
        Route::Stats
    } else if path == "/metrics" {
        Route::Metrics
    } else {
        Route::Fixed {
            status: 404,
            body: Body::Text("not found\n"),
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes a status line and headers. `len: None` means chunked;
/// `close` adds `Connection: close`.
pub fn write_head(out: &mut Vec<u8>, status: u16, len: Option<u64>, close: bool) {
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    out.extend_from_slice(b"Server: loadgen-target\r\n");
    match len {
        Some(n) if status != 204 && status != 304 => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Some(_) => {}
        None => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a chunked body of `len` bytes in chunks of at most 4 KiB, the
/// first with an extension, then a trailer: clients must handle both.
pub fn write_chunked(out: &mut Vec<u8>, len: u64) {
    let mut left = len;
    let mut first = true;
    while left > 0 {
        let n = left.min(4096);
        if first {
            let _ = write!(out, "{n:x};src=loadgen\r\n");
            first = false;
        } else {
            let _ = write!(out, "{n:x}\r\n");
        }
        out.extend(std::iter::repeat_n(b'x', n as usize));
        out.extend_from_slice(b"\r\n");
        left -= n;
    }
    out.extend_from_slice(b"0\r\nX-Body-Bytes: ");
    let _ = write!(out, "{len}");
    out.extend_from_slice(b"\r\n\r\n");
}

/// Burns CPU in named, non-inlined functions so a profiler has a clear
/// hot spot to find: `cpu_burn` → `cpu_burn_round`.
#[inline(never)]
pub fn cpu_burn(iters: u64) -> u64 {
    let mut x = 0x243f_6a88_85a3_08d3u64;
    for i in 0..iters {
        x = cpu_burn_round(x, i);
    }
    x
}

#[inline(never)]
fn cpu_burn_round(x: u64, i: u64) -> u64 {
    let mut v = std::hint::black_box(x ^ i);
    for _ in 0..16 {
        v = v.rotate_left(13).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (v >> 7);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/"),
            Route::Fixed {
                status: 200,
                body: Body::Hello
            }
        );
        assert_eq!(
            route("/bytes/10?x=1"),
            Route::Fixed {
                status: 200,
                body: Body::Bytes(10)
            }
        );
        assert_eq!(route("/delay/5"), Route::Delay { ms: 5 });
        assert_eq!(route("/cpu/100"), Route::Cpu { iters: 100 });
        assert_eq!(route("/chunked/7"), Route::Chunked { len: 7 });
        assert_eq!(route("/eof/3"), Route::Eof { len: 3 });
        assert_eq!(route("/__stats"), Route::Stats);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert!(matches!(
            route("/bytes/abc"),
            Route::Fixed { status: 400, .. }
        ));
        assert!(matches!(
            route("/status/503"),
            Route::Fixed { status: 503, .. }
        ));
        assert!(matches!(route("/nope"), Route::Fixed { status: 404, .. }));
    }

    #[test]
    fn chunked_body_parses_back() {
        let mut out = Vec::new();
        write_head(&mut out, 200, None, false);
        write_chunked(&mut out, 10_000);
        let mut p = crate::http::ResponseParser::new(4096);
        let mut off = 0;
        let mut got = None;
        while off < out.len() {
            let (n, r) = p.parse(&out[off..], false).unwrap();
            off += n;
            got = got.or(r);
        }
        assert_eq!(got.unwrap().body_len, 10_000);
    }
}
