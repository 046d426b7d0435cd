//! A server that writes down every request it reads (which connection,
//! request line, headers, body) and answers each with a small 200 (or the
//! status named by a `/status/NNN` path). Pipelining and bodies with
//! Content-Length are handled; a thread per connection keeps it simple.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Seen {
    /// Accept order of the connection the request came on.
    pub conn: u64,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the server read it, Unix ms.
    pub at_ms: u64,
    /// The client's address (source address and port).
    pub peer: std::net::SocketAddr,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Recorder {
    pub port: u16,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Seen>>>,
    accept: Option<JoinHandle<()>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        Self::start_on("127.0.0.1:0")
    }

    /// The same, listening on `addr` (e.g. `0.0.0.0:0` for every local
    /// address).
    pub fn start_on(addr: &str) -> Recorder {
        let listener = TcpListener::bind(addr).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), log.clone());
        let accept = std::thread::spawn(move || {
            let next = AtomicU64::new(0);
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, l) = (s.clone(), l.clone());
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        std::thread::spawn(move || serve(stream, id, &s, &l));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Recorder {
            port,
            stop,
            log,
            accept: Some(accept),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything recorded so far, in the order it was read per connection,
    /// and empties the log.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Takes one complete request off the front of `buf`, if there is one.
fn parse(buf: &mut Vec<u8>, conn: u64, peer: std::net::SocketAddr) -> Option<Seen> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < end + 4 + len {
        return None;
    }
    let body = buf[end + 4..end + 4 + len].to_vec();
    buf.drain(..end + 4 + len);
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Some(Seen {
        conn,
        method,
        target,
        headers,
        body,
        at_ms,
        peer,
    })
}

fn serve(mut stream: TcpStream, conn: u64, stop: &AtomicBool, log: &Mutex<Vec<Seen>>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        out.clear();
        let mut seen = Vec::new();
        while let Some(req) = parse(&mut buf, conn, peer) {
            let status = req
                .target
                .strip_prefix("/status/")
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(200);
            out.extend_from_slice(
                format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok").as_bytes(),
            );
            seen.push(req);
        }
        // Logged before answering: once loadgen has its responses, the log
        // holds the requests.
        log.lock().expect("log").extend(seen);
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
    }
}
