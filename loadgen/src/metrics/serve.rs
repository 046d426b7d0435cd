//! The `/metrics` endpoint of `--metrics-listen`: threads of its own, not
//! shards, answering each scrape from [`Live`] and closing the connection.
//! Each connection gets a thread and a deadline for the whole exchange, so
//! a client that sends its request a byte at a time delays nobody else's
//! scrape (it once held the only thread as long as it kept dripping). It
//! negotiates the format as client_golang does: OpenMetrics text for a
//! scraper that asks for it (Prometheus does), the Prometheus text format
//! 0.0.4 otherwise (curl, promtool).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::MetricsError;
use super::live::{Live, to_prometheus_text};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long one connection may take, from accept to the last byte of the
/// answer (Prometheus's default scrape timeout is 10 s; a scrape takes
/// milliseconds).
const DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once; beyond them a connection is closed at once
/// (each of them ends within [`DEADLINE`], so a slot frees soon).
const MAX_CLIENTS: usize = 16;

/// A bound endpoint; [`Endpoint::spawn`] starts serving.
pub struct Endpoint {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl Endpoint {
    /// Binds now, so a port in use is an error before the run.
    pub fn bind(addr: SocketAddr) -> Result<Endpoint, MetricsError> {
        let listener = TcpListener::bind(addr).map_err(|e| MetricsError::listen(addr, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| MetricsError::listen(addr, e))?;
        Ok(Endpoint { listener, addr })
    }

    /// Serves `live` until the process exits: a thread accepts, and each
    /// connection is answered on a thread of its own.
    pub fn spawn(self, live: Arc<Live>) -> io::Result<()> {
        std::thread::Builder::new()
            .name("loadgen-metrics".into())
            .spawn(move || {
                let active = Arc::new(AtomicUsize::new(0));
                for conn in self.listener.incoming() {
                    match conn {
                        Ok(s) => serve(s, &live, &active),
                        // Out of descriptors and the like: do not spin.
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
            .map(|_| ())
    }
}

/// Answers `s` on a thread of its own, unless [`MAX_CLIENTS`] are being
/// answered already (then `s` is closed).
fn serve(s: TcpStream, live: &Arc<Live>, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
        active.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let (live, slot) = (live.clone(), active.clone());
    let spawned = std::thread::Builder::new()
        .name("loadgen-scrape".into())
        .spawn(move || {
            // A broken scrape only affects that scrape.
            let _ = answer(s, &live, Instant::now() + DEADLINE);
            slot.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The time left until `deadline`, or TimedOut once it has passed.
fn left(deadline: Instant) -> io::Result<Duration> {
    Some(deadline.saturating_duration_since(Instant::now()))
        .filter(|d| !d.is_zero())
        .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
}

/// Reads one request head and answers it, all before `deadline`.
fn answer(mut s: TcpStream, live: &Live, deadline: Instant) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (path, accept) = loop {
        s.set_read_timeout(Some(left(deadline)?))?;
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let accept = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("accept"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
                    .unwrap_or_default();
                break (req.path.unwrap_or("/").to_string(), accept);
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
            _ => {
                return respond(
                    &mut s,
                    deadline,
                    "400 Bad Request",
                    "text/plain",
                    b"bad request\n",
                );
            }
        }
    };
    let path = path.split('?').next().unwrap_or("/");
    if path != "/metrics" {
        return respond(
            &mut s,
            deadline,
            "404 Not Found",
            "text/plain",
            b"loadgen serves its metrics at /metrics\n",
        );
    }
    let (ctype, body) = negotiate(&accept, live.render());
    respond(&mut s, deadline, "200 OK", ctype, body.as_bytes())
}

/// The content type and body for a scraper that sent `accept`, from
/// prometheus-client's OpenMetrics text.
pub fn negotiate(accept: &str, openmetrics: String) -> (&'static str, String) {
    if accept.contains("application/openmetrics-text") {
        (OPENMETRICS, openmetrics)
    } else {
        (PROMETHEUS_TEXT, to_prometheus_text(&openmetrics))
    }
}

fn respond(
    s: &mut TcpStream,
    deadline: Instant,
    status: &str,
    ctype: &str,
    body: &[u8],
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let answer = [head.as_bytes(), body].concat();
    let mut sent = 0;
    // A client that reads slowly gets the deadline too.
    while sent < answer.len() {
        s.set_write_timeout(Some(left(deadline)?))?;
        match s.write(&answer[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::live::Info;
    use crate::metrics::scrape;
    use crate::url::Url;

    #[test]
    fn serves_both_formats_and_refuses_a_taken_port() {
        let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = ep.addr;
        assert!(matches!(
            Endpoint::bind(addr),
            Err(MetricsError::Listen(..))
        ));
        ep.spawn(Arc::new(Live::new(Info::default()))).unwrap();
        let url = Url::parse(&format!("http://{addr}/metrics")).unwrap();
        let body = scrape::get(&url, Duration::from_secs(5)).unwrap();
        assert!(
            body.contains("# TYPE loadgen_requests_total counter"),
            "{body}"
        );
        assert!(!body.contains("# EOF"), "{body}");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        assert!(raw.contains("application/openmetrics-text"), "{raw}");
        assert!(raw.trim_end().ends_with("# EOF"), "{raw}");
        let url = Url::parse(&format!("http://{addr}/other")).unwrap();
        assert!(
            scrape::get(&url, Duration::from_secs(5))
                .unwrap_err()
                .to_string()
                .contains("404")
        );
    }

    #[test]
    fn a_client_dripping_its_request_delays_no_scrape_and_is_cut_off() {
        let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = ep.addr;
        ep.spawn(Arc::new(Live::new(Info::default()))).unwrap();
        // One byte of a request head every 300 ms: every read gets a byte
        // long before any per-read timeout.
        let mut drip = TcpStream::connect(addr).unwrap();
        let dripping = std::thread::spawn(move || {
            let started = Instant::now();
            for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
                if drip.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            // The server gave up on it: its end is closed.
            let mut rest = Vec::new();
            let _ = drip.read_to_end(&mut rest);
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(500));
        let url = Url::parse(&format!("http://{addr}/metrics")).unwrap();
        let asked = Instant::now();
        let body = scrape::get(&url, Duration::from_secs(5)).unwrap();
        assert!(body.contains("loadgen_requests_total"), "{body}");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "a scrape waited {:?} behind a dripping client",
            asked.elapsed()
        );
        let dripped = dripping.join().unwrap();
        assert!(
            dripped < DEADLINE + Duration::from_secs(2),
            "the dripping client was served for {dripped:?}"
        );
    }
}
