//! The core's side of HTTP/3 (`--http3`, issue 27): each slot's QUIC connection on the
//! shard's endpoint ([`Quic`]), requests on its streams as HTTP/2 puts them
//! on its streams, and what comes back. The engine's side is a connected
//! UDP socket per slot: [`Action::Send`] of [`Core::send_bytes`] as
//! datagrams of [`Core::segment_size`] bytes (one GSO send), and
//! [`Core::on_datagrams`] for what arrives.
//!
//! After every touch of a connection, [`Core::drive_h3`] passes its
//! endpoint events on, reads its events, fills its free slots, sends what
//! QUIC has when no send is in flight, and re-arms its timer.

use std::time::Instant;

use bytes::Bytes;

use super::conn::{ConnState, SendFrom};
use super::decisions::Answer;
use super::quic::Quic;
use super::{Action, Core};
use crate::http::h2::hpack::RequestFields;
use crate::http::h3::{self, Event, qpack};
use crate::scenario::Scenario;
use crate::stats::ErrorKind;
use crate::tls::Failure;

/// What a shard needs to put requests on HTTP/3 streams.
pub(super) struct H3Requests {
    pub quic: Quic,
    /// The request's HEADERS (and DATA) frames when it never varies: built
    /// once, shared by every stream.
    fixed: Option<Bytes>,
    /// A templated request rendered as HTTP/1.1, then its fields.
    rendered: Vec<u8>,
    fields: RequestFields,
    events: Vec<Event>,
    /// Slots whose stream could not open, and whose rendered request
    /// HTTP/3 could not carry.
    refused: Vec<u32>,
    unwritable: Vec<u32>,
    max_field_section: usize,
}

/// The frames of a request: HEADERS, and DATA with the body if any.
fn request_frames(fields: &RequestFields, body: &[u8]) -> Bytes {
    let mut out = Vec::new();
    qpack::request_frame(fields.iter(), &mut out);
    if !body.is_empty() {
        h3::write_frame_header(h3::frame_type::DATA, body.len() as u64, &mut out);
        out.extend_from_slice(body);
    }
    Bytes::from(out)
}

impl H3Requests {
    pub fn new(scenario: &Scenario, quic: Quic, max_field_section: usize) -> H3Requests {
        let mut fields = RequestFields::new();
        // A fixed request was rendered from a checked spec: it parses.
        let fixed = scenario.fixed_bytes().and_then(|bytes| {
            let head_len = fields.from_http1(bytes, b"https").ok()?;
            Some(request_frames(&fields, &bytes[head_len..]))
        });
        H3Requests {
            quic,
            fixed,
            rendered: Vec::with_capacity(scenario.max_request_len()),
            fields,
            events: Vec::new(),
            refused: Vec::new(),
            unwritable: Vec::new(),
            max_field_section,
        }
    }
}

/// A QUIC connection lost in its handshake, as TLS's [`Failure`] when TLS
/// failed: our verifier refused the certificate (quinn-proto keeps only
/// rustls's message, `invalid peer certificate: …`), or the server closed
/// with a TLS alert (0x100 + alert). `None`: not TLS's doing.
fn handshake_failure(e: &quinn_proto::ConnectionError) -> Option<Failure> {
    use quinn_proto::ConnectionError as E;
    let crypto = |code: quinn_proto::TransportErrorCode| {
        let n = u64::from(code);
        (0x100..0x200).contains(&n).then_some(n as u8)
    };
    match e {
        E::TransportError(t) => {
            crypto(t.code)?;
            Some(match t.reason.strip_prefix("invalid peer certificate: ") {
                Some(why) => Failure::Cert(why.to_string()),
                None => Failure::Protocol(t.reason.clone()),
            })
        }
        E::ConnectionClosed(c) => {
            let alert = crypto(c.error_code)?;
            Some(Failure::Alert(format!(
                "{:?}",
                rustls::AlertDescription::from(alert)
            )))
        }
        _ => None,
    }
}

impl Core<'_> {
    /// The slot's UDP socket is connected (instant: nothing was sent):
    /// start QUIC. With a ticket for 0-RTT the connection takes requests
    /// at once, else after the handshake.
    pub(super) fn connect_h3(&mut self, ci: usize, now: u64) {
        let depth = self.conns[ci].slots.depth() as usize;
        let generation = self.conns[ci].generation;
        let Some(req) = self.h3.as_mut() else {
            return;
        };
        match req.quic.connect(ci as u32, generation, now) {
            Ok((h, quic)) => {
                let zero_rtt = quic.has_0rtt();
                let conn = h3::Connection::new(quic, depth, req.max_field_section);
                let c = &mut self.conns[ci];
                c.h3 = Some((h, Box::new(conn)));
                c.quic_counted = h3::PacketCounts::default();
                c.handshake_started = now;
                self.set_state(ci, ConnState::Handshaking);
                if zero_rtt {
                    self.ready(ci, now);
                }
                self.drive_h3(ci, now);
            }
            // A config quinn refuses (no server name it takes): no retry
            // heals it.
            Err(_) => {
                self.fatal = true;
                self.set_state(ci, ConnState::Handshaking);
                self.handshake_lost(ci, now);
            }
        }
    }

    /// Datagrams arrived on slot `conn`'s socket: `payload` holds them back
    /// to back, each `segment` bytes but the last (UDP_GRO; one datagram
    /// when `segment` is its length).
    pub fn on_datagrams(
        &mut self,
        conn: u32,
        generation: u32,
        payload: &[u8],
        segment: usize,
        now: u64,
    ) {
        let ci = conn as usize;
        if !self.live(ci, generation) {
            return;
        }
        self.stats.bytes_read += payload.len() as u64;
        if let Some(q) = self.stats.quic.as_mut() {
            q.add_receive(payload.len(), segment);
        }
        self.conns[ci].last_recv = now;
        let (Some(req), Some((h, c))) = (self.h3.as_mut(), self.conns[ci].h3.as_mut()) else {
            return;
        };
        let retries = req.quic.receive(*h, c.quic_mut(), payload, segment, now);
        if let Some(q) = self.stats.quic.as_mut() {
            q.retries += retries;
        }
        self.drive_h3(ci, now);
    }

    /// The segment size of slot `conn`'s last send: its bytes are datagrams
    /// of this size, the last possibly shorter.
    #[inline]
    pub fn segment_size(&self, conn: u32) -> usize {
        self.conns[conn as usize].h3_segment
    }

    /// Everything a touch of slot `ci`'s connection may have started: see
    /// the module docs.
    pub(super) fn drive_h3(&mut self, ci: usize, now: u64) {
        let generation = self.conns[ci].generation;
        let Some(req) = self.h3.as_mut() else {
            return;
        };
        let Some((h, conn)) = self.conns[ci].h3.as_mut() else {
            return;
        };
        req.quic.endpoint_events(*h, conn.quic_mut());
        let mut events = std::mem::take(&mut req.events);
        let polled = conn.poll(req.quic.at(now), &mut events);
        for e in events.drain(..) {
            if !self.conns[ci].is(generation) {
                break;
            }
            self.on_h3_event(ci, e, now);
        }
        if let Some(req) = self.h3.as_mut() {
            req.events = events;
        }
        if !self.conns[ci].is(generation) || self.conns[ci].h3.is_none() {
            return;
        }
        if let Err(e) = polled {
            // Closed with the error's code; the requests on it go again.
            if let Some(q) = self.stats.quic.as_mut() {
                q.add_error(h3::application_code_name(e.code()));
            }
            self.fail(ci, ErrorKind::Protocol, now);
            return;
        }
        let c = &self.conns[ci];
        if c.h3.as_ref().is_some_and(|(_, h)| h.is_draining()) && c.slots.held() == 0 {
            // GOAWAY, and nothing left to wait for on this connection.
            self.replace(ci, now);
            return;
        }
        if self.conns[ci].state == ConnState::Open {
            self.fill(ci, now);
        }
        self.flush_h3(ci, now);
    }

    fn on_h3_event(&mut self, ci: usize, e: Event, now: u64) {
        match e {
            Event::Connected { zero_rtt } => {
                if let Some(q) = self.stats.quic.as_mut() {
                    q.handshakes += 1;
                    q.zero_rtt_attempted += u64::from(zero_rtt.is_some());
                    q.zero_rtt_accepted += u64::from(zero_rtt == Some(true));
                }
                let c = &self.conns[ci];
                if let Some(t) = &mut self.stats.tls {
                    // QUIC v1 is TLS 1.3 (RFC 9001), and the handshake
                    // succeeds only with ALPN h3, the one we offer.
                    t.version.get_or_insert("1.3");
                    t.alpn.get_or_insert_with(|| "h3".into());
                    t.handshakes += 1;
                    t.resumed += u64::from(zero_rtt.is_some());
                    t.handshake
                        .saturating_record((now.saturating_sub(c.handshake_started) / 1000).max(1));
                }
                if c.state == ConnState::Handshaking {
                    self.ready(ci, now);
                }
            }
            Event::FirstByte { slot } => self.first_byte(ci, slot, now),
            Event::Complete { slot, status, body } => {
                let c = &mut self.conns[ci];
                if let (Some(q), Some((_, conn))) = (self.stats.quic.as_mut(), c.h3.as_ref()) {
                    let rtt_us = conn.quic().rtt().as_micros() as u64;
                    q.rtt.saturating_record(rtt_us.max(1));
                }
                let first_byte = c.slots.first_byte_at(slot);
                let popped = c.slots.pop(slot);
                let answer = Answer {
                    status,
                    grpc: None,
                    first_byte,
                    bytes: body,
                };
                self.complete(ci, answer, popped, now);
            }
            Event::Reset { slot, .. } => self.request_failed(ci, slot, ErrorKind::StreamReset, now),
            Event::Malformed { slot, .. } => self.request_failed(ci, slot, ErrorKind::Parse, now),
            Event::Unprocessed { slot } => self.give_back(ci, Some(slot)),
            Event::Available => {}
            Event::Lost(reason) => {
                if let Some(q) = self.stats.quic.as_mut() {
                    q.add_error(h3::error_name(&reason));
                }
                let kind = match reason {
                    quinn_proto::ConnectionError::TimedOut => ErrorKind::Timeout,
                    _ => ErrorKind::Closed,
                };
                if reason == quinn_proto::ConnectionError::VersionMismatch {
                    // No retry speaks another version: quinn-proto has only
                    // QUIC version 1 (and drafts).
                    if let Some(q) = self.stats.quic.as_mut() {
                        q.refused.get_or_insert_with(|| {
                            "the server answered with version negotiation: it speaks no QUIC version loadgen does (only version 1)".into()
                        });
                    }
                    self.fatal = true;
                }
                if self.conns[ci].state == ConnState::Handshaking {
                    match handshake_failure(&reason) {
                        Some(f) => self.tls_failed(ci, f, now),
                        None => self.handshake_lost(ci, now),
                    }
                } else if self.conns[ci].slots.inflight == 0 {
                    self.replace(ci, now);
                } else {
                    self.fail(ci, kind, now);
                }
            }
        }
    }

    /// Opens a stream for each queued request of slot `ci`'s connection.
    pub(super) fn send_h3(&mut self, ci: usize, now: u64) {
        let (Some(req), c) = (self.h3.as_mut(), &mut self.conns[ci]) else {
            return;
        };
        let Some((_, conn)) = c.h3.as_mut() else {
            return;
        };
        let now_ms = self.wall_epoch_ms + now / 1_000_000;
        let (scenario, generator, cg) = (self.scenario, &mut self.generator, &mut c.generator);
        req.refused.clear();
        req.unwritable.clear();
        c.slots.assign_queued(|slot| {
            let (frames, which) = match (&req.fixed, generator.as_mut(), cg.as_mut()) {
                (Some(fixed), _, _) => (fixed.clone(), 0),
                (None, Some(sg), Some(cg)) => {
                    req.rendered.clear();
                    let which = scenario.render(sg, cg, now_ms, &mut req.rendered);
                    match req.fields.from_http1(&req.rendered, b"https") {
                        Ok(head_len) => (
                            request_frames(&req.fields, &req.rendered[head_len..]),
                            which,
                        ),
                        Err(_) => {
                            req.unwritable.push(slot);
                            return which;
                        }
                    }
                }
                (None, _, _) => unreachable!("a templated scenario has generators"),
            };
            if !conn.open_stream(slot, &frames) {
                req.refused.push(slot);
            }
            which
        });
        if c.slots.mark_sent() {
            self.stamp_list.push(ci as u32);
        }
        // No stream free (the server's limit, or GOAWAY): back to the
        // quota; `Available` brings the next fill.
        while let Some(slot) = self.h3.as_mut().and_then(|r| r.refused.pop()) {
            self.take_back(ci, Some(slot));
        }
        while let Some(slot) = self.h3.as_mut().and_then(|r| r.unwritable.pop()) {
            self.request_failed(ci, slot, ErrorKind::Write, now);
        }
        self.flush_h3(ci, now);
    }

    /// Hands QUIC's next datagrams to the engine, unless a send is in
    /// flight (its ack sends the next), and re-arms the slot's timer.
    pub(super) fn flush_h3(&mut self, ci: usize, now: u64) {
        let (Some(req), c) = (self.h3.as_mut(), &mut self.conns[ci]) else {
            return;
        };
        let Some((_, conn)) = c.h3.as_mut() else {
            return;
        };
        if !c.send_busy
            && let Some(segment) = req.quic.transmit(conn.quic_mut(), now, &mut c.h3_out)
        {
            c.h3_segment = segment;
            c.send_from = SendFrom::H3;
            c.send_busy = true;
            self.stats.bytes_written += c.h3_out.len() as u64;
            if let Some(q) = self.stats.quic.as_mut() {
                q.add_send(c.h3_out.len(), segment);
            }
            self.actions.push(Action::Send {
                conn: ci as u32,
                generation: c.generation,
                ack: true,
            });
        }
        req.quic.arm(ci as u32, c.generation, conn.quic_mut());
    }

    /// Request timeouts on an HTTP/3 connection, as on HTTP/2's: a stream
    /// past its time is cancelled (RESET_STREAM and STOP_SENDING with
    /// H3_REQUEST_CANCELLED) and its request fails; the connection stays,
    /// unless nothing at all came from the server since that request left
    /// (then it is dead, and is replaced).
    pub(super) fn h3_timeouts(&mut self, ci: usize, now: u64) {
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
            if let Some((_, conn)) = self.conns[ci].h3.as_mut() {
                conn.cancel(slot);
            }
            self.request_failed(ci, slot, ErrorKind::Timeout, now);
            cancelled = true;
        }
        if cancelled && self.conns[ci].state == ConnState::Open {
            self.drive_h3(ci, now);
        }
    }

    /// QUIC timers due at `now` (loss detection, acks, idle, pacing).
    pub(super) fn h3_timers(&mut self, now: u64) {
        while let Some((slot, generation)) = self.h3.as_mut().and_then(|r| r.quic.expired(now)) {
            let ci = slot as usize;
            let at: Instant = match self.h3.as_ref() {
                Some(r) => r.quic.at(now),
                None => return,
            };
            let c = &mut self.conns[ci];
            if !c.is(generation) {
                continue;
            }
            if let Some((_, conn)) = c.h3.as_mut() {
                conn.quic_mut().handle_timeout(at);
                self.drive_h3(ci, now);
            }
        }
    }

    /// The slot's connection is dropped with its socket: the server is
    /// told (CONNECTION_CLOSE with H3_NO_ERROR, or the code of the HTTP/3
    /// error that closed it already), and the endpoint forgets it.
    ///
    /// The close is the socket's last send, without ack (the engine gives
    /// it a buffer of its own, as another send may be in flight), and
    /// nothing waits for it: the socket is closed right after. Before, the
    /// server was left to its idle timeout (30 s for quinn, 60 s for
    /// aioquic) for every connection the run replaced or ended.
    pub(super) fn forget_h3(&mut self, ci: usize, now: u64) {
        let c = &mut self.conns[ci];
        if let (Some(req), Some((_, conn))) = (self.h3.as_mut(), c.h3.as_mut()) {
            let code = quinn_proto::VarInt::from_u32(h3::code::H3_NO_ERROR as u32);
            let quic = conn.quic_mut();
            quic.close(req.quic.at(now), code, Bytes::new());
            if c.state.has_socket()
                && let Some(segment) = req.quic.transmit(quic, now, &mut c.h3_out)
            {
                c.h3_segment = segment;
                c.send_from = SendFrom::H3;
                // Not counted in the stats, as quinn-proto does not count
                // the packet (and the run's figures were published).
                self.actions.push(Action::Send {
                    conn: ci as u32,
                    generation: c.generation,
                    ack: false,
                });
            }
        }
        self.count_quic_packets_of(ci);
        if let (Some(req), Some((h, _))) = (self.h3.as_mut(), self.conns[ci].h3.as_ref()) {
            req.quic.forget(*h, ci as u32);
        }
    }

    /// Adds what slot `ci`'s QUIC connection sent and lost since last
    /// counted (quinn-proto keeps totals).
    fn count_quic_packets_of(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        if let (Some(q), Some((_, conn))) = (self.stats.quic.as_mut(), c.h3.as_ref()) {
            q.add_packets(&mut c.quic_counted, h3::PacketCounts::of(conn.quic()));
        }
    }

    /// [`Self::count_quic_packets_of`] every connection (the end of the
    /// warm-up: what they did so far is then forgotten).
    pub(super) fn count_quic_packets(&mut self) {
        if self.stats.quic.is_some() {
            for ci in 0..self.conns.len() {
                self.count_quic_packets_of(ci);
            }
        }
    }
}
