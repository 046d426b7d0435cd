//! The events an engine feeds the core: a socket connected or failed to,
//! bytes arrived, a send completed or failed, the server closed. Each is
//! tagged with the slot's generation, so an event about a socket already
//! replaced is ignored.

use super::conn::ConnState;
use super::decisions::Answer;
use super::{Core, Delivered};
use crate::stats::ErrorKind;

impl Core<'_> {
    /// The slot's socket of `generation` connected.
    pub fn on_connected(&mut self, conn: u32, generation: u32, now: u64) {
        let ci = conn as usize;
        if !self.current(ci, generation, ConnState::Connecting) {
            return;
        }
        if self.h3.is_some() {
            self.connect_h3(ci, now);
        } else if self.tls.is_some() {
            self.start_handshake(ci, now);
        } else {
            self.ready(ci, now);
        }
    }

    /// The connection can carry requests.
    pub(super) fn ready(&mut self, ci: usize, now: u64) {
        let c = &mut self.conns[ci];
        self.stats
            .connect
            .saturating_record((now.saturating_sub(c.connect_started) / 1000).max(1));
        if c.ever_connected {
            self.stats.reconnects += 1;
        }
        c.ever_connected = true;
        c.failures = 0;
        if let (Some(h2), Some(st)) = (c.h2.as_mut(), self.stats.h2.as_mut()) {
            // The preface goes out before (or with) the first request.
            h2.start(st);
        }
        self.set_state(ci, ConnState::Open);
        self.ever_connected = true;
        self.down_since = None;
        self.fill(ci, now);
        self.flush(ci);
    }

    /// The connect failed (or no socket could be made).
    pub fn on_connect_failed(&mut self, conn: u32, generation: u32, now: u64) {
        let ci = conn as usize;
        if !self.current(ci, generation, ConnState::Connecting) {
            return;
        }
        self.stats.errors.connect += 1;
        self.backoff(ci, now);
    }

    /// A tracked send (`ack`) completed: all its bytes went out.
    pub fn on_sent(&mut self, conn: u32, generation: u32, now: u64) {
        let ci = conn as usize;
        if !self.live(ci, generation) {
            return;
        }
        let c = &mut self.conns[ci];
        c.send_busy = false;
        if c.h3.is_some() {
            self.drive_h3(ci, now);
            return;
        }
        if c.slots.queued > 0 && c.state == ConnState::Open {
            self.send(ci, now);
        } else {
            self.flush(ci);
        }
    }

    /// A send failed with `errno`.
    pub fn on_send_failed(&mut self, conn: u32, generation: u32, errno: i32, now: u64) {
        let ci = conn as usize;
        if self.current(ci, generation, ConnState::Handshaking) {
            self.io_failed_in_handshake(ci, errno, now);
        } else if self.current(ci, generation, ConnState::Open) {
            self.fail(ci, ErrorKind::from_errno(errno, ErrorKind::Write), now);
        }
    }

    /// `data` arrived on the slot's socket.
    pub fn on_received(&mut self, conn: u32, generation: u32, data: &[u8], now: u64) {
        let ci = conn as usize;
        if !self.live(ci, generation) {
            return;
        }
        self.stats.bytes_read += data.len() as u64;
        self.conns[ci].last_recv = now;
        if self.conns[ci].tls.is_some() {
            self.received_tls(ci, data, now);
            return;
        }
        match self.deliver(ci, data, now) {
            Delivered::More => {
                self.fill(ci, now);
                self.flush(ci);
            }
            Delivered::ServerClose => self.replace(ci, now),
            Delivered::Error(kind) => self.fail(ci, kind, now),
        }
    }

    /// The server closed its side (a read returned 0).
    pub fn on_eof(&mut self, conn: u32, generation: u32, now: u64) {
        let ci = conn as usize;
        if self.current(ci, generation, ConnState::Handshaking) {
            self.handshake_lost(ci, now);
        } else if self.current(ci, generation, ConnState::Open) {
            self.closed_by_server(ci, now);
        }
    }

    /// The server ended the connection: a response delimited by the close
    /// completes; anything else in flight failed.
    pub(super) fn closed_by_server(&mut self, ci: usize, now: u64) {
        let c = &mut self.conns[ci];
        let idle = c.slots.inflight == 0;
        if c.h2.is_some() {
            // Every HTTP/2 response ends with its stream, before the close.
            if idle {
                self.replace(ci, now);
            } else {
                self.fail(ci, ErrorKind::Closed, now);
            }
            return;
        }
        match c.parser.eof() {
            Ok(Some(r)) => {
                let first_byte = c.slots.oldest().and_then(|s| c.slots.first_byte_at(s));
                let popped = c.slots.pop_oldest();
                let answer = Answer {
                    status: r.status,
                    first_byte,
                    bytes: r.body_len,
                    grpc: None,
                };
                self.complete(ci, answer, popped, now);
                self.replace(ci, now);
            }
            // An idle keep-alive connection closed by the server: normal.
            Ok(None) if idle => self.replace(ci, now),
            Ok(None) | Err(_) => self.fail(ci, ErrorKind::Closed, now),
        }
    }

    /// A send or receive failed with `errno` before the handshake ended.
    /// `ECONNREFUSED` on a QUIC connection's UDP socket is ICMP port
    /// unreachable: nothing listens there, a refused connect as over TCP.
    fn io_failed_in_handshake(&mut self, ci: usize, errno: i32, now: u64) {
        if errno == libc::ECONNREFUSED && self.conns[ci].h3.is_some() {
            self.stats.errors.connect += 1;
            self.backoff(ci, now);
        } else {
            self.handshake_lost(ci, now);
        }
    }

    /// A receive failed with `errno`.
    pub fn on_recv_failed(&mut self, conn: u32, generation: u32, errno: i32, now: u64) {
        let ci = conn as usize;
        if self.current(ci, generation, ConnState::Handshaking) {
            self.io_failed_in_handshake(ci, errno, now);
        } else if self.current(ci, generation, ConnState::Open) {
            self.fail(ci, ErrorKind::from_errno(errno, ErrorKind::Read), now);
        }
    }
}
