//! The target's event loop (mio, edge-triggered).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::metrics::{self, ThreadMetrics};
use super::routes::{self, Body, Route, STREAM_THRESHOLD};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Request heads larger than this get 431 and a close.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Request bodies are buffered whole; larger ones get 413.
const MAX_REQUEST_BODY: usize = 64 << 20;

/// A request's `Content-Length`: the body length, or the status to refuse
/// it with (400 unreadable, 413 too large). It was once parsed into
/// `usize` and added to the head length unchecked: `18446744073709551615`
/// panicked in debug builds and misframed in release.
fn content_length(value: &[u8]) -> Result<usize, u16> {
    let n: u64 = std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or(400u16)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_REQUEST_BODY)
        .ok_or(413)
}
/// Stop parsing pipelined requests while this much output is unsent, so a
/// client that never reads cannot grow our memory.
const MAX_PENDING_OUTPUT: usize = 1 << 20;
static XS: [u8; 64 * 1024] = [b'x'; 64 * 1024];

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    /// Stop answering for `.1` at the start of every `.0` (from server
    /// start): the whole server stalls, as in a GC pause, so tests can
    /// check coordinated-omission correction against theory.
    pub stall: Option<(Duration, Duration)>,
}

/// When the server is stalled: for the first `stall_for` of every
/// `every`, counted from `start`.
#[derive(Debug, Clone, Copy)]
struct Stall {
    start: Instant,
    every: Duration,
    stall_for: Duration,
}

impl Stall {
    /// The end of the stall in progress at `now`, if any.
    fn until(&self, now: Instant) -> Option<Instant> {
        let every = self.every.as_nanos().max(1);
        let since = now.saturating_duration_since(self.start).as_nanos();
        let phase = since % every;
        (phase < self.stall_for.as_nanos())
            .then(|| now + Duration::from_nanos((self.stall_for.as_nanos() - phase) as u64))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot listen on {0}: {1} (is the port in use? try another --listen address)")]
    Listen(SocketAddr, io::Error),
    #[error("target thread setup failed: {0}")]
    Setup(io::Error),
}

/// Counters one loop thread publishes; padded so threads do not share a
/// cache line.
#[repr(align(128))]
#[derive(Default)]
struct Counters {
    responses: AtomicU64,
    requests: AtomicU64,
    /// What `/metrics` exposes.
    metrics: ThreadMetrics,
}

/// A running target. Dropping it stops the threads.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    counters: Arc<Vec<Counters>>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    pub fn start(cfg: &TargetConfig) -> Result<Server, TargetError> {
        let threads = cfg.threads.max(1);
        let counters: Arc<Vec<Counters>> =
            Arc::new((0..threads).map(|_| Counters::default()).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let stall = cfg.stall.map(|(every, stall_for)| Stall {
            start: started,
            every,
            stall_for,
        });
        // The first listener fixes the port (the user may have asked for 0).
        let first =
            reuseport_listener(cfg.listen).map_err(|e| TargetError::Listen(cfg.listen, e))?;
        let addr = first.local_addr().map_err(TargetError::Setup)?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(reuseport_listener(addr).map_err(|e| TargetError::Listen(addr, e))?);
        }
        let mut wakers = Vec::new();
        let mut handles = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let poll = Poll::new().map_err(TargetError::Setup)?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(TargetError::Setup)?);
            wakers.push(waker);
            let lp = Loop {
                poll,
                listener,
                conns: Vec::new(),
                free: Vec::new(),
                timers: BinaryHeap::new(),
                stop: stop.clone(),
                counters: counters.clone(),
                index: i,
                stall,
                started,
                chunk: vec![0; 16 * 1024].into_boxed_slice(),
            };
            let h = std::thread::Builder::new()
                .name(format!("target-{i}"))
                .spawn(move || lp.run())
                .map_err(TargetError::Setup)?;
            handles.push(h);
        }
        Ok(Server {
            addr,
            stop,
            wakers,
            counters,
            threads: handles,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Responses sent so far (not counting `/__stats`).
    pub fn responses(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.responses.load(Ordering::Relaxed))
            .sum()
    }

    /// Blocks until the threads end (they only end on `stop`).
    pub fn wait(mut self) {
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// A listener on `addr` that the other threads' listeners share
/// (SO_REUSEPORT: the kernel spreads connections over them).
fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let addr = crate::sys::sock::SockAddr::from(addr);
    let s = crate::sys::sock::stream_socket(&addr)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr)?;
    s.listen(4096)?;
    Ok(TcpListener::from_std(s.into()))
}

struct Conn {
    stream: TcpStream,
    generation: u64,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Bytes of `x` still to stream after `wbuf`.
    stream_left: u64,
    /// A delayed response is pending; later requests wait behind it.
    blocked: bool,
    close_after_write: bool,
    /// The peer closed its side; finish writing, then close.
    peer_closed: bool,
    /// The response a pending delay will release.
    delayed: Option<Vec<u8>>,
    /// When the delayed request was parsed (for its latency).
    delayed_since: Instant,
}

struct Loop {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// (due, slot, generation) of delayed responses.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Vec<Counters>>,
    index: usize,
    stall: Option<Stall>,
    started: Instant,
    /// Where reads land before they join a connection's buffer. On the
    /// heap, not the stack: a 16 KiB stack array in `drive` put its caller
    /// out of reach of a DWARF profile's 16 KiB stack copy (ours or perf's).
    chunk: Box<[u8]>,
}

impl Loop {
    fn stalled_until(&self) -> Option<Instant> {
        self.stall.and_then(|s| s.until(Instant::now()))
    }

    fn run(mut self) {
        if self
            .poll
            .registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)
            .is_err()
        {
            return;
        }
        let mut events = Events::with_capacity(1024);
        let mut generation = 0u64;
        let mut was_stalled = false;
        while !self.stop.load(Ordering::Relaxed) {
            let stalled = self.stalled_until();
            if was_stalled && stalled.is_none() {
                // The stall is over: answer everything that queued up.
                for slot in 0..self.conns.len() {
                    if self.conns[slot].is_some() {
                        self.drive(slot);
                    }
                }
                self.fire_timers();
            }
            was_stalled = stalled.is_some();
            let next = match stalled {
                Some(end) => Some(end),
                None => self.timers.peek().map(|Reverse((due, _, _))| *due),
            };
            let timeout = next.map(|due| due.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept(&mut generation),
                    Token(slot) => self.drive(slot),
                }
            }
            self.fire_timers();
        }
    }

    fn accept(&mut self, generation: &mut u64) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let slot = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(slot),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        self.free.push(slot);
                        continue;
                    }
                    *generation += 1;
                    self.conns[slot] = Some(Conn {
                        stream,
                        generation: *generation,
                        rbuf: Vec::with_capacity(4096),
                        wbuf: Vec::with_capacity(4096),
                        wpos: 0,
                        stream_left: 0,
                        blocked: false,
                        close_after_write: false,
                        peer_closed: false,
                        delayed: None,
                        delayed_since: Instant::now(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Out of descriptors and the like: try again on the next event.
                Err(_) => return,
            }
        }
    }

    /// Reads what is there, answers complete requests, writes what it can.
    fn drive(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let mut alive = read_all(conn, &mut self.chunk);
        if alive && self.stalled_until().is_some() {
            // Stalled: keep what arrived, answer when the stall ends.
            return;
        }
        if alive {
            alive = self.process(slot);
        }
        if alive {
            alive = self.flush(slot);
        }
        if !alive {
            self.close(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut conn) = self.conns[slot].take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.free.push(slot);
        }
    }

    /// Answers complete requests in order. Returns false to close.
    fn process(&mut self, slot: usize) -> bool {
        let index = self.index;
        let Some(conn) = self.conns[slot].as_mut() else {
            return false;
        };
        let mut used = 0;
        // A request's latency runs from this parse to its response being
        // queued (one clock read per pass, one per response).
        let parsed_at = Instant::now();
        while !conn.blocked
            && !conn.close_after_write
            && conn.stream_left == 0
            && conn.wbuf.len() - conn.wpos < MAX_PENDING_OUTPUT
        {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let input = &conn.rbuf[used..];
            let head_len = match req.parse(input) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    if input.len() > MAX_REQUEST_HEAD {
                        routes::write_head(&mut conn.wbuf, 431, Some(0), true);
                        conn.close_after_write = true;
                    }
                    break;
                }
                Err(_) => {
                    routes::write_head(&mut conn.wbuf, 400, Some(0), true);
                    conn.close_after_write = true;
                    break;
                }
            };
            let mut body_len = 0usize;
            let mut close = req.version == Some(0);
            let mut unsupported = None;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    match content_length(h.value) {
                        Ok(n) => body_len = n,
                        Err(status) => unsupported = Some(status),
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    unsupported = Some(400);
                } else if h.name.eq_ignore_ascii_case("connection") {
                    let v = h.value.to_ascii_lowercase();
                    if v.windows(5).any(|w| w == b"close") {
                        close = true;
                    } else if v.windows(10).any(|w| w == b"keep-alive") {
                        close = false;
                    }
                }
            }
            if let Some(status) = unsupported {
                routes::write_head(&mut conn.wbuf, status, Some(0), true);
                conn.close_after_write = true;
                break;
            }
            if input.len() < head_len + body_len {
                break;
            }
            let head_only = req.method == Some("HEAD");
            let accept = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("accept"))
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            let route = routes::route(req.path.unwrap_or("/"));
            used += head_len + body_len;
            conn.close_after_write = close;
            let counters = &self.counters[index];
            counters.requests.fetch_add(1, Ordering::Relaxed);
            match route {
                Route::Delay { ms } => {
                    conn.blocked = true;
                    conn.delayed_since = parsed_at;
                    self.timers.push(Reverse((
                        Instant::now() + Duration::from_millis(ms),
                        slot,
                        conn.generation,
                    )));
                    // The response is queued when the timer fires.
                    respond_later(conn, head_only);
                }
                Route::Stats => {
                    let total: u64 = self
                        .counters
                        .iter()
                        .map(|c| c.responses.load(Ordering::Relaxed))
                        .sum();
                    let reqs: u64 = self
                        .counters
                        .iter()
                        .map(|c| c.requests.load(Ordering::Relaxed))
                        .sum();
                    let body = format!(
                        "{{\"responses\":{total},\"requests\":{},\"uptime_us\":{}}}\n",
                        reqs - 1,
                        self.started.elapsed().as_micros()
                    );
                    // /__stats is not itself counted.
                    counters.requests.fetch_sub(1, Ordering::Relaxed);
                    routes::write_head(&mut conn.wbuf, 200, Some(body.len() as u64), close);
                    if !head_only {
                        conn.wbuf.extend_from_slice(body.as_bytes());
                    }
                }
                Route::Metrics => {
                    // Not itself counted, as /__stats.
                    counters.requests.fetch_sub(1, Ordering::Relaxed);
                    let (ctype, body) = crate::metrics::serve::negotiate(
                        accept.as_deref().unwrap_or(""),
                        metrics::render(self.counters.iter().map(|c| &c.metrics)),
                    );
                    let _ = write!(
                        conn.wbuf,
                        "HTTP/1.1 200 OK\r\nServer: loadgen-target\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{}\r\n",
                        body.len(),
                        if close { "Connection: close\r\n" } else { "" }
                    );
                    if !head_only {
                        conn.wbuf.extend_from_slice(body.as_bytes());
                    }
                }
                route => {
                    let status = respond(conn, &route, head_only);
                    counters.responses.fetch_add(1, Ordering::Relaxed);
                    counters.metrics.record(status, parsed_at.elapsed());
                }
            }
        }
        conn.rbuf.drain(..used);
        !(conn.peer_closed
            && conn.rbuf.is_empty()
            && !conn.blocked
            && conn.wpos == conn.wbuf.len()
            && conn.stream_left == 0)
    }

    /// Writes pending output. Returns false when the connection should go.
    fn flush(&mut self, slot: usize) -> bool {
        let Some(conn) = self.conns[slot].as_mut() else {
            return false;
        };
        loop {
            let pending = &conn.wbuf[conn.wpos..];
            let result = if !pending.is_empty() {
                conn.stream.write(pending)
            } else if conn.stream_left > 0 {
                let n = conn.stream_left.min(XS.len() as u64) as usize;
                conn.stream.write(&XS[..n])
            } else {
                break;
            };
            match result {
                Ok(0) => return false,
                Ok(n) => {
                    if conn.wpos < conn.wbuf.len() {
                        conn.wpos += n;
                        if conn.wpos == conn.wbuf.len() {
                            conn.wbuf.clear();
                            conn.wpos = 0;
                        }
                    } else {
                        conn.stream_left -= n as u64;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if conn.close_after_write && !conn.blocked {
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            return false;
        }
        // Output drained: more pipelined requests may be waiting.
        if !conn.rbuf.is_empty() && !conn.blocked {
            let alive = self.process(slot);
            let again = self.conns[slot]
                .as_ref()
                .is_some_and(|c| c.wbuf.len() > c.wpos || c.stream_left > 0);
            return if alive && again {
                self.flush(slot)
            } else {
                alive
            };
        }
        !conn.peer_closed
    }

    fn fire_timers(&mut self) {
        if self.stalled_until().is_some() {
            return;
        }
        let now = Instant::now();
        while let Some(Reverse((due, slot, generation))) = self.timers.peek().copied() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            conn.blocked = false;
            if let Some(out) = conn.delayed.take() {
                conn.wbuf.extend_from_slice(&out);
            }
            let c = &self.counters[self.index];
            c.responses.fetch_add(1, Ordering::Relaxed);
            c.metrics.record(200, conn.delayed_since.elapsed());
            let mut alive = self.process(slot);
            if alive {
                alive = self.flush(slot);
            }
            if !alive {
                self.close(slot);
            }
        }
    }
}

/// Reads until the socket would block. Returns false on a hard error.
fn read_all(conn: &mut Conn, chunk: &mut [u8]) -> bool {
    loop {
        if conn.rbuf.len() > MAX_REQUEST_HEAD + MAX_PENDING_OUTPUT {
            // The client sends faster than we answer: stop reading until the
            // backlog is processed (we are edge-triggered, so `flush` calls
            // `process` again when output drains).
            return true;
        }
        match conn.stream.read(chunk) {
            Ok(0) => {
                conn.peer_closed = true;
                return true;
            }
            Ok(n) => conn.rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Renders a delayed response; the timer moves it to the output.
fn respond_later(conn: &mut Conn, head_only: bool) {
    let body = b"delayed\n";
    let mut out = Vec::new();
    routes::write_head(
        &mut out,
        200,
        Some(body.len() as u64),
        conn.close_after_write,
    );
    if !head_only {
        out.extend_from_slice(body);
    }
    conn.delayed = Some(out);
}

/// Queues the response to `route`; returns its status.
fn respond(conn: &mut Conn, route: &Route, head_only: bool) -> u16 {
    let close = conn.close_after_write;
    let out = &mut conn.wbuf;
    match *route {
        Route::Fixed { status, ref body } => {
            let bytes: &[u8] = match body {
                Body::Hello => routes::HELLO,
                Body::Text(t) => t.as_bytes(),
                Body::Bytes(_) => b"",
            };
            let len = match body {
                Body::Bytes(n) => *n,
                _ => bytes.len() as u64,
            };
            routes::write_head(out, status, Some(len), close);
            if head_only || status == 204 || status == 304 {
                return status;
            }
            match body {
                Body::Bytes(n) if *n > STREAM_THRESHOLD => conn.stream_left = *n,
                Body::Bytes(n) => out.extend(std::iter::repeat_n(b'x', *n as usize)),
                _ => out.extend_from_slice(bytes),
            }
            status
        }
        Route::Cpu { iters } => {
            let v = routes::cpu_burn(iters);
            let body = format!("{v:016x}\n");
            routes::write_head(out, 200, Some(body.len() as u64), close);
            if !head_only {
                out.extend_from_slice(body.as_bytes());
            }
            200
        }
        Route::Chunked { len } => {
            routes::write_head(out, 200, None, close);
            if !head_only {
                routes::write_chunked(out, len);
            }
            200
        }
        Route::Eof { len } => {
            out.extend_from_slice(
                b"HTTP/1.1 200 OK\r\nServer: loadgen-target\r\nConnection: close\r\n\r\n",
            );
            conn.close_after_write = true;
            if !head_only {
                if len > STREAM_THRESHOLD {
                    conn.stream_left = len;
                } else {
                    out.extend(std::iter::repeat_n(b'x', len as usize));
                }
            }
            200
        }
        Route::Delay { .. } | Route::Stats | Route::Metrics => 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_checked_before_it_frames_anything() {
        assert_eq!(content_length(b" 12 "), Ok(12));
        assert_eq!(content_length(b"18446744073709551615"), Err(413));
        assert_eq!(content_length(b"99999999999999999999999"), Err(400));
        assert_eq!(
            content_length(&(MAX_REQUEST_BODY + 1).to_string().into_bytes()),
            Err(413)
        );
        for bad in [&b""[..], b"-1", b"+5", b"1 2", b"0x10"] {
            assert_eq!(content_length(bad), Err(400), "{bad:?}");
        }
    }
}
