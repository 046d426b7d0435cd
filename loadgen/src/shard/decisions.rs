//! What the core decides between events: opening and replacing
//! connections with backoff, filling and sending batches, delivering bytes
//! to the parser and accounting for what came back, failures and re-issues,
//! and the request timers.

use super::conn::{ConnState, SendFrom};
use super::request_log::Completed;
use super::{Action, BACKOFF_MAX_NS, BACKOFF_MIN_NS, Core, Delivered};
use crate::stats::ErrorKind;

/// What came back for a completed request: its status (0: none), a gRPC
/// call's status code, when its response began, and its body's length.
#[derive(Clone, Copy)]
pub(super) struct Answer {
    pub status: u16,
    pub grpc: Option<u8>,
    pub first_byte: Option<u64>,
    pub bytes: u64,
}

impl Core<'_> {
    /// The core's bookkeeping agrees with its slots (tests call it after
    /// every step).
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let opening = self.conns.iter().filter(|c| c.state.is_opening()).count();
        assert_eq!(self.opening as usize, opening, "slots opening");
        let open = self.conns.iter().filter(|c| c.state == ConnState::Open);
        assert_eq!(self.open as usize, open.count(), "slots open");
        let held: u64 = self.conns.iter().map(|c| c.slots.held() as u64).sum();
        assert!(
            held <= self.outstanding,
            "{held} held, {} outstanding",
            self.outstanding
        );
    }

    /// Moves slot `ci` to `state`, keeping count of the slots opening and
    /// open.
    pub(super) fn set_state(&mut self, ci: usize, state: ConnState) {
        let c = &mut self.conns[ci];
        let (was, was_open) = (c.state.is_opening(), c.state == ConnState::Open);
        c.state = state;
        match (was, state.is_opening()) {
            (false, true) => self.opening += 1,
            (true, false) => self.opening -= 1,
            _ => {}
        }
        match (was_open, state == ConnState::Open) {
            (false, true) => self.open += 1,
            (true, false) => self.open -= 1,
            _ => {}
        }
    }

    /// Whether an event of `generation` is about the slot's current socket
    /// in `state` (anything else is stale: a socket already replaced).
    #[inline]
    pub(super) fn current(&self, ci: usize, generation: u32, state: ConnState) -> bool {
        self.conns
            .get(ci)
            .is_some_and(|c| c.is(generation) && c.state == state)
    }

    /// Whether the slot's socket of `generation` is connected (open, or
    /// in its TLS handshake).
    #[inline]
    pub(super) fn live(&self, ci: usize, generation: u32) -> bool {
        self.conns.get(ci).is_some_and(|c| {
            c.is(generation) && matches!(c.state, ConnState::Open | ConnState::Handshaking)
        })
    }

    pub(super) fn next_random(&mut self) -> u64 {
        // xorshift64*: enough to spread reconnects.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn open(&mut self, ci: usize, now: u64) {
        if self.stopping {
            return;
        }
        self.set_state(ci, ConnState::Connecting);
        let c = &mut self.conns[ci];
        c.connect_started = now;
        self.actions.push(Action::Connect {
            conn: ci as u32,
            generation: c.generation,
            source: c.source,
        });
    }

    /// Drops the slot's socket (if it has one) and everything on it;
    /// returns how many requests were in flight or queued.
    pub(super) fn close_socket(&mut self, ci: usize, now: u64) -> u32 {
        self.forget_h3(ci, now);
        let c = &mut self.conns[ci];
        if c.state.has_socket() {
            self.actions.push(Action::Close {
                conn: ci as u32,
                generation: c.generation,
            });
        }
        c.reset()
    }

    /// The slot's connect or handshake failed: it retries after a
    /// jittered, growing delay.
    pub(super) fn backoff(&mut self, ci: usize, now: u64) {
        self.down_since.get_or_insert(now);
        let r = self.next_random();
        self.close_socket(ci, now);
        let c = &mut self.conns[ci];
        c.failures = c.failures.saturating_add(1);
        let base = (BACKOFF_MIN_NS << (c.failures - 1).min(7)).min(BACKOFF_MAX_NS);
        // Full jitter in [base/2, base): connections that failed together do
        // not retry together.
        let delay = base / 2 + r % (base / 2).max(1);
        c.retry_at = now + delay;
        self.set_state(ci, ConnState::Backoff);
    }

    /// Closed loop: sends the next batch of up to `depth` requests once the
    /// previous batch is fully answered (wrk's pipelining: one write per
    /// batch). Open loop: nothing; `dispatch` sends on schedule.
    ///
    /// On loopback each send costs a full trip through the TCP stack on
    /// the client's CPU. Topping the pipeline up one request per response
    /// cost 10.4 µs/request at depth 16 (wrk: 7.3); refilling at half
    /// depth, 7.2; whole batches, 6.6 with 3 % more throughput from the
    /// server, which also reads whole batches (BENCHMARKS.md).
    ///
    /// HTTP/2 streams are independent, so each ended stream gets a new
    /// request at once (h2load's `-m`); sends still batch, as the core
    /// fills once per received buffer, not per response.
    pub(super) fn fill(&mut self, ci: usize, now: u64) {
        let batches = self.h3.is_none() && self.conns[ci].h2.is_none();
        let c = &mut self.conns[ci];
        if self.open_loop.is_some()
            || c.state != ConnState::Open
            || self.stopping
            || (batches && c.slots.held() > 0)
        {
            return;
        }
        for _ in 0..c.free_slots() {
            match &mut self.quota {
                Some(0) => break,
                Some(q) => *q -= 1,
                None => {}
            }
            c.slots.queue(0);
            self.outstanding += 1;
        }
        if c.slots.queued > 0 && c.can_send() {
            self.send(ci, now);
        }
    }

    /// Hands the slot's queued requests to the engine as one send.
    pub(super) fn send(&mut self, ci: usize, now: u64) {
        if self.conns[ci].h2.is_some() {
            self.send_h2(ci, now);
            return;
        }
        if self.conns[ci].h3.is_some() {
            self.send_h3(ci, now);
            return;
        }
        let c = &mut self.conns[ci];
        let n = c.slots.queued;
        if let (Some(sg), Some(cg)) = (&mut self.generator, &mut c.generator) {
            // With TLS `out` holds plaintext, which rustls copies at once;
            // without, see `send_bytes` for why it is free to rewrite.
            // The previous send from `out` is done: sends without ack happen
            // only with nothing in flight, and otherwise `send_busy` holds
            // this one back until the last is acked.
            let now_ms = self.wall_epoch_ms + now / 1_000_000;
            let out = &mut c.out;
            out.clear();
            let scenario = self.scenario;
            c.slots
                .assign_queued(|_| scenario.render(sg, cg, now_ms, out));
            c.send_len = c.out.len();
            c.send_from = SendFrom::Out;
        } else {
            c.send_len = n as usize * self.req_len;
            c.send_from = SendFrom::Fixed;
        }
        if c.slots.mark_sent() {
            self.stamp_list.push(ci as u32);
        }
        if let Some(s) = &mut c.tls {
            let plain = if c.generator.is_some() {
                &c.out[..]
            } else {
                &self.reqs[..c.send_len]
            };
            s.write_plain(plain);
            self.flush_tls(ci);
            return;
        }
        let ack = !self.silent_sends;
        c.send_busy = ack;
        self.stats.bytes_written += c.send_len as u64;
        self.actions.push(Action::Send {
            conn: ci as u32,
            generation: c.generation,
            ack,
        });
    }

    /// Sends what the connection's protocol layers have waiting: HTTP/2
    /// frames, TLS records.
    pub(super) fn flush(&mut self, ci: usize) {
        if self.conns[ci].h3.is_some() {
            // HTTP/3 sends when its connection is driven (`drive_h3`).
            return;
        }
        if self.conns[ci].h2.is_some() {
            self.flush_h2(ci);
        } else {
            self.flush_tls(ci);
        }
    }

    /// Parses what arrived, completing responses in order (HTTP/1.1), or
    /// reads the frames (HTTP/2).
    pub(super) fn deliver(&mut self, ci: usize, data: &[u8], now: u64) -> Delivered {
        if self.conns[ci].h2.is_some() {
            return self.deliver_h2(ci, data, now);
        }
        let mut off = 0;
        while off < data.len() {
            let c = &self.conns[ci];
            if c.slots.inflight == 0 {
                // Bytes nobody asked for.
                return Delivered::Error(ErrorKind::Parse);
            }
            if c.parser.is_idle()
                && c.slots.oldest_sent_at().is_some()
                && let Some(oldest) = c.slots.oldest()
            {
                // The first byte of the oldest request's response.
                self.first_byte(ci, oldest, now);
            }
            let c = &mut self.conns[ci];
            let head = self.scenario.is_head(c.slots.oldest_which());
            match c.parser.parse(&data[off..], head) {
                Ok((n, resp)) => {
                    off += n;
                    match resp {
                        Some(r) => {
                            let first_byte =
                                c.slots.oldest().and_then(|s| c.slots.first_byte_at(s));
                            let popped = c.slots.pop_oldest();
                            let answer = Answer {
                                status: r.status,
                                first_byte,
                                bytes: r.body_len,
                                grpc: None,
                            };
                            self.complete(ci, answer, popped, now);
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

    /// The first byte of the response to the request in `slot` of
    /// connection `ci` arrived: kept for the request log, and its time to
    /// first byte recorded (HTTP/1.1, HTTP/2 and HTTP/3 alike).
    #[inline]
    pub(super) fn first_byte(&mut self, ci: usize, slot: u32, now: u64) {
        let slots = &mut self.conns[ci].slots;
        let sent = slots.sent_at(slot);
        slots.note_first_byte(slot, now);
        self.stats
            .ttfb
            .saturating_record((now.saturating_sub(sent) / 1000).max(1));
    }

    /// Books a response to a request popped off connection `ci`.
    #[inline]
    pub(super) fn complete(&mut self, ci: usize, a: Answer, popped: (u64, u64, u16), now: u64) {
        self.outstanding -= 1;
        self.last_completion = now;
        // A moving average over about the last 16 responses.
        let latency = now.saturating_sub(popped.0) as i64;
        let recent = self.recent_latency_ns as i64;
        self.recent_latency_ns = (recent + (latency - recent) / 16) as u64;
        let open_loop = self.open_loop.is_some();
        self.stats
            .record_completion(open_loop, now, (a.status, a.grpc), popped);
        self.log_completed(ci, popped, now, a, None);
    }

    /// `--request-log`: the line of a request that completed at `now`
    /// (answered, or failed with `error`), measured as the stats measure
    /// it: nothing from the warm-up.
    #[inline]
    fn log_completed(
        &mut self,
        ci: usize,
        (sent, intended, which): (u64, u64, u16),
        now: u64,
        a: Answer,
        error: Option<ErrorKind>,
    ) {
        if let Some(log) = &mut self.log
            && !self.warming
        {
            log.record(Completed {
                conn: ci as u32,
                // A request that failed before it left: from its failure.
                sent: sent.min(now),
                intended,
                first_byte: a.first_byte,
                now,
                status: a.status,
                grpc: a.grpc,
                bytes: a.bytes,
                error,
                which,
            });
        }
    }

    /// The oldest in-flight request failed with `kind`; the connection is
    /// replaced and the requests behind it are sent again on the new one.
    pub(super) fn fail(&mut self, ci: usize, kind: ErrorKind, now: u64) {
        match self.conns[ci].slots.oldest() {
            Some(slot) => self.request_failed(ci, slot, kind, now),
            None => self.stats.errors.add(kind),
        }
        self.replace(ci, now);
    }

    /// The request in `slot` of connection `ci` failed with `kind`.
    pub(super) fn request_failed(&mut self, ci: usize, slot: u32, kind: ErrorKind, now: u64) {
        self.stats.errors.add(kind);
        let slots = &mut self.conns[ci].slots;
        let first_byte = slots.first_byte_at(slot);
        let popped = slots.pop(slot);
        self.stats.request_failed(popped.2, kind);
        self.outstanding -= 1;
        self.last_completion = now;
        self.stats.note_error();
        let failed = Answer {
            status: 0,
            grpc: None,
            first_byte,
            bytes: 0,
        };
        self.log_completed(ci, popped, now, failed, Some(kind));
    }

    /// Requests of connection `ci` that will be sent again: the one in
    /// `only`, or all it holds (the caller then closes it). In closed loop
    /// they go back to the quota; in open loop they keep their intended
    /// send times (so their delay counts).
    pub(super) fn give_back(&mut self, ci: usize, only: Option<u32>) {
        let sent = self.take_back(ci, only);
        self.stats.reissued += sent;
    }

    /// [`Core::give_back`] without counting the requests as sent again:
    /// for a request that never left (no stream could be opened for it).
    /// Returns how many were counted as in flight.
    pub(super) fn take_back(&mut self, ci: usize, only: Option<u32>) -> u64 {
        let slots = &mut self.conns[ci].slots;
        let (sent, held) = match only {
            Some(slot) => {
                let (_, intended, _) = slots.pop(slot);
                if let Some(ol) = self.open_loop.as_mut() {
                    ol.requeue(std::iter::once(intended));
                }
                (1, 1)
            }
            None => {
                if let Some(ol) = self.open_loop.as_mut() {
                    ol.requeue(slots.pending_intended());
                }
                (slots.inflight as u64, slots.held() as u64)
            }
        };
        if self.open_loop.is_none() {
            self.outstanding -= held;
            if let Some(q) = &mut self.quota {
                *q += held;
            }
        }
        sent
    }

    /// Closes the connection and opens a new one; its unanswered requests
    /// are sent again ([`Core::give_back`]).
    pub(super) fn replace(&mut self, ci: usize, now: u64) {
        self.give_back(ci, None);
        self.close_socket(ci, now);
        let retries = self.open_loop.as_ref().is_some_and(|ol| ol.has_retries());
        let depth = self.conns[ci].slots.depth() as u64;
        if let Some(q) = self.quota
            && q <= self.opening as u64 * depth
            && !retries
        {
            // `-n` has handed out every request but those the connections
            // already opening will carry: another would carry nothing
            // (with --no-keepalive, it would only add a handshake).
            self.set_state(ci, ConnState::Closed);
            return;
        }
        self.open(ci, now);
    }

    /// Request timeouts, connect timeouts, and reconnects after backoff.
    pub(super) fn check_timers(&mut self, now: u64) {
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            match c.state {
                ConnState::Open => {
                    if c.slots
                        .oldest_sent_at()
                        .is_some_and(|t| now.saturating_sub(t) > self.timeout_ns)
                    {
                        if c.h2.is_some() {
                            self.h2_timeouts(ci, now);
                        } else if c.h3.is_some() {
                            self.h3_timeouts(ci, now);
                        } else {
                            self.fail(ci, ErrorKind::Timeout, now);
                        }
                    }
                }
                ConnState::Connecting => {
                    if now.saturating_sub(c.connect_started) > self.timeout_ns {
                        self.stats.errors.connect += 1;
                        self.backoff(ci, now);
                    }
                }
                ConnState::Handshaking => {
                    if now.saturating_sub(c.handshake_started) > self.timeout_ns {
                        if let Some(t) = &mut self.stats.tls {
                            t.errors.timeout += 1;
                        }
                        self.backoff(ci, now);
                    }
                }
                ConnState::Backoff => {
                    if now >= c.retry_at {
                        self.open(ci, now);
                    }
                }
                ConnState::Closed => {}
            }
        }
    }
}
