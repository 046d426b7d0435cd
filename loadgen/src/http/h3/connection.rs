//! An HTTP/3 client connection on a quinn-proto connection: requests on
//! streams by slot (as `h2::Connection` keeps them), and what the server's
//! streams say about each, as events. The QUIC connection's datagrams,
//! timers and endpoint events stay the caller's (the shard's endpoint
//! drives them through [`Connection::quic_mut`]); this reads and writes
//! streams only, and closes the connection on an HTTP/3 error.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use quinn_proto::{Dir, ReadError, StreamEvent, StreamId, VarInt};

use super::error::{H3Error, code};
use super::qpack::Decoder;
use super::response::{ResponseEvent, ResponseReader};
use super::uni::{PeerStreams, UniStream, UniStreamAction, client_control_stream};

/// What happened to a request, or to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake is done. `zero_rtt`: whether requests went out in
    /// 0-RTT, and if so whether the server took them (when it did not,
    /// their slots came back as [`Event::Unprocessed`] just before this).
    Connected { zero_rtt: Option<bool> },
    /// The first bytes of a slot's response.
    FirstByte { slot: u32 },
    /// A whole response: head, body, the stream's end.
    Complete { slot: u32, status: u16, body: u64 },
    /// The server reset the request's stream with `code`.
    Reset { slot: u32, code: u64 },
    /// The response broke HTTP/3's rules for a message; the stream was
    /// reset with `code` (the connection goes on).
    Malformed { slot: u32, code: u64 },
    /// The server did not process the request (REQUEST_REJECTED, a GOAWAY
    /// below its stream, or 0-RTT refused): it may be sent again.
    Unprocessed { slot: u32 },
    /// More request streams may be opened.
    Available,
    /// The connection is over (the server closed it, it timed out, or we
    /// closed it for an HTTP/3 error: then [`Connection::poll`] returned
    /// the error first).
    Lost(quinn_proto::ConnectionError),
}

/// The request streams of the slots, and the server's streams.
pub struct Connection {
    quic: quinn_proto::Connection,
    max_field_section: usize,
    /// By slot: the stream its request is on.
    stream_of: Vec<Option<StreamId>>,
    /// By slot: the response being read, its status and body bytes.
    responses: Vec<ResponseReader>,
    status: Vec<u16>,
    body: Vec<u64>,
    /// By slot: some of the response arrived.
    started: Vec<bool>,
    /// By slot: the rest of a request the stream's flow-control credit did
    /// not take yet (a body above the server's initial window), written
    /// as the stream becomes writable; the stream is finished after it.
    unsent: Vec<Option<Bytes>>,
    /// The slot of each open request stream.
    slot_of: HashMap<StreamId, u32>,
    uni: HashMap<StreamId, UniStream>,
    peer: PeerStreams,
    qpack: Decoder,
    control: Option<StreamId>,
    /// Requests went out before the handshake completed (0-RTT).
    early: bool,
    /// Bytes read from one stream, reused.
    chunk: Vec<u8>,
}

impl Connection {
    /// Wraps a client connection just made (`Endpoint::connect`), for
    /// `depth` requests at once, refusing response field sections above
    /// `max_field_section` bytes. With 0-RTT keys our control stream opens
    /// at once.
    pub fn new(quic: quinn_proto::Connection, depth: usize, max_field_section: usize) -> Self {
        let mut c = Connection {
            quic,
            max_field_section,
            stream_of: vec![None; depth],
            responses: (0..depth)
                .map(|_| ResponseReader::new(max_field_section))
                .collect(),
            status: vec![0; depth],
            body: vec![0; depth],
            started: vec![false; depth],
            unsent: vec![None; depth],
            slot_of: HashMap::new(),
            uni: HashMap::new(),
            peer: PeerStreams::new(),
            qpack: Decoder::new(max_field_section),
            control: None,
            early: false,
            chunk: Vec::new(),
        };
        c.open_control();
        c
    }

    pub fn quic(&self) -> &quinn_proto::Connection {
        &self.quic
    }

    /// For the endpoint's side: datagrams in, transmits out, timeouts.
    pub fn quic_mut(&mut self) -> &mut quinn_proto::Connection {
        &mut self.quic
    }

    /// The server's GOAWAY came: open no more requests here.
    pub fn is_draining(&self) -> bool {
        self.peer.goaway().is_some()
    }

    /// Requests on streams now.
    pub fn held(&self) -> usize {
        self.slot_of.len()
    }

    fn open_control(&mut self) {
        if self.control.is_some() {
            return;
        }
        if let Some(id) = self.quic.streams().open(Dir::Uni) {
            let bytes = client_control_stream(self.max_field_section as u64);
            // A new stream takes its first bytes whole (the peer's initial
            // stream credit is far above them).
            let _ = self.quic.send_stream(id).write(&bytes);
            self.control = Some(id);
        }
    }

    /// Puts slot `slot`'s request on a new stream: `frame` is its whole
    /// HEADERS frame (a fixed request's is shared, not copied). False when
    /// the server's stream limit is reached or it sent GOAWAY: wait for
    /// [`Event::Available`], or go elsewhere.
    pub fn open_stream(&mut self, slot: u32, frame: &Bytes) -> bool {
        if self.is_draining() {
            return false;
        }
        let Some(id) = self.quic.streams().open(Dir::Bi) else {
            return false;
        };
        if self.quic.is_handshaking() {
            self.early = true;
        }
        let i = slot as usize;
        // A new stream's credit is the peer's initial window: a GET's
        // HEADERS frame fits at once; a larger body waits for credit.
        self.unsent[i] = Some(frame.clone());
        self.write_rest(id, i);
        self.stream_of[i] = Some(id);
        self.responses[i].reset();
        self.status[i] = 0;
        self.body[i] = 0;
        self.started[i] = false;
        self.slot_of.insert(id, slot);
        true
    }

    /// Writes what stream `id` (slot `i`'s) can take of its request, and
    /// finishes the stream once all of it is written.
    fn write_rest(&mut self, id: StreamId, i: usize) {
        let Some(rest) = self.unsent[i].as_mut() else {
            return;
        };
        let mut s = self.quic.send_stream(id);
        // A partial write advances `rest` past what was taken.
        let _ = s.write_chunks(std::slice::from_mut(rest));
        if rest.is_empty() {
            self.unsent[i] = None;
            let _ = s.finish();
        }
    }

    /// Gives up slot `slot`'s request (a timeout): its stream is reset and
    /// the response, if any, is no longer read.
    pub fn cancel(&mut self, slot: u32) {
        self.unsent[slot as usize] = None;
        if let Some(id) = self.stream_of[slot as usize].take() {
            self.slot_of.remove(&id);
            let c = VarInt::from_u32(code::H3_REQUEST_CANCELLED as u32);
            let _ = self.quic.send_stream(id).reset(c);
            let _ = self.quic.recv_stream(id).stop(c);
        }
    }

    /// Handles what the QUIC connection has for us, appending events. An
    /// HTTP/3 error of the connection closes it with its code and is
    /// returned (an [`Event::Lost`] follows on a later poll).
    pub fn poll(&mut self, now: Instant, events: &mut Vec<Event>) -> Result<(), H3Error> {
        let r = self.poll_inner(events);
        if let Err(e) = &r {
            let c = VarInt::from_u64(e.code()).unwrap_or(VarInt::from_u32(0x101));
            self.quic.close(now, c, Bytes::from_static(b""));
        }
        r
    }

    fn poll_inner(&mut self, events: &mut Vec<Event>) -> Result<(), H3Error> {
        while let Some(ev) = self.quic.poll() {
            match ev {
                quinn_proto::Event::Connected => {
                    let zero_rtt = self.early.then(|| self.quic.accepted_0rtt());
                    if zero_rtt == Some(false) {
                        self.zero_rtt_rejected(events);
                    }
                    self.open_control();
                    events.push(Event::Connected { zero_rtt });
                }
                quinn_proto::Event::ConnectionLost { reason } => events.push(Event::Lost(reason)),
                quinn_proto::Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    while let Some(id) = self.quic.streams().accept(Dir::Uni) {
                        self.uni.insert(id, UniStream::new());
                        self.read(id, events)?;
                    }
                }
                quinn_proto::Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                    // RFC 9114 §6.1: a server opens no request streams.
                    return Err(H3Error::StreamCreation("bidirectional (server-initiated)"));
                }
                quinn_proto::Event::Stream(StreamEvent::Readable { id }) => {
                    self.read(id, events)?
                }
                quinn_proto::Event::Stream(StreamEvent::Writable { id }) => {
                    if let Some(&slot) = self.slot_of.get(&id) {
                        self.write_rest(id, slot as usize);
                    }
                }
                quinn_proto::Event::Stream(StreamEvent::Available { dir: Dir::Bi }) => {
                    events.push(Event::Available);
                }
                _ => {}
            }
            if let Some(last) = self.peer.take_goaway() {
                self.goaway(last, events);
            }
        }
        Ok(())
    }

    /// The server refused our 0-RTT data: quinn dropped every stream we
    /// opened, and stream ids start again at 0.
    fn zero_rtt_rejected(&mut self, events: &mut Vec<Event>) {
        self.control = None;
        self.slot_of.clear();
        self.unsent.fill(None);
        for (slot, s) in self.stream_of.iter_mut().enumerate() {
            if s.take().is_some() {
                events.push(Event::Unprocessed { slot: slot as u32 });
            }
        }
    }

    /// GOAWAY: requests on streams from `last` on were not processed.
    fn goaway(&mut self, last: u64, events: &mut Vec<Event>) {
        for (slot, s) in self.stream_of.iter_mut().enumerate() {
            if let Some(id) = *s
                && u64::from(id) >= last
            {
                *s = None;
                self.unsent[slot] = None;
                self.slot_of.remove(&id);
                events.push(Event::Unprocessed { slot: slot as u32 });
            }
        }
    }

    /// Reads what stream `id` has.
    fn read(&mut self, id: StreamId, events: &mut Vec<Event>) -> Result<(), H3Error> {
        self.chunk.clear();
        let end = {
            let mut s = self.quic.recv_stream(id);
            let Ok(mut chunks) = s.read(true) else {
                return Ok(());
            };
            let end = loop {
                match chunks.next(usize::MAX) {
                    Ok(Some(c)) => self.chunk.extend_from_slice(&c.bytes),
                    Ok(None) => break Ok(true),
                    Err(ReadError::Blocked) => break Ok(false),
                    Err(ReadError::Reset(c)) => break Err(c.into_inner()),
                }
            };
            let _ = chunks.finalize();
            end
        };
        if let Some(u) = self.uni.get_mut(&id) {
            if u.on_data(&self.chunk, &mut self.peer)? != UniStreamAction::Continue {
                let c = VarInt::from_u32(code::H3_STREAM_CREATION_ERROR as u32);
                let _ = self.quic.recv_stream(id).stop(c);
            }
            if end != Ok(false) {
                u.on_end()?;
                self.uni.remove(&id);
            }
            return Ok(());
        }
        // A stream of a request given up (or of an earlier 0-RTT attempt).
        let Some(&slot) = self.slot_of.get(&id) else {
            return Ok(());
        };
        let i = slot as usize;
        if !self.chunk.is_empty() && !std::mem::replace(&mut self.started[i], true) {
            events.push(Event::FirstByte { slot });
        }
        let (status, body) = (&mut self.status[i], &mut self.body[i]);
        let mut result = self.responses[i].on_data(
            &self.chunk,
            &mut self.qpack,
            |e| match e {
                ResponseEvent::Head { status: s } => *status = s,
                ResponseEvent::Body(n) => *body += n as u64,
                ResponseEvent::Informational(_) | ResponseEvent::Trailers => {}
            },
            |_, _| {},
        );
        if result.is_ok() && end == Ok(true) {
            result = self.responses[i].on_finish();
        }
        match (result, end) {
            (Err(e), _) if e.is_stream_error() => {
                self.cancel_with(slot, e.code());
                events.push(Event::Malformed {
                    slot,
                    code: e.code(),
                });
                Ok(())
            }
            (Err(e), _) => Err(e),
            (Ok(()), Ok(true)) => {
                self.forget(slot);
                events.push(Event::Complete {
                    slot,
                    status: self.status[i],
                    body: self.body[i],
                });
                Ok(())
            }
            (Ok(()), Err(c)) => {
                self.forget(slot);
                events.push(if c == code::H3_REQUEST_REJECTED {
                    Event::Unprocessed { slot }
                } else {
                    Event::Reset { slot, code: c }
                });
                Ok(())
            }
            (Ok(()), Ok(false)) => Ok(()),
        }
    }

    fn forget(&mut self, slot: u32) {
        self.unsent[slot as usize] = None;
        if let Some(id) = self.stream_of[slot as usize].take() {
            self.slot_of.remove(&id);
        }
    }

    fn cancel_with(&mut self, slot: u32, c: u64) {
        self.unsent[slot as usize] = None;
        if let Some(id) = self.stream_of[slot as usize].take() {
            self.slot_of.remove(&id);
            let c = VarInt::from_u64(c).unwrap_or(VarInt::from_u32(0x101));
            let _ = self.quic.send_stream(id).reset(c);
            let _ = self.quic.recv_stream(id).stop(c);
        }
    }
}
