//! The core's side of HTTP/2 (`--http2`): which request goes on which
//! stream, what the server's answer on each stream means for the run, and
//! the frames out. A connection carries up to its stream limit of requests
//! at once, each in a slot of its own, finished in any order; everything
//! else (quota, timers, re-issue, stats) is the same as for HTTP/1.1.
//! The engines still only carry bytes.

use super::conn::{ConnState, SendFrom};
use super::decisions::Answer;
use super::{Action, Core, Delivered};
use crate::http::h2::hpack::{FixedRequest, RequestFields};
use crate::http::h2::{ConnError, Event, Head};
use crate::scenario::Scenario;
use crate::stats::ErrorKind;

/// What a shard needs to put requests on streams.
pub(super) struct H2Requests {
    /// The request when it never varies, encoded once, and its body.
    pub fixed: Option<(FixedRequest, Box<[u8]>)>,
    /// `http` or `https`, for `:scheme`.
    pub scheme: &'static str,
    /// A templated request rendered as HTTP/1.1, then its HTTP/2 fields.
    pub rendered: Vec<u8>,
    pub fields: RequestFields,
    /// A gRPC message rendered as JSON, encoded and framed.
    pub message: Vec<u8>,
    /// Slots whose stream could not open (no ids left).
    pub refused: Vec<u32>,
    /// Slots whose rendered request HTTP/2 could not carry.
    pub unwritable: Vec<u32>,
    /// Events of the bytes being read.
    pub events: Vec<Event>,
    /// Frames on their way into TLS.
    pub plain: Vec<u8>,
}

impl H2Requests {
    pub fn new(scenario: &Scenario, scheme: &'static str) -> H2Requests {
        let mut fields = RequestFields::new();
        // A fixed request was rendered from a checked spec: it parses.
        let fixed = scenario.fixed_bytes().and_then(|bytes| {
            let head_len = fields.from_http1(bytes, scheme.as_bytes()).ok()?;
            Some((
                FixedRequest::new(fields.iter()),
                bytes[head_len..].to_vec().into_boxed_slice(),
            ))
        });
        H2Requests {
            fixed,
            scheme,
            rendered: Vec::with_capacity(scenario.max_request_len()),
            message: Vec::new(),
            fields,
            refused: Vec::new(),
            unwritable: Vec::new(),
            events: Vec::new(),
            plain: Vec::new(),
        }
    }
}

impl Core<'_> {
    /// Opens a stream for each queued request of slot `ci`'s connection.
    pub(super) fn send_h2(&mut self, ci: usize, now: u64) {
        let (Some(req), Some(st)) = (self.h2.as_mut(), self.stats.h2.as_mut()) else {
            return;
        };
        let c = &mut self.conns[ci];
        let Some(conn) = c.h2.as_mut() else {
            return;
        };
        let now_ms = self.wall_epoch_ms + now / 1_000_000;
        let (scenario, generator, cg) = (self.scenario, &mut self.generator, &mut c.generator);
        req.refused.clear();
        req.unwritable.clear();
        c.slots.assign_queued(|slot| {
            match (&req.fixed, generator.as_mut(), cg.as_mut()) {
                (Some((fixed, body)), _, _) => {
                    if conn
                        .open_stream(slot, Head::Fixed(fixed), body, st)
                        .is_err()
                    {
                        req.refused.push(slot);
                    }
                    0
                }
                (None, Some(sg), Some(cg)) => {
                    req.rendered.clear();
                    let which = scenario.render(sg, cg, now_ms, &mut req.rendered);
                    match req.fields.from_http1(&req.rendered, req.scheme.as_bytes()) {
                        Ok(head_len) => {
                            let mut body = &req.rendered[head_len..];
                            if let Some(m) = &scenario.requests[which as usize].message {
                                req.message.clear();
                                // The first rendering was checked before
                                // the run; a later one (another feed row)
                                // may not fit the message type.
                                if m.encode(body, &mut req.message).is_err() {
                                    req.unwritable.push(slot);
                                    return which;
                                }
                                body = &req.message;
                            }
                            let head = Head::Fields(&req.fields);
                            if conn.open_stream(slot, head, body, st).is_err() {
                                req.refused.push(slot);
                            }
                        }
                        // A rendered value HTTP/2 cannot carry.
                        Err(_) => req.unwritable.push(slot),
                    }
                    which
                }
                (None, _, _) => unreachable!("a templated scenario has generators"),
            }
        });
        if c.slots.mark_sent() {
            self.stamp_list.push(ci as u32);
        }
        // No stream ids left for these: they go back, and the connection
        // (its capacity now 0) drains and is replaced.
        while let Some(slot) = self.h2.as_mut().and_then(|r| r.refused.pop()) {
            self.give_back(ci, Some(slot));
        }
        while let Some(slot) = self.h2.as_mut().and_then(|r| r.unwritable.pop()) {
            self.request_failed(ci, slot, ErrorKind::Write, now);
        }
        self.flush_h2(ci);
    }

    /// Hands the frames waiting to the engine (through TLS on `https://`),
    /// unless a send is in flight: its ack sends them.
    pub(super) fn flush_h2(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        let Some(conn) = c.h2.as_mut() else {
            return;
        };
        if let Some(s) = c.tls.as_mut() {
            if let Some(req) = self.h2.as_mut()
                && conn.has_output()
            {
                conn.take_output(&mut req.plain);
                s.write_plain(&req.plain);
            }
            self.flush_tls(ci);
            return;
        }
        if c.send_busy || !conn.has_output() {
            return;
        }
        conn.take_output(&mut c.h2_out);
        c.send_len = c.h2_out.len();
        c.send_from = SendFrom::H2;
        c.send_busy = true;
        self.stats.bytes_written += c.send_len as u64;
        self.actions.push(Action::Send {
            conn: ci as u32,
            generation: c.generation,
            ack: true,
        });
    }

    /// Reads what arrived on slot `ci`'s HTTP/2 connection and books what
    /// it says about each stream.
    pub(super) fn deliver_h2(&mut self, ci: usize, data: &[u8], now: u64) -> Delivered {
        let (Some(req), Some(st)) = (self.h2.as_mut(), self.stats.h2.as_mut()) else {
            return Delivered::More;
        };
        let Some(conn) = self.conns[ci].h2.as_mut() else {
            return Delivered::More;
        };
        let mut events = std::mem::take(&mut req.events);
        let read = conn.read(data, &mut events, st);
        for &e in &events {
            self.on_stream_event(ci, e, now);
        }
        events.clear();
        if let Some(req) = self.h2.as_mut() {
            req.events = events;
        }
        if let Err(e) = read {
            return Delivered::Error(self.h2_failed(e));
        }
        let c = &self.conns[ci];
        if c.h2.as_ref().is_some_and(|h| h.is_draining()) && c.slots.held() == 0 {
            // GOAWAY (or no stream ids left) and nothing left to wait for.
            return Delivered::ServerClose;
        }
        Delivered::More
    }

    fn on_stream_event(&mut self, ci: usize, e: Event, now: u64) {
        match e {
            Event::FirstByte { slot } => self.first_byte(ci, slot, now),
            Event::Complete { slot, status, grpc } => {
                let c = &mut self.conns[ci];
                let first_byte = c.slots.first_byte_at(slot);
                let bytes = c.h2.as_ref().map_or(0, |h| h.body_received(slot));
                let popped = c.slots.pop(slot);
                // A gRPC call's answer has a gRPC status; a plain request's
                // on the same connection has none.
                let call = self.scenario.is_call(popped.2);
                let answer = Answer {
                    status,
                    grpc: call.then(|| crate::grpc::status::of_response(status, grpc)),
                    first_byte,
                    bytes,
                };
                self.complete(ci, answer, popped, now);
            }
            Event::Reset { slot, .. } => self.request_failed(ci, slot, ErrorKind::StreamReset, now),
            Event::Malformed { slot } => self.request_failed(ci, slot, ErrorKind::Parse, now),
            Event::Unprocessed { slot } => self.give_back(ci, Some(slot)),
            Event::Settings | Event::GoAway { .. } => {}
        }
    }

    /// The kind a connection error counts as. A server that answers the
    /// HTTP/2 preface in HTTP/1.1 will not change its mind: the run ends.
    fn h2_failed(&mut self, e: ConnError) -> ErrorKind {
        if e == ConnError::Http1 {
            self.fatal = true;
            if let Some(st) = self.stats.h2.as_mut() {
                st.refused.get_or_insert_with(|| e.to_string());
            }
        }
        ErrorKind::Protocol
    }

    /// Request timeouts on an HTTP/2 connection: a stream past its time is
    /// cancelled and its request fails; the connection stays, unless
    /// nothing at all came from the server since that request left (then
    /// it is dead, and is replaced as an HTTP/1.1 one would be).
    pub(super) fn h2_timeouts(&mut self, ci: usize, now: u64) {
        let mut cancelled = false;
        while let (Some(slot), Some(sent)) = (
            self.conns[ci].slots.oldest(),
            self.conns[ci].slots.oldest_sent_at(),
        ) && now.saturating_sub(sent) > self.timeout_ns
        {
            if self.conns[ci].last_recv <= sent {
                self.fail(ci, ErrorKind::Timeout, now);
                return;
            }
            let c = &mut self.conns[ci];
            if let (Some(conn), Some(st)) = (c.h2.as_mut(), self.stats.h2.as_mut()) {
                conn.cancel(slot, st);
            }
            self.request_failed(ci, slot, ErrorKind::Timeout, now);
            cancelled = true;
        }
        if cancelled && self.conns[ci].state == ConnState::Open {
            self.fill(ci, now);
            self.flush_h2(ci);
        }
    }
}
