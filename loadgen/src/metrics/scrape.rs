//! One blocking `GET` of a metrics endpoint (`--server-metrics`), off the
//! shards: a fresh connection, `Connection: close`, a deadline on the whole
//! exchange, and a cap on the body. Prometheus endpoints answer with
//! `Content-Length` or chunked bodies; both are handled.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::MetricsError;
use crate::url::Url;

/// Larger expositions than this are refused (a server exposing tens of MB
/// of metrics per scrape is misconfigured, and we would stall the edge).
const MAX_BODY: usize = 32 << 20;

/// Fetches `url` and returns the body as text.
pub fn get(url: &Url, timeout: Duration) -> Result<String, MetricsError> {
    let fail = |why: String| MetricsError::Scrape(url.raw.clone(), why);
    let addr = url.resolve().map_err(|e| fail(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(e.to_string()))?;
    let _ = s.set_nodelay(true);
    s.set_write_timeout(Some(timeout))
        .map_err(|e| fail(e.to_string()))?;
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: loadgen\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nConnection: close\r\n\r\n",
        url.target,
        url.host_header()
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(format!("no complete answer within {timeout:?}")));
        }
        s.set_read_timeout(Some(left))
            .map_err(|e| fail(e.to_string()))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(fail(format!("no complete answer within {timeout:?}")));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
        if raw.len() > MAX_BODY {
            return Err(fail(format!(
                "the answer is larger than {} MiB",
                MAX_BODY >> 20
            )));
        }
        if complete(&raw) {
            break;
        }
    }
    body(&raw).map_err(fail)
}

/// Whether `raw` already holds a whole response framed by length.
fn complete(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = resp.parse(raw) else {
        return false;
    };
    resp.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .is_some_and(|n| raw.len() >= head + n)
}

/// The body of a complete response, de-chunked, as text; an error for a
/// status other than 200.
pub fn body(raw: &[u8]) -> Result<String, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if raw.is_empty() => {
            return Err("the server closed the connection without answering".into());
        }
        Ok(httparse::Status::Partial) => return Err("the answer ended inside its head".into()),
        Err(e) => return Err(format!("not an HTTP response ({e})")),
    };
    let status = resp.code.unwrap_or(0);
    if status != 200 {
        return Err(format!("HTTP {status} {}", resp.reason.unwrap_or("")));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if header("content-encoding").is_some_and(|e| e != "identity") {
        return Err("the answer is compressed although we did not ask for it".into());
    }
    let rest = &raw[head..];
    let bytes = if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..n)
            .ok_or("the body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    String::from_utf8(bytes).map_err(|_| "the body is not UTF-8 text".into())
}

fn dechunk(mut s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = s
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line is cut off")?;
        let size_text = std::str::from_utf8(&s[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        s = &s[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = s.get(..size).ok_or("a chunk is cut off")?;
        out.extend_from_slice(chunk);
        s = s.get(size + 2..).ok_or("a chunk is cut off")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_by_length_chunks_and_close() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert!(complete(r));
        assert_eq!(body(r).unwrap(), "hello");
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(body(r).unwrap(), "abcde");
        let r = b"HTTP/1.0 200 OK\r\n\r\nuntil close";
        assert_eq!(body(r).unwrap(), "until close");
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"
        ));
    }

    #[test]
    fn failures_say_why() {
        assert!(
            body(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .unwrap_err()
                .contains("404")
        );
        assert!(body(b"").unwrap_err().contains("without answering"));
        assert!(
            body(b"SSH-2.0-OpenSSH\r\n")
                .unwrap_err()
                .contains("not an HTTP response")
        );
        assert!(
            body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                .unwrap_err()
                .contains("chunk")
        );
        assert!(
            body(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n")
                .unwrap_err()
                .contains("compressed")
        );
    }

    #[test]
    fn an_unreachable_endpoint_is_an_error_not_a_hang() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
        let e = get(&url, Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("/metrics"), "{e}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/metrics", l.local_addr().unwrap())).unwrap();
        let started = Instant::now();
        let e = get(&url, Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(l);
    }
}
