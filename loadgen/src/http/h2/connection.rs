//! One client HTTP/2 connection, sans-IO: bytes in, [`Event`]s and frames
//! out. It knows streams only by *slot*: the shard core's index of the
//! request a stream carries (`0..streams`). The core decides which request
//! goes on which slot and when; this type turns that into frames, keeps
//! the protocol's state (settings, windows, HPACK, stream states), and
//! says what the server did to each slot.
//!
//! Stream ids are chosen so that `slot = (id / 2) % streams`: the id of a
//! new stream is the smallest legal one (odd, above every id used so far)
//! with that property. Ids are skipped to do it, which RFC 9113 allows
//! (§5.1.1: skipped ids are simply never used), and every frame finds its
//! slot without a map.
//!
//! Received DATA is not buffered for a run: its bytes are counted against
//! the windows and skipped. A client that needs the bodies (gRPC's
//! reflection, before a run) asks to keep them ([`Connection::keep_bodies`]). Other frames are handled straight from the
//! caller's bytes when whole, and gathered in a buffer otherwise.

use super::frame::{self, Header};
use super::hpack;
use super::stats::H2Stats;

/// What the client asks of the server in its SETTINGS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Concurrent streams this connection will open (`--streams`); the
    /// server's SETTINGS_MAX_CONCURRENT_STREAMS caps it.
    pub streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE (`--h2-window`).
    pub stream_window: u32,
    /// The connection's receive window (`--h2-conn-window`).
    pub conn_window: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: the decoded size of a header list.
    pub max_header_list: u32,
}

/// HPACK's dynamic table size, both ways (SETTINGS_HEADER_TABLE_SIZE's
/// initial value): we neither ask for more nor send less.
const TABLE_SIZE: usize = 4096;
/// Before the server's SETTINGS say otherwise, open at most this many
/// streams: RFC 9113 §6.5.2 recommends servers allow at least 100, and a
/// server that allows fewer refuses the rest (which are then retried).
const STREAMS_BEFORE_SETTINGS: u32 = 100;
/// Frames the server makes us answer (PING, SETTINGS) may fill our output
/// at most this far before the connection is dropped as abusive.
const MAX_PENDING_OUTPUT: usize = 4 << 20;

/// What the server did to the streams, for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The first response frame of the slot's stream arrived.
    FirstByte { slot: u32 },
    /// The slot's response is complete, with this final status and the
    /// `grpc-status` its trailers (or its only header block) carried, if
    /// any: a number, [`crate::grpc::status::OTHER`] past 16.
    Complete {
        slot: u32,
        status: u16,
        grpc: Option<u8>,
    },
    /// The server reset the slot's stream with `code` (not
    /// REFUSED_STREAM: those are [`Event::Unprocessed`]).
    Reset { slot: u32, code: u32 },
    /// The response on the slot broke HTTP/2's rules for a message; the
    /// stream was reset with PROTOCOL_ERROR.
    Malformed { slot: u32 },
    /// The server will not process the slot's request (REFUSED_STREAM, or
    /// above a GOAWAY's last stream id): it may be sent again.
    Unprocessed { slot: u32 },
    /// The server's SETTINGS arrived: the stream limit may have changed.
    Settings,
    /// GOAWAY: no new streams on this connection.
    GoAway { code: u32 },
}

/// A connection error (RFC 9113 §5.4.1): the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error("HTTP/2 protocol error: {0}")]
    Protocol(&'static str),
    #[error("HTTP/2 frame of the wrong size: {0}")]
    FrameSize(&'static str),
    #[error("HTTP/2 flow control violated: {0}")]
    FlowControl(&'static str),
    #[error("HPACK: {0}")]
    Compression(#[from] hpack::HpackError),
    #[error("a header block larger than the header list limit")]
    HeaderList,
    #[error("the server answered in HTTP/1.x: it does not speak HTTP/2 without TLS (h2c)")]
    Http1,
    #[error("the server made us queue more than {} MiB of answers (PING or SETTINGS flood)", MAX_PENDING_OUTPUT >> 20)]
    Flood,
}

impl ConnError {
    /// The error code RFC 9113 gives this error.
    pub fn code(&self) -> u32 {
        match self {
            ConnError::Protocol(_) | ConnError::Http1 => frame::PROTOCOL_ERROR,
            ConnError::FrameSize(_) => frame::FRAME_SIZE_ERROR,
            ConnError::FlowControl(_) => frame::FLOW_CONTROL_ERROR,
            ConnError::Compression(_) | ConnError::HeaderList => frame::COMPRESSION_ERROR,
            ConnError::Flood => frame::ENHANCE_YOUR_CALM,
        }
    }
}

/// No more stream ids on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

/// One slot's stream.
#[derive(Debug, Default)]
struct Stream {
    /// 0: no stream (the slot is free, or its stream is over).
    id: u32,
    /// The final (non-1xx) status, once its HEADERS arrived.
    status: u16,
    /// `grpc-status`, once a header block carried it.
    grpc: Option<u8>,
    /// Some response frame arrived.
    answered: bool,
    /// What the server still lets us send on it.
    send_window: i64,
    /// Received DATA not yet given back with a WINDOW_UPDATE.
    recv_unacked: u32,
    /// DATA payload received on it (the response body, and any padding).
    received: u64,
    /// Body bytes still to send (held back by flow control), the last of
    /// them with END_STREAM.
    body: Vec<u8>,
    body_sent: usize,
    /// The response body, when bodies are kept.
    kept: Vec<u8>,
}

impl Stream {
    fn stalled(&self) -> bool {
        self.id != 0 && self.body_sent < self.body.len()
    }
}

#[derive(Debug, Clone, Copy)]
enum Read {
    /// Gathering a frame header.
    Head,
    /// Skipping a DATA payload: `left` bytes, `pad` of them padding; the
    /// pad-length byte still to come if `pad_byte`.
    Data {
        hdr: Header,
        left: u32,
        pad: u32,
        pad_byte: bool,
    },
    /// Gathering another frame's payload.
    Payload { hdr: Header },
}

/// A header block spread over HEADERS and CONTINUATION frames.
#[derive(Debug, Clone, Copy)]
struct Continuing {
    stream: u32,
    end_stream: bool,
}

pub struct Connection {
    local: Settings,
    streams: Box<[Stream]>,
    /// The highest stream id opened (0: none).
    last_id: u32,
    /// Streams open now.
    open: u32,
    // What the server said.
    peer_max_streams: Option<u32>,
    peer_initial_window: i64,
    peer_max_frame: usize,
    /// SETTINGS arrived; the first frame must be one.
    got_settings: bool,
    /// GOAWAY arrived (its last stream id).
    goaway: Option<u32>,
    exhausted: bool,
    /// Keep response bodies ([`Connection::keep_bodies`]).
    keep_bodies: bool,
    // Flow control.
    send_window: i64,
    /// Slots whose body waits for a window, oldest first: the connection's
    /// window goes to them in that order, and a new body waits behind
    /// them, so none starves.
    stalled: std::collections::VecDeque<u32>,
    recv_window: i64,
    recv_unacked: u32,
    // Reading.
    read: Read,
    head: [u8; frame::HEADER_LEN],
    head_len: usize,
    payload: Vec<u8>,
    block: Vec<u8>,
    continuing: Option<Continuing>,
    decoder: hpack::Decoder,
    /// A Huffman-coded `grpc-status`, decoded.
    grpc_value: Vec<u8>,
    encoder: hpack::RequestEncoder,
    /// The header block of the request being sent.
    head_block: Vec<u8>,
    /// Frames to send, in order.
    out: Vec<u8>,
}

impl Connection {
    pub fn new(local: Settings) -> Connection {
        let n = local.streams.max(1) as usize;
        Connection {
            local,
            streams: (0..n).map(|_| Stream::default()).collect(),
            last_id: 0,
            open: 0,
            peer_max_streams: None,
            peer_initial_window: frame::DEFAULT_WINDOW as i64,
            peer_max_frame: frame::DEFAULT_MAX_FRAME as usize,
            got_settings: false,
            goaway: None,
            exhausted: false,
            keep_bodies: false,
            send_window: frame::DEFAULT_WINDOW as i64,
            stalled: std::collections::VecDeque::new(),
            recv_window: local.conn_window as i64,
            recv_unacked: 0,
            read: Read::Head,
            head: [0; frame::HEADER_LEN],
            head_len: 0,
            payload: Vec::new(),
            block: Vec::new(),
            continuing: None,
            decoder: hpack::Decoder::new(TABLE_SIZE, local.max_header_list as usize),
            grpc_value: Vec::new(),
            encoder: hpack::RequestEncoder::new(),
            head_block: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Forgets everything for a new TCP connection (keeps allocations).
    pub fn reset(&mut self) {
        let mut streams = std::mem::take(&mut self.streams);
        let payload = std::mem::take(&mut self.payload);
        let block = std::mem::take(&mut self.block);
        let out = std::mem::take(&mut self.out);
        let head_block = std::mem::take(&mut self.head_block);
        let keep_bodies = self.keep_bodies;
        *self = Connection::new(self.local);
        self.head_block = head_block;
        self.keep_bodies = keep_bodies;
        for s in streams.iter_mut() {
            s.id = 0;
            s.body.clear();
            s.body_sent = 0;
            s.kept.clear();
        }
        self.streams = streams;
        (self.payload, self.block, self.out) = (payload, block, out);
        self.payload.clear();
        self.block.clear();
        self.out.clear();
    }

    /// The connection is up: the preface, our SETTINGS, and the
    /// connection window opened to what we asked for.
    pub fn start(&mut self, st: &mut H2Stats) {
        self.out.extend_from_slice(frame::PREFACE);
        let mut settings = [(frame::SETTINGS_ENABLE_PUSH, 0); 3];
        let mut n = 1;
        if self.local.stream_window != frame::DEFAULT_WINDOW {
            settings[n] = (
                frame::SETTINGS_INITIAL_WINDOW_SIZE,
                self.local.stream_window,
            );
            n += 1;
        }
        settings[n] = (
            frame::SETTINGS_MAX_HEADER_LIST_SIZE,
            self.local.max_header_list,
        );
        n += 1;
        frame::settings(&mut self.out, &settings[..n]);
        st.frames_out += 1;
        if self.local.conn_window > frame::DEFAULT_WINDOW {
            frame::window_update(
                &mut self.out,
                0,
                self.local.conn_window - frame::DEFAULT_WINDOW,
            );
            st.frames_out += 1;
        }
        // Until the server's SETTINGS arrive its window for us is the
        // default; ours for it is what we just opened.
        self.recv_window = self.local.conn_window.max(frame::DEFAULT_WINDOW) as i64;
    }

    /// How many streams may be open at once now: 0 once the server sent
    /// GOAWAY or the ids ran out.
    pub fn capacity(&self) -> u32 {
        if self.goaway.is_some() || self.exhausted {
            return 0;
        }
        let peer = match (self.got_settings, self.peer_max_streams) {
            (_, Some(n)) => n,
            (true, None) => u32::MAX,
            (false, None) => STREAMS_BEFORE_SETTINGS,
        };
        self.local.streams.min(peer)
    }

    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS, if it sent one.
    pub fn peer_max_streams(&self) -> Option<u32> {
        self.peer_max_streams
    }

    /// No new stream will open here: the connection should be replaced
    /// once its streams are done.
    pub fn is_draining(&self) -> bool {
        self.capacity() == 0
    }

    /// Streams open now.
    pub fn open_streams(&self) -> u32 {
        self.open
    }

    /// The frames to send, taken (`into` is cleared first and keeps its
    /// capacity).
    pub fn take_output(&mut self, into: &mut Vec<u8>) {
        into.clear();
        std::mem::swap(&mut self.out, into);
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Opens a stream on `slot` for a request: its HPACK `head`, then
    /// `body` (none: END_STREAM on the HEADERS). What flow control holds
    /// back is kept and sent as the server opens its windows.
    /// DATA payload bytes the slot's last stream received (its response
    /// body; padding, which servers rarely send, included).
    pub fn body_received(&self, slot: u32) -> u64 {
        self.streams.get(slot as usize).map_or(0, |s| s.received)
    }

    pub fn open_stream(
        &mut self,
        slot: u32,
        head: Head<'_>,
        body: &[u8],
        st: &mut H2Stats,
    ) -> Result<(), Exhausted> {
        let id = next_id(self.last_id, slot, self.streams.len() as u32).ok_or_else(|| {
            self.exhausted = true;
            Exhausted
        })?;
        self.last_id = id;
        self.open += 1;
        let s = &mut self.streams[slot as usize];
        debug_assert_eq!(s.id, 0, "slot {slot} already has stream {}", s.id);
        *s = Stream {
            id,
            status: 0,
            grpc: None,
            answered: false,
            send_window: self.peer_initial_window,
            recv_unacked: 0,
            received: 0,
            body: std::mem::take(&mut s.body),
            body_sent: 0,
            kept: std::mem::take(&mut s.kept),
        };
        s.body.clear();
        s.kept.clear();
        self.head_block.clear();
        match head {
            Head::Fixed(f) => self.encoder.encode_fixed(f, &mut self.head_block),
            Head::Fields(f) => self.encoder.encode_literal(f.iter(), &mut self.head_block),
        }
        st.frames_out += frame::headers(
            &mut self.out,
            id,
            &self.head_block,
            body.is_empty(),
            self.peer_max_frame,
        );
        // Straight from the caller's bytes; only what the windows hold
        // back is copied, to be sent later.
        let sent = if self.stalled.is_empty() {
            self.data_frames(slot as usize, body, st)
        } else {
            0
        };
        if sent < body.len() {
            self.streams[slot as usize]
                .body
                .extend_from_slice(&body[sent..]);
            self.stalled.push_back(slot);
            st.window_stalls += 1;
        }
        Ok(())
    }

    /// DATA frames of as much of `bytes` (the rest of the slot's body) as
    /// the windows and the frame size allow, the last with END_STREAM.
    /// Returns how many bytes went.
    fn data_frames(&mut self, i: usize, bytes: &[u8], st: &mut H2Stats) -> usize {
        let s = &mut self.streams[i];
        let mut sent = 0;
        while sent < bytes.len() {
            let room = s.send_window.min(self.send_window);
            if room <= 0 {
                break;
            }
            let n = (bytes.len() - sent)
                .min(room as usize)
                .min(self.peer_max_frame);
            frame::data(
                &mut self.out,
                s.id,
                &bytes[sent..][..n],
                sent + n == bytes.len(),
            );
            st.frames_out += 1;
            sent += n;
            s.send_window -= n as i64;
            self.send_window -= n as i64;
        }
        sent
    }

    /// From now on the DATA of each response is kept, for
    /// [`Connection::take_body`]: for a client that reads what the server
    /// says (a run's responses are only counted).
    pub fn keep_bodies(&mut self) {
        self.keep_bodies = true;
    }

    /// The slot's response body so far (kept since its stream opened).
    pub fn take_body(&mut self, slot: u32) -> Vec<u8> {
        std::mem::take(&mut self.streams[slot as usize].kept)
    }

    /// Gives up on the slot's stream (its request timed out): RST_STREAM
    /// CANCEL, and whatever still comes for it is ignored.
    pub fn cancel(&mut self, slot: u32, st: &mut H2Stats) {
        let id = self.streams[slot as usize].id;
        if id != 0 {
            frame::rst_stream(&mut self.out, id, frame::CANCEL);
            st.frames_out += 1;
            self.close(slot as usize);
        }
    }

    /// Sends as much of the slot's held-back body as the windows allow.
    fn send_body(&mut self, i: usize, st: &mut H2Stats) {
        let body = std::mem::take(&mut self.streams[i].body);
        let from = self.streams[i].body_sent;
        let sent = self.data_frames(i, &body[from..], st);
        let s = &mut self.streams[i];
        s.body = body;
        s.body_sent += sent;
    }

    /// Windows opened: bodies held back go on, the oldest first (one held
    /// back by its own stream's window lets the next go).
    fn resume(&mut self, st: &mut H2Stats) {
        let mut k = 0;
        while k < self.stalled.len() && self.send_window > 0 {
            let i = self.stalled[k] as usize;
            self.send_body(i, st);
            if self.streams[i].stalled() {
                k += 1;
            } else {
                self.stalled.remove(k);
            }
        }
    }

    fn close(&mut self, i: usize) {
        let s = &mut self.streams[i];
        if s.id != 0 {
            if s.stalled() {
                self.stalled.retain(|&slot| slot as usize != i);
            }
            let s = &mut self.streams[i];
            s.id = 0;
            s.body.clear();
            s.body_sent = 0;
            self.open -= 1;
        }
    }

    /// The slot of an open stream `id`, if it is one.
    #[inline]
    fn slot_of(&self, id: u32) -> Option<usize> {
        let i = ((id >> 1) % self.streams.len() as u32) as usize;
        (id != 0 && self.streams[i].id == id).then_some(i)
    }

    /// A stream id we never opened (and never skipped).
    #[inline]
    fn is_idle(&self, id: u32) -> bool {
        id > self.last_id || id & 1 == 0
    }
}

/// A request's header fields, as given to [`Connection::open_stream`].
#[derive(Clone, Copy)]
pub enum Head<'a> {
    /// A request that never changes, encoded once.
    Fixed(&'a hpack::FixedRequest),
    /// The fields of one request.
    Fields(&'a hpack::RequestFields),
}

/// The smallest odd id above `last` whose slot is `slot`, if there is one
/// below 2^31.
fn next_id(last: u32, slot: u32, streams: u32) -> Option<u32> {
    let first = if last == 0 { 0 } else { (last >> 1) + 1 } as u64;
    let streams = streams as u64;
    let k = first + (slot as u64 + streams - first % streams) % streams;
    let id = 2 * k + 1;
    (id <= frame::MAX_WINDOW as u64).then_some(id as u32)
}

mod read;
#[cfg(test)]
mod tests;
