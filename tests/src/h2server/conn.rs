//! One HTTP/2 connection of the test server: a loop that reads what has
//! arrived (waiting at most [`READ_TICK`](super::READ_TICK)), handles each
//! frame, starts the responses that are due, sends what the client's
//! windows allow, and writes it all out.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::frame::{self, Frame};
use super::{Behaviour, RequestSeen, Shared};
use respond::Response;

mod respond;

/// A connection's byte stream: TCP, or TLS over it.
pub(super) trait Transport: Read + Write {
    /// Says goodbye at the transport's level before the FIN (TLS:
    /// close_notify), so the client sees a clean end.
    fn close_notify(&mut self) {}
}

impl Transport for TcpStream {}

impl Transport for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
    }
}

pub(super) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The largest frame we accept: we never raise SETTINGS_MAX_FRAME_SIZE.
const OUR_MAX_FRAME: usize = frame::DEFAULT_MAX_FRAME;
/// The HPACK dynamic table size both sides start with.
const DEFAULT_TABLE: u32 = 4096;
/// PINGs of a flood written per turn of the loop, between reads.
const PING_BATCH: u64 = 256;

/// What to do after a frame.
enum Next {
    Go,
    /// Close the connection: after a GOAWAY (graceful), or at once.
    Close {
        linger: bool,
    },
}

struct Stream {
    /// Index of its entry in `Record::requests`.
    req: usize,
    head_request: bool,
    /// What the client may still send on this stream.
    recv_window: i64,
    /// Bytes received and not yet credited back.
    owed: u64,
    /// What we may still send on it.
    send_window: i64,
    request_done: bool,
    due: Option<Instant>,
    resp: Option<Response>,
    /// Counted in `window_waits` for the current stall already.
    waiting: bool,
    body_len: u64,
}

pub(super) struct Conn<'a, S: Transport> {
    n: u64,
    shared: &'a Shared,
    io: S,
    /// The same socket, for shutdown.
    tcp: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    decoder: loona_hpack::Decoder<'static>,
    // The client's settings.
    peer_max_frame: usize,
    peer_initial_window: i64,
    /// A table size the client asked for that our next header block
    /// must acknowledge (RFC 7541 §4.2).
    table_update: Option<u32>,
    peer_table: u32,
    conn_send_window: i64,
    // Our receive side.
    our_initial_window: u32,
    conn_recv_window: i64,
    conn_owed: u64,
    next_stream_credit: Instant,
    next_conn_credit: Instant,
    settings_acked: bool,
    streams: BTreeMap<u32, Stream>,
    last_client_stream: u32,
    opened: u32,
    /// A header block waiting for its CONTINUATION frames: (stream,
    /// fragment so far, END_STREAM on its HEADERS).
    pending_block: Option<(u32, Vec<u8>, bool)>,
    /// The last-stream-id of the GOAWAY we sent.
    goaway: Option<u32>,
    pings_sent: u64,
    pings_acked: u64,
}

impl<'a, S: Transport> Conn<'a, S> {
    pub(super) fn new(n: u64, shared: &'a Shared, io: S, tcp: TcpStream) -> Self {
        let our_initial_window = match shared.opts.behaviour {
            Behaviour::SlowStreamWindow { window, .. } => window,
            Behaviour::SlowConnWindow { .. } => 1 << 20,
            _ => frame::DEFAULT_WINDOW,
        };
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(DEFAULT_TABLE as usize);
        let now = Instant::now();
        Conn {
            n,
            shared,
            io,
            tcp,
            inbuf: Vec::new(),
            out: Vec::new(),
            decoder,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            peer_initial_window: frame::DEFAULT_WINDOW as i64,
            table_update: None,
            peer_table: DEFAULT_TABLE,
            conn_send_window: frame::DEFAULT_WINDOW as i64,
            our_initial_window,
            conn_recv_window: frame::DEFAULT_WINDOW as i64,
            conn_owed: 0,
            next_stream_credit: now,
            next_conn_credit: now,
            settings_acked: false,
            streams: BTreeMap::new(),
            last_client_stream: 0,
            opened: 0,
            pending_block: None,
            goaway: None,
            pings_sent: 0,
            pings_acked: 0,
        }
    }

    fn behaviour(&self) -> &'a Behaviour {
        &self.shared.opts.behaviour
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// Whether anything may be written at all.
    fn mute(&self) -> bool {
        matches!(self.behaviour(), Behaviour::NoSettings)
    }

    fn violation(&self, what: String) {
        let n = self.n;
        self.shared
            .record(|r| r.violations.push(format!("connection {n}: {what}")));
    }

    pub(super) fn run(mut self) {
        if !self.read_preface() {
            return;
        }
        if !self.mute() {
            let mut settings = Vec::new();
            if let Behaviour::MaxConcurrentStreams(n) = self.behaviour() {
                settings.push((frame::SETTINGS_MAX_CONCURRENT_STREAMS, *n));
            }
            if self.our_initial_window != frame::DEFAULT_WINDOW {
                settings.push((frame::SETTINGS_INITIAL_WINDOW_SIZE, self.our_initial_window));
            }
            frame::settings(&mut self.out, &settings);
        }
        let linger = loop {
            if self.stopped() {
                return;
            }
            match self.turn() {
                Ok(Next::Go) => {}
                Ok(Next::Close { linger }) => break linger,
                Err(()) => return,
            }
        };
        self.close(linger);
    }

    /// One turn of the loop: write, read, handle, time.
    fn turn(&mut self) -> Result<Next, ()> {
        self.flush()?;
        let mut chunk = [0u8; 64 * 1024];
        match self.io.read(&mut chunk) {
            Ok(0) => return Err(()),
            Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => return Err(()),
        }
        let mut at = 0;
        let mut next = Next::Go;
        loop {
            let rest = &self.inbuf[at..];
            if let Some(len) = frame::declared_len(rest)
                && len > OUR_MAX_FRAME
            {
                self.violation(format!(
                    "a frame of {len} bytes (our maximum is {OUR_MAX_FRAME})"
                ));
                next = self.connection_error(frame::FRAME_SIZE_ERROR);
                break;
            }
            let Some((f, used)) = frame::parse(rest) else {
                break;
            };
            at += used;
            next = self.on_frame(f);
            if !matches!(next, Next::Go) {
                break;
            }
        }
        self.inbuf.drain(..at);
        if !matches!(next, Next::Go) {
            self.flush()?;
            return Ok(next);
        }
        self.on_time(Instant::now());
        self.pump();
        if let Some(last) = self.goaway
            && !self.streams.keys().any(|&id| id <= last)
        {
            self.flush()?;
            return Ok(Next::Close { linger: true });
        }
        Ok(Next::Go)
    }

    fn flush(&mut self) -> Result<(), ()> {
        if self.out.is_empty() {
            return Ok(());
        }
        if self.mute() {
            self.out.clear();
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        self.shared.record(|r| r.bytes_sent += out.len() as u64);
        self.io.write_all(&out).map_err(|_| ())?;
        self.io.flush().map_err(|_| ())
    }

    /// Reads the 24-byte client preface (within 5 s).
    fn read_preface(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut chunk = [0u8; 4096];
        while self.inbuf.len() < frame::PREFACE.len() {
            if self.stopped() || Instant::now() > deadline {
                return false;
            }
            match self.io.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
        if !self.inbuf.starts_with(frame::PREFACE) {
            self.shared.record(|r| r.bad_prefaces += 1);
            return false;
        }
        self.inbuf.drain(..frame::PREFACE.len());
        true
    }

    /// Sends GOAWAY(`code`) and closes: the client broke a rule that
    /// leaves the connection unusable.
    fn connection_error(&mut self, code: u32) -> Next {
        self.send_goaway(self.last_client_stream, code);
        Next::Close { linger: true }
    }

    fn send_goaway(&mut self, last: u32, code: u32) {
        frame::goaway(&mut self.out, last, code, b"");
        if !self.mute() {
            self.shared.record(|r| r.goaways_sent.push((last, code)));
        }
    }

    fn send_rst(&mut self, stream: u32, code: u32) {
        frame::rst_stream(&mut self.out, stream, code);
        if !self.mute() {
            self.shared.record(|r| r.resets_sent.push((stream, code)));
        }
    }

    /// Ends the connection: TLS close_notify and FIN, then (`linger`)
    /// reads until the client closes, for at most 1 s, so that what we
    /// sent last is not lost to a reset.
    fn close(mut self, linger: bool) {
        let _ = self.flush();
        self.io.close_notify();
        if !linger {
            let _ = self.tcp.shutdown(Shutdown::Both);
            return;
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut sink = [0u8; 16 * 1024];
        while Instant::now() < deadline && !self.stopped() {
            match self.io.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
    }

    fn on_frame(&mut self, f: Frame) -> Next {
        self.shared.record(|r| r.frames_received += 1);
        if let Some((stream, _, _)) = &self.pending_block
            && (f.kind != frame::CONTINUATION || f.stream != *stream)
        {
            self.violation(format!(
                "frame type {} on stream {} while a header block on stream {stream} waits for CONTINUATION",
                f.kind, f.stream
            ));
            return self.connection_error(frame::PROTOCOL_ERROR);
        }
        match f.kind {
            frame::DATA => self.on_data(f),
            frame::HEADERS => self.on_headers(f),
            frame::CONTINUATION => self.on_continuation(f),
            frame::PRIORITY => {
                if f.payload.len() != 5 {
                    self.violation(format!("PRIORITY of {} bytes", f.payload.len()));
                }
                Next::Go
            }
            frame::RST_STREAM => self.on_rst(f),
            frame::SETTINGS => self.on_settings(f),
            frame::PUSH_PROMISE => {
                self.violation("PUSH_PROMISE from the client".into());
                self.connection_error(frame::PROTOCOL_ERROR)
            }
            frame::PING => self.on_ping(f),
            frame::GOAWAY => {
                let word = |i: usize| {
                    f.payload
                        .get(i..i + 4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                };
                let (last, code) = (word(0) & 0x7fff_ffff, word(4));
                self.shared
                    .record(|r| r.goaways_received.push((last, code)));
                Next::Go
            }
            frame::WINDOW_UPDATE => self.on_window_update(f),
            // Unknown types are ignored (RFC 9113 §4.1).
            _ => Next::Go,
        }
    }

    fn on_data(&mut self, f: Frame) -> Next {
        if f.stream == 0 {
            self.violation("DATA on stream 0".into());
            return self.connection_error(frame::PROTOCOL_ERROR);
        }
        let len = f.payload.len() as i64;
        let body = if f.has(frame::PADDED) {
            let pad = f.payload.first().copied().unwrap_or(0) as usize;
            if f.payload.is_empty() || pad >= f.payload.len() {
                self.violation(format!("DATA on stream {} with bad padding", f.stream));
                return self.connection_error(frame::PROTOCOL_ERROR);
            }
            f.payload.len() - 1 - pad
        } else {
            f.payload.len()
        };
        self.conn_recv_window -= len;
        if self.conn_recv_window < 0 {
            self.violation(format!(
                "DATA on stream {} went {} bytes past the connection window",
                f.stream, -self.conn_recv_window
            ));
        }
        self.conn_owed += len as u64;
        self.shared.record(|r| r.data_bytes_received += len as u64);
        let stream_id = f.stream;
        let Some(s) = self.streams.get_mut(&stream_id) else {
            if stream_id > self.last_client_stream {
                self.violation(format!("DATA on idle stream {stream_id}"));
            }
            // A stream we reset or ignored: only the connection counts it.
            return Next::Go;
        };
        if s.request_done {
            self.violation(format!("DATA on stream {stream_id} after END_STREAM"));
            return Next::Go;
        }
        s.recv_window -= len;
        let over = -s.recv_window;
        s.owed += len as u64;
        s.body_len += body as u64;
        let (req, body_len) = (s.req, s.body_len);
        if over > 0 {
            self.violation(format!(
                "DATA on stream {stream_id} went {over} bytes past its window"
            ));
        }
        self.shared.record(|r| r.requests[req].body_len = body_len);
        if f.has(frame::END_STREAM) {
            self.request_done(stream_id);
        }
        Next::Go
    }

    fn on_headers(&mut self, f: Frame) -> Next {
        if f.stream == 0 || f.stream.is_multiple_of(2) {
            self.violation(format!("HEADERS on stream {}", f.stream));
            return self.connection_error(frame::PROTOCOL_ERROR);
        }
        let mut p = &f.payload[..];
        let mut pad = 0;
        if f.has(frame::PADDED) {
            let Some((&n, rest)) = p.split_first() else {
                self.violation("HEADERS with PADDED and no pad length".into());
                return self.connection_error(frame::PROTOCOL_ERROR);
            };
            pad = n as usize;
            p = rest;
        }
        if f.has(frame::PRIORITY_FLAG) {
            p = p.get(5..).unwrap_or_default();
        }
        if pad > p.len() {
            self.violation(format!(
                "HEADERS on stream {} padded past its end",
                f.stream
            ));
            return self.connection_error(frame::PROTOCOL_ERROR);
        }
        let fragment = p[..p.len() - pad].to_vec();
        let end_stream = f.has(frame::END_STREAM);
        if f.has(frame::END_HEADERS) {
            self.on_header_block(f.stream, &fragment, end_stream)
        } else {
            self.pending_block = Some((f.stream, fragment, end_stream));
            Next::Go
        }
    }

    fn on_continuation(&mut self, f: Frame) -> Next {
        let Some((stream, mut block, end_stream)) = self.pending_block.take() else {
            self.violation(format!(
                "CONTINUATION on stream {} after no HEADERS",
                f.stream
            ));
            return self.connection_error(frame::PROTOCOL_ERROR);
        };
        block.extend_from_slice(&f.payload);
        if f.has(frame::END_HEADERS) {
            self.on_header_block(stream, &block, end_stream)
        } else {
            self.pending_block = Some((stream, block, end_stream));
            Next::Go
        }
    }

    fn on_header_block(&mut self, stream: u32, block: &[u8], end_stream: bool) -> Next {
        // Every block is decoded, even of a stream we ignore: the
        // decoder's table must follow the client's encoder.
        let fields = match self.decoder.decode(block) {
            Ok(f) => f,
            Err(e) => {
                self.violation(format!("invalid HPACK on stream {stream}: {e:?}"));
                return self.connection_error(frame::COMPRESSION_ERROR);
            }
        };
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(&n).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        if let Some(s) = self.streams.get(&stream) {
            // Trailers.
            let req = s.req;
            if !end_stream {
                self.violation(format!("trailers on stream {stream} without END_STREAM"));
            }
            self.shared.record(|r| r.requests[req].trailers = fields);
            self.request_done(stream);
            return Next::Go;
        }
        if stream <= self.last_client_stream {
            self.violation(format!(
                "HEADERS on stream {stream}, not above the last one ({})",
                self.last_client_stream
            ));
            return self.connection_error(frame::PROTOCOL_ERROR);
        }
        self.last_client_stream = stream;
        if let Some(last) = self.goaway
            && stream > last
        {
            self.shared.record(|r| r.ignored_streams += 1);
            return Next::Go;
        }
        self.open_stream(stream, fields, end_stream)
    }

    fn open_stream(
        &mut self,
        stream: u32,
        fields: Vec<(String, String)>,
        end_stream: bool,
    ) -> Next {
        self.opened += 1;
        let ordinal = self.shared.streams.fetch_add(1, Ordering::SeqCst) + 1;
        let mut seen = RequestSeen {
            conn: self.n,
            stream,
            complete: end_stream,
            ..RequestSeen::default()
        };
        for (n, v) in fields {
            match n.as_str() {
                ":method" => seen.method = v,
                ":path" => seen.path = v,
                ":scheme" => seen.scheme = v,
                ":authority" => seen.authority = v,
                _ => seen.headers.push((n, v)),
            }
        }
        let head_request = seen.method == "HEAD";
        let req = self.shared.record(|r| {
            r.requests.push(seen);
            r.requests.len() - 1
        });
        let refuse = match *self.behaviour() {
            Behaviour::MaxConcurrentStreams(n) if self.streams.len() >= n as usize => {
                if self.settings_acked {
                    self.violation(format!(
                        "stream {stream} opened with {} open, over SETTINGS_MAX_CONCURRENT_STREAMS {n}",
                        self.streams.len()
                    ));
                }
                Some(frame::REFUSED_STREAM)
            }
            Behaviour::ResetEvery { every, code } if ordinal.is_multiple_of(every.max(1)) => {
                Some(code)
            }
            _ => None,
        };
        if let Some(code) = refuse {
            self.send_rst(stream, code);
            self.shared
                .record(|r| r.requests[req].reset_by_server = Some(code));
            return Next::Go;
        }
        self.streams.insert(
            stream,
            Stream {
                req,
                head_request,
                recv_window: if self.settings_acked {
                    self.our_initial_window as i64
                } else {
                    frame::DEFAULT_WINDOW as i64
                },
                owed: 0,
                send_window: self.peer_initial_window,
                request_done: false,
                due: None,
                resp: None,
                waiting: false,
                body_len: 0,
            },
        );
        let open = self.streams.len() as u64;
        self.shared
            .record(|r| r.max_open_streams = r.max_open_streams.max(open));
        if end_stream {
            self.request_done(stream);
        }
        if let Behaviour::GoawayAfter {
            streams,
            code,
            abrupt,
        } = *self.behaviour()
            && self.opened == streams
        {
            self.send_goaway(stream, code);
            self.goaway = Some(stream);
            if abrupt {
                return Next::Close { linger: false };
            }
        }
        Next::Go
    }

    fn request_done(&mut self, stream: u32) {
        let delay = self.shared.opts.response_delay;
        let silent = matches!(
            self.behaviour(),
            Behaviour::NoSettings | Behaviour::SilentAfterSettings
        );
        if let Some(s) = self.streams.get_mut(&stream) {
            s.request_done = true;
            if !silent {
                s.due = Some(Instant::now() + delay);
            }
            let req = s.req;
            self.shared.record(|r| r.requests[req].complete = true);
        }
    }

    fn on_rst(&mut self, f: Frame) -> Next {
        let code = f
            .payload
            .get(..4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if f.payload.len() != 4 || f.stream == 0 {
            self.violation(format!(
                "RST_STREAM of {} bytes on stream {}",
                f.payload.len(),
                f.stream
            ));
            return self.connection_error(frame::PROTOCOL_ERROR);
        }
        let req = self.streams.remove(&f.stream).map(|s| s.req);
        self.shared.record(|r| {
            r.resets_received.push((f.stream, code));
            if let Some(i) = req {
                r.requests[i].reset_by_client = Some(code);
            }
        });
        Next::Go
    }

    fn on_settings(&mut self, f: Frame) -> Next {
        if f.stream != 0 {
            self.violation(format!("SETTINGS on stream {}", f.stream));
            return self.connection_error(frame::PROTOCOL_ERROR);
        }
        if f.has(frame::ACK) {
            if !self.settings_acked {
                // The client applied our SETTINGS_INITIAL_WINDOW_SIZE to
                // every stream before it sent this ACK; until then it
                // could only go by the default (RFC 9113 §6.9.2).
                let delta = self.our_initial_window as i64 - frame::DEFAULT_WINDOW as i64;
                for s in self.streams.values_mut() {
                    s.recv_window += delta;
                }
            }
            self.settings_acked = true;
            self.shared.record(|r| r.settings_acks += 1);
            return Next::Go;
        }
        if !f.payload.len().is_multiple_of(6) {
            self.violation(format!("SETTINGS of {} bytes", f.payload.len()));
            return self.connection_error(frame::FRAME_SIZE_ERROR);
        }
        let pairs: Vec<(u16, u32)> = f
            .payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect();
        for &(id, v) in &pairs {
            match id {
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if v as i64 > frame::MAX_WINDOW {
                        self.violation(format!("SETTINGS_INITIAL_WINDOW_SIZE {v}"));
                        return self.connection_error(frame::FLOW_CONTROL_ERROR);
                    }
                    let delta = v as i64 - self.peer_initial_window;
                    self.peer_initial_window = v as i64;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&v) {
                        self.violation(format!("SETTINGS_MAX_FRAME_SIZE {v}"));
                        return self.connection_error(frame::PROTOCOL_ERROR);
                    }
                    self.peer_max_frame = v as usize;
                }
                frame::SETTINGS_HEADER_TABLE_SIZE => {
                    let size = v.min(DEFAULT_TABLE);
                    if size != self.peer_table {
                        self.peer_table = size;
                        self.table_update = Some(size);
                    }
                }
                frame::SETTINGS_ENABLE_PUSH if v > 1 => {
                    self.violation(format!("SETTINGS_ENABLE_PUSH {v}"));
                    return self.connection_error(frame::PROTOCOL_ERROR);
                }
                _ => {}
            }
        }
        self.shared.record(|r| r.client_settings.push(pairs));
        frame::write(&mut self.out, frame::SETTINGS, frame::ACK, 0, &[]);
        Next::Go
    }

    fn on_ping(&mut self, f: Frame) -> Next {
        if f.payload.len() != 8 || f.stream != 0 {
            self.violation(format!(
                "PING of {} bytes on stream {}",
                f.payload.len(),
                f.stream
            ));
            return self.connection_error(frame::FRAME_SIZE_ERROR);
        }
        if f.has(frame::ACK) {
            let mut b = [0u8; 8];
            b.copy_from_slice(&f.payload);
            let n = u64::from_be_bytes(b);
            // Ours are numbered from 1.
            if n >= 1 && n <= self.pings_sent {
                self.pings_acked += 1;
                self.shared.record(|r| r.ping_acks += 1);
            }
        } else {
            self.shared.record(|r| r.client_pings += 1);
            frame::write(&mut self.out, frame::PING, frame::ACK, 0, &f.payload);
        }
        Next::Go
    }

    fn on_window_update(&mut self, f: Frame) -> Next {
        if f.payload.len() != 4 {
            self.violation(format!("WINDOW_UPDATE of {} bytes", f.payload.len()));
            return self.connection_error(frame::FRAME_SIZE_ERROR);
        }
        let inc = (u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]])
            & 0x7fff_ffff) as i64;
        self.shared.record(|r| r.window_updates_received += 1);
        if inc == 0 {
            self.violation(format!("WINDOW_UPDATE of 0 on stream {}", f.stream));
            if f.stream == 0 {
                return self.connection_error(frame::PROTOCOL_ERROR);
            }
            return Next::Go;
        }
        let window = if f.stream == 0 {
            &mut self.conn_send_window
        } else if let Some(s) = self.streams.get_mut(&f.stream) {
            s.waiting = false;
            &mut s.send_window
        } else {
            return Next::Go;
        };
        *window += inc;
        if *window > frame::MAX_WINDOW {
            let stream = f.stream;
            self.violation(format!(
                "WINDOW_UPDATE took stream {stream}'s window past 2^31-1"
            ));
            return self.connection_error(frame::FLOW_CONTROL_ERROR);
        }
        if f.stream == 0 {
            for s in self.streams.values_mut() {
                s.waiting = false;
            }
        }
        Next::Go
    }

    /// Timers: credit for received DATA, PINGs of a flood, responses that
    /// are due.
    fn on_time(&mut self, now: Instant) {
        self.credit(now);
        if let Behaviour::PingFlood { count } = *self.behaviour()
            && self.pings_sent < count
        {
            let batch = PING_BATCH.min(count - self.pings_sent);
            for _ in 0..batch {
                self.pings_sent += 1;
                frame::write(
                    &mut self.out,
                    frame::PING,
                    0,
                    0,
                    &self.pings_sent.to_be_bytes(),
                );
            }
            self.shared.record(|r| r.pings_sent += batch);
        }
        // A flood's responses wait until every PING came back.
        if let Behaviour::PingFlood { count } = *self.behaviour()
            && self.pings_acked < count
        {
            return;
        }
        let due: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.resp.is_none() && s.due.is_some_and(|d| d <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.respond(id);
        }
    }

    /// Gives back flow-control credit for the DATA received, at once or,
    /// for the slow behaviours, a little at a time.
    fn credit(&mut self, now: Instant) {
        let (stream_limit, conn_limit) = match *self.behaviour() {
            Behaviour::SlowStreamWindow { update, every, .. } => {
                if now < self.next_stream_credit {
                    (Some(0), None)
                } else {
                    self.next_stream_credit = now + every;
                    (Some(update as u64), None)
                }
            }
            Behaviour::SlowConnWindow { update, every } => {
                if now < self.next_conn_credit {
                    (None, Some(0))
                } else {
                    self.next_conn_credit = now + every;
                    (None, Some(update as u64))
                }
            }
            _ => (None, None),
        };
        let mut sent = 0;
        let give = conn_limit.map_or(self.conn_owed, |l| l.min(self.conn_owed));
        if give > 0 {
            frame::window_update(&mut self.out, 0, give as u32);
            self.conn_owed -= give;
            self.conn_recv_window += give as i64;
            sent += 1;
        }
        for (&id, s) in self.streams.iter_mut() {
            // A stream whose request is complete gets no more DATA.
            if s.request_done || s.owed == 0 {
                continue;
            }
            let give = stream_limit.map_or(s.owed, |l| l.min(s.owed));
            if give > 0 {
                frame::window_update(&mut self.out, id, give as u32);
                s.owed -= give;
                s.recv_window += give as i64;
                sent += 1;
            }
        }
        if sent > 0 {
            self.shared.record(|r| r.window_updates_sent += sent);
        }
    }
}
