//! One connection slot: an explicit state machine driven by the shard
//! core. A slot outlives its sockets: when a connection dies the slot opens
//! a new one, and `generation` tells events of the old socket from the new.
//! The slot holds no socket; the engine does, keyed by slot and generation.

use crate::http::ResponseParser;
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

pub struct Conn {
    pub generation: u32,
    pub state: ConnState,
    pub parser: ResponseParser,
    /// Send times (ns since shard start) of in-flight requests, a ring of
    /// `depth` slots starting at `head`.
    sent_at: Box<[u64]>,
    /// Intended send times (open loop), same ring as `sent_at`; queued
    /// requests follow the in-flight ones.
    intended_at: Box<[u64]>,
    /// Which scenario request each slot holds, same ring again.
    pub which: Box<[u16]>,
    /// Rendered requests of the send in flight (templated scenarios
    /// only; sized for `depth` of the longest, so it never reallocates
    /// while the kernel may read it).
    pub out: Vec<u8>,
    /// This connection's random stream and token (templated only).
    pub generator: Option<ConnGen>,
    pub head: u32,
    /// Requests sent (or handed to the engine) and not yet answered.
    pub inflight: u32,
    /// The last `unstamped` of the in-flight requests were handed to the
    /// engine since its last `stamp`, and get that send time.
    pub unstamped: u32,
    /// Requests taken from the quota but waiting for the send slot.
    pub queued: u32,
    /// A send whose completion the core waits for is with the engine;
    /// another send must not overtake it.
    pub send_busy: bool,
    /// The bytes of the last send: `out` (templated) or the first
    /// `send_len` bytes of the shard's fixed requests.
    pub send_len: usize,
    /// `https://`: the connection's TLS, and the records of the send in
    /// flight (changed only when no send is, so it never moves under the
    /// kernel).
    pub tls: Option<Session>,
    pub tls_out: Vec<u8>,
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

// Each pipeline slot costs a `sent_at`, an `intended_at` and a `which`
// here, and an intended time in open loop's retry queue: the config
// bounds connections × depth by that (the sum of these sizes).
const _: () = assert!(
    crate::config::IN_FLIGHT_SLOT_BYTES as usize
        == 2 * size_of::<u64>() + size_of::<u16>() + size_of::<u64>()
);

impl Conn {
    pub fn new(
        depth: usize,
        max_header_bytes: usize,
        generator: Option<ConnGen>,
        out_capacity: usize,
    ) -> Conn {
        Conn {
            generation: 0,
            state: ConnState::Backoff,
            parser: ResponseParser::new(max_header_bytes),
            sent_at: vec![0; depth].into_boxed_slice(),
            intended_at: vec![0; depth].into_boxed_slice(),
            which: vec![0; depth].into_boxed_slice(),
            out: Vec::with_capacity(out_capacity),
            generator,
            head: 0,
            inflight: 0,
            unstamped: 0,
            queued: 0,
            send_busy: false,
            send_len: 0,
            tls: None,
            tls_out: Vec::new(),
            connect_started: 0,
            handshake_started: 0,
            retry_at: 0,
            source: None,
            failures: 0,
            ever_connected: false,
        }
    }

    #[inline]
    pub fn depth(&self) -> u32 {
        self.sent_at.len() as u32
    }

    /// Whether an event of `generation` is about this slot's socket.
    #[inline]
    pub fn is(&self, generation: u32) -> bool {
        self.generation == generation & GENERATION_MASK
    }

    /// Send time of the oldest in-flight request, if it has one yet.
    #[inline]
    pub fn oldest_sent_at(&self) -> Option<u64> {
        (self.inflight > self.unstamped).then(|| self.sent_at[self.head as usize])
    }

    /// Free pipeline slots.
    #[inline]
    pub fn free_slots(&self) -> u32 {
        self.depth() - self.inflight - self.queued
    }

    /// Queues one request meant to be sent at `intended` (ns).
    #[inline]
    pub fn queue(&mut self, intended: u64) {
        let idx = (self.head + self.inflight + self.queued) % self.depth();
        self.intended_at[idx as usize] = intended;
        self.queued += 1;
    }

    /// Moves the queued requests in flight (their send is with the engine).
    #[inline]
    pub fn mark_sent(&mut self) -> u32 {
        let n = self.queued;
        self.queued = 0;
        self.inflight += n;
        self.unstamped += n;
        n
    }

    /// Which scenario request the oldest in-flight one is.
    #[inline]
    pub fn oldest_which(&self) -> u16 {
        self.which[self.head as usize]
    }

    /// Removes the oldest in-flight request, returning its actual and
    /// intended send times and which scenario request it was.
    #[inline]
    pub fn pop_oldest(&mut self) -> (u64, u64, u16) {
        let i = self.head as usize;
        let t = (self.sent_at[i], self.intended_at[i], self.which[i]);
        self.head = (self.head + 1) % self.depth();
        self.inflight -= 1;
        self.unstamped = self.unstamped.min(self.inflight);
        t
    }

    /// Intended send times of the requests in flight or queued, oldest
    /// first.
    pub fn pending_intended(&self) -> impl Iterator<Item = u64> + '_ {
        let depth = self.depth();
        (0..self.inflight + self.queued)
            .map(move |k| self.intended_at[((self.head + k) % depth) as usize])
    }

    /// Gives the newest `unstamped` in-flight requests send time `t`.
    #[inline]
    pub fn stamp(&mut self, t: u64) {
        let depth = self.depth();
        for k in (self.inflight - self.unstamped)..self.inflight {
            self.sent_at[((self.head + k) % depth) as usize] = t;
        }
        self.unstamped = 0;
    }

    /// Forgets the socket and everything in flight on it, and moves to the
    /// next generation. Returns how many requests were in flight or queued
    /// (the caller decides their fate).
    pub fn reset(&mut self) -> u32 {
        self.generation = (self.generation + 1) & GENERATION_MASK;
        self.parser.reset();
        self.tls = None;
        let lost = self.inflight + self.queued;
        self.head = 0;
        self.inflight = 0;
        self.unstamped = 0;
        self.queued = 0;
        self.send_busy = false;
        lost
    }
}
