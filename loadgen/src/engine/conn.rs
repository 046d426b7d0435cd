//! One connection slot: an explicit state machine driven by completions.
//! A slot outlives its sockets: when a connection dies, the slot opens a new
//! one, and `gen` tells completions of the old socket from the new.

use std::os::fd::RawFd;

use crate::http::ResponseParser;
use crate::scenario::ConnGen;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting until `retry_at` after a failed connect.
    Backoff,
    Connecting,
    Open,
    /// Not coming back (the run is ending).
    Closed,
}

pub struct Conn {
    pub fd: RawFd,
    pub generation: u32,
    pub state: ConnState,
    pub parser: ResponseParser,
    /// Send times (ns since shard start) of in-flight requests, a ring of
    /// `depth` slots starting at `head`.
    pub sent_at: Box<[u64]>,
    /// Intended send times (open loop), same ring as `sent_at`; queued
    /// requests follow the in-flight ones.
    pub intended_at: Box<[u64]>,
    /// Which scenario request each slot holds, same ring again.
    pub which: Box<[u16]>,
    /// Rendered requests of the send in flight (templated scenarios
    /// only; sized for `depth` of the longest, so it never reallocates
    /// under the kernel).
    pub out: Vec<u8>,
    /// This connection's random stream and token (templated only).
    pub generator: Option<ConnGen>,
    pub head: u32,
    /// Requests sent (or submitted) and not yet answered.
    pub inflight: u32,
    /// The last `unstamped` of the in-flight requests were queued this turn
    /// and get their send time just before the ring is entered.
    pub unstamped: u32,
    /// Requests taken from the quota but waiting for the send slot.
    pub queued: u32,
    /// A send whose completion we wait for is in the ring; another send
    /// must not overtake it.
    pub send_busy: bool,
    pub connect_started: u64,
    pub retry_at: u64,
    /// Consecutive failed connects, for the backoff.
    pub failures: u32,
    pub ever_connected: bool,
}

impl Conn {
    pub fn new(
        depth: usize,
        max_header_bytes: usize,
        generator: Option<ConnGen>,
        out_capacity: usize,
    ) -> Conn {
        Conn {
            fd: -1,
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
            connect_started: 0,
            retry_at: 0,
            failures: 0,
            ever_connected: false,
        }
    }

    #[inline]
    pub fn depth(&self) -> u32 {
        self.sent_at.len() as u32
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

    /// Forgets the socket and everything in flight on it. Returns how many
    /// requests were in flight or queued (the caller decides their fate).
    pub fn reset(&mut self) -> u32 {
        if self.fd >= 0 {
            super::sock::shutdown_and_close(self.fd);
            self.fd = -1;
        }
        self.generation = self.generation.wrapping_add(1);
        self.parser.reset();
        let lost = self.inflight + self.queued;
        self.head = 0;
        self.inflight = 0;
        self.unstamped = 0;
        self.queued = 0;
        self.send_busy = false;
        lost
    }
}
