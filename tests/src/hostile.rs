//! A deliberately broken HTTP/1.1 server: one misbehaviour per path, so
//! tests can check that loadgen counts each one right, stays bounded, and
//! ends on time. Blocking I/O, a thread per connection: simple to reason
//! about, and speed does not matter here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Hostile {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Requests the server has read (all paths).
    pub requests: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl Hostile {
    pub fn start() -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), requests.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, r) = (s.clone(), r.clone());
                        std::thread::spawn(move || serve(stream, &s, &r));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Hostile {
            port,
            stop,
            requests,
            accept: Some(accept),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Reads one request head; returns (method, path), or None at EOF.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut parts = head.split_whitespace();
            let method = parts.next()?.to_string();
            let path = parts.next()?.to_string();
            return Some((method, path));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn reset(stream: TcpStream) {
    // SO_LINGER {on, 0}: close sends RST instead of FIN.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and a pointer to a live linger struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

const OK5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

fn serve(mut stream: TcpStream, stop: &AtomicBool, requests: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut served_here = 0u64;
    while let Some((method, path)) = read_request(&mut stream, &mut buf) {
        requests.fetch_add(1, Ordering::Relaxed);
        served_here += 1;
        let w = &mut stream;
        let ok = match path.as_str() {
            "/ok" => w.write_all(OK5).is_ok(),
            "/chunked" => w
                .write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5;a=b;c=\"d\"\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\nY-T: 2\r\n\r\n",
                )
                .is_ok(),
            "/one-byte" => OK5.iter().all(|b| w.write_all(&[*b]).is_ok()),
            "/close-each" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
                false
            }
            "/eof-body" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\n\r\nbody until close");
                false
            }
            "/continue" => w
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .is_ok(),
            "/204" => w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n").is_ok(),
            "/304" => w.write_all(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n").is_ok(),
            "/head" if method == "HEAD" => w
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                .is_ok(),
            "/500" => w
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nerr")
                .is_ok(),
            "/garbage" => {
                let _ = w.write_all(b"HTTP/9.9 OK maybe\r\n\r\n");
                false
            }
            "/huge-head" => {
                let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
                while head.len() < 100 * 1024 {
                    // Few, long headers: the byte limit, not the header
                    // count, is what this path tests.
                    head.extend_from_slice(b"X-Big: ");
                    head.extend_from_slice(&[b'a'; 10_000]);
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                w.write_all(&head).is_ok()
            }
            "/negative-length" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello");
                false
            }
            "/dup-length" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
                false
            }
            "/short-body" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
                false
            }
            "/reset" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
                std::thread::sleep(Duration::from_millis(5));
                reset(stream);
                return;
            }
            "/silent" => {
                // Accept, read, never answer; hold the connection until the
                // client gives up.
                let mut sink = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) && matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            "/drip" => {
                for b in OK5 {
                    std::thread::sleep(Duration::from_millis(200));
                    if stop.load(Ordering::Relaxed) || w.write_all(&[*b]).is_err() {
                        return;
                    }
                }
                true
            }
            "/drip-body" => {
                // The head at once, then the body a byte every 50 ms.
                if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").is_err() {
                    return;
                }
                for b in b"hello" {
                    std::thread::sleep(Duration::from_millis(50));
                    if stop.load(Ordering::Relaxed) || w.write_all(&[*b]).is_err() {
                        return;
                    }
                }
                true
            }
            "/big" => {
                let body = vec![b'x'; 8 << 20];
                w.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
                    .and_then(|()| w.write_all(&body))
                    .is_ok()
            }
            "/bad-chunk" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\nhello\r\n0\r\n\r\n");
                false
            }
            "/close-after-3" => {
                let _ = w.write_all(OK5);
                // Close (no Connection: close) once 3 were answered here,
                // whatever else the client pipelined.
                served_here < 3
            }
            _ => w
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .is_ok(),
        };
        if !ok {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// How a [`HostileTls`] server answers a ClientHello.
#[derive(Debug, Clone, Copy)]
pub enum TlsMischief {
    /// Reads the hello and closes.
    CloseMidHandshake,
    /// Answers with bytes that are not a TLS record.
    Garbage,
    /// Reads the hello and never answers.
    Stall,
}

/// A TCP server that breaks the TLS handshake one way.
pub struct HostileTls {
    pub port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HostileTls {
    pub fn start(mischief: TlsMischief) -> HostileTls {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                            let mut hello = [0u8; 4096];
                            let _ = stream.read(&mut hello);
                            match mischief {
                                TlsMischief::CloseMidHandshake => {}
                                TlsMischief::Garbage => {
                                    let _ = stream.write_all(&[0x42; 64]);
                                    std::thread::sleep(Duration::from_millis(200));
                                }
                                TlsMischief::Stall => {
                                    while !s.load(Ordering::Relaxed) {
                                        std::thread::sleep(Duration::from_millis(20));
                                    }
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        HostileTls {
            port,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

impl Drop for HostileTls {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}
