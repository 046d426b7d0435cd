//! The `/metrics` endpoint of `--metrics-listen`: one thread, not a shard,
//! answering each scrape from [`Live`] and closing the connection. It
//! negotiates the format as client_golang does: OpenMetrics text for a
//! scraper that asks for it (Prometheus does), the Prometheus text format
//! 0.0.4 otherwise (curl, promtool).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::MetricsError;
use super::live::{Live, to_prometheus_text};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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

    /// Serves `live` on a thread of its own until the process exits.
    pub fn spawn(self, live: Arc<Live>) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("loadgen-metrics".into())
            .spawn(move || {
                for conn in self.listener.incoming() {
                    match conn {
                        // A broken scrape only affects that scrape.
                        Ok(s) => {
                            let _ = answer(s, &live);
                        }
                        // Out of descriptors and the like: do not spin.
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
            .map(|_| ())
    }
}

/// Reads one request head and answers it.
fn answer(mut s: TcpStream, live: &Live) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (path, accept) = loop {
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
            _ => return respond(&mut s, "400 Bad Request", "text/plain", b"bad request\n"),
        }
    };
    let path = path.split('?').next().unwrap_or("/");
    if path != "/metrics" {
        return respond(
            &mut s,
            "404 Not Found",
            "text/plain",
            b"loadgen serves its metrics at /metrics\n",
        );
    }
    let (ctype, body) = negotiate(&accept, live.render());
    respond(&mut s, "200 OK", ctype, body.as_bytes())
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

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
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
}
