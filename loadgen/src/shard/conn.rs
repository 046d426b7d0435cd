//! One connection slot: an explicit state machine driven by the shard
//! core. A slot outlives its sockets: when a connection dies the slot opens
//! a new one, and `generation` tells events of the old socket from the new.
//! The slot holds no socket; the engine does, keyed by slot and generation.

use super::slots::Slots;
use crate::http::{ResponseParser, h2, h3};
use crate::scenario::ConnGen;
use crate::tls::Session;

/// Generations travel in 24 bits of io_uring user data.
pub const GENERATION_MASK: u32 = 0x00ff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting until `retry_at` after a failed connect.
    Backoff,
    Connecting,
    /// Connected; the TLS handshake is under way (`https://` only).
    Handshaking,
    Open,
    /// Not coming back (the run is ending).
    Closed,
}

impl ConnState {
    /// Connecting or in the handshake: not carrying requests yet.
    pub fn is_opening(self) -> bool {
        matches!(self, ConnState::Connecting | ConnState::Handshaking)
    }

    /// Whether the engine holds a socket for the slot in this state.
    pub fn has_socket(self) -> bool {
        matches!(
            self,
            ConnState::Connecting | ConnState::Handshaking | ConnState::Open
        )
    }
}

/// Where the bytes of a slot's last [`super::Action::Send`] are. Recorded
/// when the send is queued, not read off the connection's protocol when
/// the engine takes it: the core may reset the slot in the same turn (the
/// run's last turn dispatches a request, then closes every connection),
/// and the engine still carries out the send on the old socket before its
/// close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFrom {
    /// The first `send_len` bytes of the shard's fixed requests.
    Fixed,
    /// `out`: templated requests.
    Out,
    /// `tls_out`, `h2_out`, `h3_out`.
    Tls,
    H2,
    H3,
}

pub struct Conn {
    pub generation: u32,
    pub state: ConnState,
    pub parser: ResponseParser,
    /// The requests this connection holds, and their times.
    pub slots: Slots,
    /// Rendered requests of the send in flight (templated scenarios
    /// only; sized for `depth` of the longest, so it never reallocates
    /// while the kernel may read it).
    pub out: Vec<u8>,
    /// This connection's random stream and token (templated only).
    pub generator: Option<ConnGen>,
    /// A send whose completion the core waits for is with the engine;
    /// another send must not overtake it.
    pub send_busy: bool,
    /// Which buffer the last send came from, and its length when that is
    /// the shard's fixed requests.
    pub send_from: SendFrom,
    pub send_len: usize,
    /// `https://`: the connection's TLS, and the records of the send in
    /// flight (changed only when no send is, so it never moves under the
    /// kernel).
    pub tls: Option<Session>,
    pub tls_out: Vec<u8>,
    /// `--http2`: the connection's HTTP/2 state, and (without TLS) the
    /// frames of the send in flight, kept still as `tls_out` is.
    pub h2: Option<Box<h2::Connection>>,
    pub h2_out: Vec<u8>,
    /// HTTP/3: the connection (with its QUIC one) and its endpoint handle,
    /// once the socket is up; the datagrams of the send in flight and
    /// their segment size (one GSO send).
    pub h3: Option<(quinn_proto::ConnectionHandle, Box<h3::Connection>)>,
    pub h3_out: Vec<u8>,
    pub h3_segment: usize,
    /// The connection's QUIC packet counts already in the shard's stats.
    pub quic_counted: h3::PacketCounts,
    /// When bytes last came from the server.
    pub last_recv: u64,
    pub connect_started: u64,
    /// When the TCP connection was up and the TLS handshake began.
    pub handshake_started: u64,
    pub retry_at: u64,
    /// `--bind`: the source address this slot's sockets bind to (an index
    /// into the config's list).
    pub source: Option<u32>,
    /// Consecutive failed connects, for the backoff.
    pub failures: u32,
    pub ever_connected: bool,
}

// Each pipeline slot costs a `sent_at`, an `intended_at`, a
// `first_byte_at` and a `which` here, and an intended time in open loop's
// retry queue: the config bounds connections × depth by that (the sum of
// these sizes).
const _: () = assert!(
    crate::config::IN_FLIGHT_SLOT_BYTES as usize
        == 3 * size_of::<u64>() + size_of::<u16>() + size_of::<u64>()
);

impl Conn {
    pub fn new(
        depth: usize,
        max_header_bytes: usize,
        generator: Option<ConnGen>,
        out_capacity: usize,
        h2: Option<h2::Settings>,
    ) -> Conn {
        Conn {
            generation: 0,
            state: ConnState::Backoff,
            parser: ResponseParser::new(max_header_bytes),
            slots: Slots::new(depth),
            out: Vec::with_capacity(out_capacity),
            generator,
            send_busy: false,
            send_from: SendFrom::Fixed,
            send_len: 0,
            tls: None,
            tls_out: Vec::new(),
            h2: h2.map(|s| Box::new(h2::Connection::new(s))),
            h2_out: Vec::new(),
            h3: None,
            h3_out: Vec::new(),
            h3_segment: 0,
            quic_counted: h3::PacketCounts::default(),
            last_recv: 0,
            connect_started: 0,
            handshake_started: 0,
            retry_at: 0,
            source: None,
            failures: 0,
            ever_connected: false,
        }
    }

    /// Whether an event of `generation` is about this slot's socket.
    #[inline]
    pub fn is(&self, generation: u32) -> bool {
        self.generation == generation & GENERATION_MASK
    }

    /// Requests this connection can take now: free pipeline slots, or
    /// streams the server allows and we have not opened.
    #[inline]
    pub fn free_slots(&self) -> u32 {
        let limit = match (&self.h2, &self.h3) {
            (Some(h2), _) => h2.capacity(),
            (_, Some((_, h3))) if h3.is_draining() => 0,
            _ => self.slots.depth(),
        };
        limit.saturating_sub(self.slots.held())
    }

    /// Whether queued requests may be handed over now: HTTP/1.1 requests
    /// wait for the send in flight; HTTP/2 frames queue behind it.
    #[inline]
    pub fn can_send(&self) -> bool {
        !self.send_busy || self.h2.is_some() || self.h3.is_some()
    }

    /// Forgets the socket and everything in flight on it, and moves to the
    /// next generation. Returns how many requests were in flight or queued
    /// (the caller decides their fate).
    pub fn reset(&mut self) -> u32 {
        self.generation = (self.generation + 1) & GENERATION_MASK;
        self.parser.reset();
        self.tls = None;
        if let Some(h2) = &mut self.h2 {
            h2.reset();
        }
        // The endpoint was told first (`Core::close_socket`).
        self.h3 = None;
        self.send_busy = false;
        self.slots.clear()
    }
}
