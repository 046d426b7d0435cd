//! What the shard does with each completion: connects, receives (parsing
//! responses in order), send failures, and replacing a failed connection.

use io_uring::{cqueue, opcode, types};

use super::conn::ConnState;
use super::shard::{OP_CONNECT, OP_RECV, OP_SEND, OP_SEND_SKIP, Shard, split_user_data, user_data};
use super::sock::tcp_socket;
use crate::stats::ErrorKind;

const BACKOFF_MIN_NS: u64 = 10_000_000;
const BACKOFF_MAX_NS: u64 = 1_000_000_000;

enum Delivered {
    More,
    ServerClose,
    Error(ErrorKind),
}

impl Shard<'_> {
    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough to spread reconnects.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn open(&mut self, ci: usize) {
        if self.stopping {
            return;
        }
        let fd = match tcp_socket(self.addr.family) {
            Ok(fd) => fd,
            Err(_) => {
                // Out of descriptors or ports: a connect error, back off.
                self.stats.errors.connect += 1;
                self.backoff(ci);
                return;
            }
        };
        let now = self.now;
        let c = &mut self.conns[ci];
        c.fd = fd;
        c.state = ConnState::Connecting;
        c.connect_started = now;
        let ud = user_data(ci, c.generation, OP_CONNECT);
        let entry = opcode::Connect::new(types::Fd(fd), self.addr.as_ptr(), self.addr.len)
            .build()
            .user_data(ud);
        self.ops_in_flight += 1;
        self.push(entry);
    }

    pub(super) fn backoff(&mut self, ci: usize) {
        let r = self.next_random();
        let c = &mut self.conns[ci];
        c.reset();
        c.failures = c.failures.saturating_add(1);
        let base = (BACKOFF_MIN_NS << (c.failures - 1).min(7)).min(BACKOFF_MAX_NS);
        // Full jitter in [base/2, base): connections that failed together do
        // not retry together.
        let delay = base / 2 + r % (base / 2).max(1);
        c.state = ConnState::Backoff;
        c.retry_at = self.now + delay;
    }

    pub(super) fn arm_recv(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        let ud = user_data(ci, c.generation, OP_RECV);
        let entry = opcode::RecvMulti::new(types::Fd(c.fd), self.bufs.bgid)
            .build()
            .user_data(ud);
        self.ops_in_flight += 1;
        self.push(entry);
    }

    pub(super) fn complete(&mut self, ud: u64, res: i32, flags: u32) {
        let (ci, generation, op) = split_user_data(ud);
        let more = op == OP_RECV && cqueue::more(flags);
        if !more && op != OP_SEND_SKIP {
            self.ops_in_flight = self.ops_in_flight.saturating_sub(1);
        }
        let bid = cqueue::buffer_select(flags);
        let current = self
            .conns
            .get(ci)
            .is_some_and(|c| c.generation & 0x00ff_ffff == generation && c.fd >= 0);
        if !current {
            // A completion for a socket we already replaced.
            if let Some(bid) = bid {
                self.bufs.recycle(bid);
            }
            return;
        }
        match op {
            OP_CONNECT => self.on_connect(ci, res),
            OP_RECV => self.on_recv(ci, res, bid, more),
            OP_SEND | OP_SEND_SKIP => self.on_send(ci, res),
            _ => {}
        }
    }

    pub(super) fn on_connect(&mut self, ci: usize, res: i32) {
        if res < 0 {
            self.stats.errors.connect += 1;
            self.backoff(ci);
            return;
        }
        let c = &mut self.conns[ci];
        if c.ever_connected {
            self.stats.reconnects += 1;
        }
        c.ever_connected = true;
        c.failures = 0;
        c.state = ConnState::Open;
        self.arm_recv(ci);
        self.fill(ci);
    }

    pub(super) fn on_send(&mut self, ci: usize, res: i32) {
        // MSG_WAITALL makes any non-negative result a complete send.
        if res < 0 {
            self.fail(ci, reset_or(res, ErrorKind::Write));
            return;
        }
        let c = &mut self.conns[ci];
        c.send_busy = false;
        if c.queued > 0 {
            self.send(ci);
        }
    }

    pub(super) fn on_recv(&mut self, ci: usize, res: i32, bid: Option<u16>, more: bool) {
        if res > 0 {
            let Some(bid) = bid else {
                self.fail(ci, ErrorKind::Read);
                return;
            };
            let len = res as usize;
            self.stats.bytes_read += len as u64;
            let outcome = self.deliver(ci, bid, len);
            self.bufs.recycle(bid);
            match outcome {
                Delivered::More => {}
                Delivered::ServerClose => {
                    self.replace(ci);
                    return;
                }
                Delivered::Error(f) => {
                    self.fail(ci, f);
                    return;
                }
            }
            self.fill(ci);
        } else if res == 0 {
            self.on_eof(ci);
            return;
        } else if res == -libc::ENOBUFS {
            // Every buffer is waiting to be parsed; they are recycled before
            // the next enter, so re-arming is enough.
        } else {
            if let Some(bid) = bid {
                self.bufs.recycle(bid);
            }
            self.fail(ci, reset_or(res, ErrorKind::Read));
            return;
        }
        if !more {
            self.arm_recv(ci);
        }
    }

    /// Parses what arrived, completing responses in order.
    fn deliver(&mut self, ci: usize, bid: u16, len: usize) -> Delivered {
        let data = self.bufs.get(bid, len);
        let c = &mut self.conns[ci];
        let now = self.now;
        let open_loop = self.open_loop.is_some();
        let mut off = 0;
        while off < data.len() {
            if c.inflight == 0 {
                // Bytes nobody asked for.
                return Delivered::Error(ErrorKind::Parse);
            }
            let head = self.scenario.is_head(c.oldest_which());
            match c.parser.parse(&data[off..], head) {
                Ok((n, resp)) => {
                    off += n;
                    match resp {
                        Some(r) => {
                            let popped = c.pop_oldest();
                            self.outstanding -= 1;
                            self.stats
                                .record_completion(open_loop, now, r.status, popped);
                            if r.close {
                                return Delivered::ServerClose;
                            }
                        }
                        None if n == 0 => return Delivered::Error(ErrorKind::Parse),
                        None => {}
                    }
                }
                Err(_) => return Delivered::Error(ErrorKind::Parse),
            }
        }
        Delivered::More
    }

    pub(super) fn on_eof(&mut self, ci: usize) {
        match self.conns[ci].parser.eof() {
            Ok(Some(r)) => {
                let popped = self.conns[ci].pop_oldest();
                self.outstanding -= 1;
                let open_loop = self.open_loop.is_some();
                self.stats
                    .record_completion(open_loop, self.now, r.status, popped);
                self.replace(ci);
            }
            // An idle keep-alive connection closed by the server: normal.
            Ok(None) if self.conns[ci].inflight == 0 => self.replace(ci),
            Ok(None) | Err(_) => self.fail(ci, ErrorKind::Closed),
        }
    }

    /// The oldest in-flight request failed with `f`; the connection is
    /// replaced and the requests behind it are sent again on the new one.
    pub(super) fn fail(&mut self, ci: usize, f: ErrorKind) {
        self.stats.errors.add(f);
        if self.conns[ci].inflight > 0 {
            let (_, _, which) = self.conns[ci].pop_oldest();
            self.stats.request_failed(which, f);
            self.outstanding -= 1;
            self.stats.note_error();
        }
        self.replace(ci);
    }

    /// Closes the connection and opens a new one. Its unanswered requests
    /// are sent again: in closed loop they go back to the quota; in open
    /// loop they keep their intended send times (so their delay counts).
    pub(super) fn replace(&mut self, ci: usize) {
        let sent = self.conns[ci].inflight as u64;
        if let Some(ol) = self.open_loop.as_mut() {
            // Oldest last, so `retry.pop()` sends the oldest first.
            let start = ol.retry.len();
            ol.retry.extend(self.conns[ci].pending_intended());
            ol.retry[start..].reverse();
            self.conns[ci].reset();
        } else {
            let lost = self.conns[ci].reset() as u64;
            self.outstanding -= lost;
            if let Some(q) = &mut self.quota {
                *q += lost;
            }
        }
        self.stats.reissued += sent;
        self.open(ci);
    }
}

/// A peer reset is its own error kind; other errors are `otherwise`.
fn reset_or(res: i32, otherwise: ErrorKind) -> ErrorKind {
    if res == -libc::ECONNRESET || res == -libc::EPIPE {
        ErrorKind::Reset
    } else {
        otherwise
    }
}
