//! The shard's QUIC endpoint (`--http3`, issue 27): one quinn-proto client
//! `Endpoint` for all the shard's connections, which slot (and socket
//! generation) each connection belongs to, and their timers on the shard's
//! clock. Sans-IO like the rest of the core: datagrams in as the engine
//! received them (a GRO batch whole, with its segment size), datagrams out
//! as one GSO send per call, time in ns since the shard started.
//!
//! The connections themselves live in their slots (`h3::Connection`, which
//! owns the `quinn_proto::Connection`); every method here takes the one it
//! works on. quinn-proto never reads the clock: `at(ns)` turns the shard's
//! time into the `Instant`s it wants, from one epoch.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quinn_proto::{ClientConfig, ConnectError, ConnectionHandle, DatagramEvent, Endpoint};

/// The most datagrams one send carries. quinn caps a transmit at 10
/// ("numbers around 10 are a good compromise"); the kernel takes up to 128
/// here (design note §1). Sends never exceed 65507 bytes either way.
const MAX_SEGMENTS: usize = 10;

pub(super) struct Quic {
    endpoint: Endpoint,
    config: ClientConfig,
    server_name: String,
    remote: SocketAddr,
    epoch: Instant,
    /// By `ConnectionHandle.0` (quinn's slab keys: small, reused): the slot
    /// and generation of the connection.
    owner: Vec<Option<(u32, u32)>>,
    /// Timer deadlines (ns), slot, generation; an entry is stale unless it
    /// matches `armed[slot]` (lazy deletion: re-arming only pushes).
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    armed: Vec<u64>,
    /// Datagrams the endpoint itself answered (stateless resets): a client
    /// does not send them.
    pub dropped_responses: u64,
}

/// No timer armed.
const NONE: u64 = u64::MAX;

/// A Retry packet (RFC 9000 §17.2.5): a long header (0x80, the fixed bit
/// 0x40) of type 0b11, and a version that is not 0 (0 is version
/// negotiation, whose first byte is arbitrary). Versions 1 and the drafts,
/// the only ones quinn-proto speaks, number the types alike.
fn is_retry(d: &[u8]) -> bool {
    d.len() > 5 && d[0] & 0xf0 == 0xf0 && d[1..5] != [0, 0, 0, 0]
}

impl Quic {
    /// An endpoint for `slots` connections to `remote`, verifying
    /// `server_name`; `epoch` is the shard's time 0.
    pub fn new(
        config: ClientConfig,
        server_name: String,
        remote: SocketAddr,
        epoch: Instant,
        slots: usize,
    ) -> Quic {
        Quic {
            // Path MTU discovery: the sockets never fragment (udp_socket).
            endpoint: Endpoint::new(
                Arc::new(quinn_proto::EndpointConfig::default()),
                None,
                true,
                None,
            ),
            config,
            server_name,
            remote,
            epoch,
            owner: Vec::new(),
            timers: BinaryHeap::new(),
            armed: vec![NONE; slots],
            dropped_responses: 0,
        }
    }

    /// The shard's time `ns` as quinn's.
    pub fn at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// A new connection for slot `slot`'s socket of `generation`.
    pub fn connect(
        &mut self,
        slot: u32,
        generation: u32,
        now: u64,
    ) -> Result<(ConnectionHandle, quinn_proto::Connection), ConnectError> {
        let (h, conn) = self.endpoint.connect(
            self.at(now),
            self.config.clone(),
            self.remote,
            &self.server_name,
        )?;
        if self.owner.len() <= h.0 {
            self.owner.resize(h.0 + 1, None);
        }
        self.owner[h.0] = Some((slot, generation));
        Ok((h, conn))
    }

    /// Which slot and generation connection `h` belongs to.
    pub fn owner(&self, h: ConnectionHandle) -> Option<(u32, u32)> {
        self.owner.get(h.0).copied().flatten()
    }

    /// Datagrams from the server for connection `h`: `payload` holds them
    /// back to back, each `segment` bytes but the last (one datagram when
    /// `segment` is its length). Returns how many were Retry packets:
    /// quinn-proto follows a Retry inside the handshake and counts none.
    pub fn receive(
        &mut self,
        h: ConnectionHandle,
        conn: &mut quinn_proto::Connection,
        payload: &[u8],
        segment: usize,
        now: u64,
    ) -> u64 {
        let at = self.at(now);
        let mut response = Vec::new();
        let mut retries = 0;
        for d in payload.chunks(segment.max(1)) {
            retries += u64::from(is_retry(d));
            match self.endpoint.handle(
                at,
                self.remote,
                None,
                None,
                BytesMut::from(d),
                &mut response,
            ) {
                Some(DatagramEvent::ConnectionEvent(ch, ev)) if ch == h => conn.handle_event(ev),
                // For another connection: its socket is not this one, so
                // it can only be a stray of a connection already replaced.
                Some(DatagramEvent::ConnectionEvent(..)) | None => {}
                Some(DatagramEvent::Response(_)) => {
                    self.dropped_responses += 1;
                    response.clear();
                }
                // A client endpoint has no server config: never.
                Some(DatagramEvent::NewConnection(_)) => {}
            }
        }
        retries
    }

    /// Passes connection `h`'s events for the endpoint on (new connection
    /// ids, retired ones, the end of a connection). True once the
    /// connection is drained: its handle is free and the slot may let it
    /// go.
    pub fn endpoint_events(
        &mut self,
        h: ConnectionHandle,
        conn: &mut quinn_proto::Connection,
    ) -> bool {
        let mut drained = false;
        while let Some(ev) = conn.poll_endpoint_events() {
            drained |= ev.is_drained();
            if let Some(back) = self.endpoint.handle_event(h, ev) {
                conn.handle_event(back);
            }
        }
        if drained && let Some(o) = self.owner.get_mut(h.0) {
            *o = None;
        }
        drained
    }

    /// The next send of connection `conn` into `out` (cleared first): up to
    /// [`MAX_SEGMENTS`] datagrams of the returned segment size, the last
    /// possibly shorter. `None`: nothing to send now (congestion or pacing
    /// may hold it back until its timer).
    pub fn transmit(
        &mut self,
        conn: &mut quinn_proto::Connection,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        out.clear();
        let t = conn.poll_transmit(self.at(now), MAX_SEGMENTS, out)?;
        out.truncate(t.size);
        Some(t.segment_size.unwrap_or(t.size))
    }

    /// Re-arms slot `slot`'s timer from its connection's next timeout (or
    /// disarms it).
    pub fn arm(&mut self, slot: u32, generation: u32, conn: &mut quinn_proto::Connection) {
        let at = conn.poll_timeout().map_or(NONE, |t| self.ns(t));
        let armed = &mut self.armed[slot as usize];
        if *armed != at {
            *armed = at;
            if at != NONE {
                self.timers.push(Reverse((at, slot, generation)));
            }
        }
    }

    /// Forgets slot `slot`'s timer (its connection is gone).
    pub fn disarm(&mut self, slot: u32) {
        self.armed[slot as usize] = NONE;
    }

    /// When the first timer is due, or earlier (the first entry may be
    /// stale: a spurious wake, never a late one); for `&self` callers.
    pub fn earliest(&self) -> Option<u64> {
        self.timers.peek().map(|&Reverse((at, _, _))| at)
    }

    /// Connection `h` of slot `slot` is dropped before it drained (its
    /// socket is closed): the endpoint frees its handle and ids.
    pub fn forget(&mut self, h: ConnectionHandle, slot: u32) {
        if self.owner(h).is_some() {
            self.endpoint
                .handle_event(h, quinn_proto::EndpointEvent::drained());
            self.owner[h.0] = None;
        }
        self.disarm(slot);
    }

    /// When the first timer is due, exactly (stale entries are dropped):
    /// the tests' form; the core wakes at [`Quic::earliest`].
    #[cfg(test)]
    pub fn next_wake(&mut self) -> Option<u64> {
        while let Some(&Reverse((at, slot, _))) = self.timers.peek() {
            if self.armed[slot as usize] == at {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// A slot (with the generation it was armed for) whose timer is due at
    /// `now`; call until `None`, handing each connection `handle_timeout`
    /// and re-arming it.
    pub fn expired(&mut self, now: u64) -> Option<(u32, u32)> {
        while let Some(&Reverse((at, slot, generation))) = self.timers.peek() {
            if at > now {
                return None;
            }
            self.timers.pop();
            if self.armed[slot as usize] == at {
                self.armed[slot as usize] = NONE;
                return Some((slot, generation));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;

    use super::*;
    use crate::http::h3::quic_tests::harness::{self, Behaviour, Net, Server};
    use crate::http::h3::{Connection, Event, qpack};

    /// Two slots on one endpoint, each with its connection, against the
    /// in-process server: only this module's calls move datagrams and
    /// time.
    struct Shard {
        quic: Quic,
        conns: Vec<Option<(ConnectionHandle, Connection, u32)>>,
        request: Bytes,
        answered: Vec<usize>,
        sends: u64,
        datagrams: u64,
        gro_batches: u64,
    }

    fn client_config() -> ClientConfig {
        crate::tls::client_config(crate::tls::TlsInputs::insecure_for("localhost"))
            .unwrap()
            .for_shard_quic()
            .unwrap()
    }

    #[test]
    fn slots_share_an_endpoint_and_timers_run_on_the_shard_clock() {
        let epoch = Instant::now();
        let mut server = Server::new(true, Behaviour::Normal);
        let mut net = Net::new(Some(5));
        // One socket (address) per connection, as the engine makes them.
        let addr_of = |slot: usize| -> std::net::SocketAddr {
            format!("127.0.0.1:{}", 40100 + slot).parse().unwrap()
        };
        let mut fields = crate::http::h2::hpack::RequestFields::new();
        fields
            .from_http1(b"GET / HTTP/1.1\r\nHost: localhost:4433\r\n\r\n", b"https")
            .unwrap();
        let mut s = Shard {
            quic: Quic::new(
                client_config(),
                "localhost".into(),
                harness::SERVER.parse().unwrap(),
                epoch,
                2,
            ),
            conns: vec![None, None],
            request: qpack::fixed_request_frame(fields.iter()),
            answered: vec![0, 0],
            sends: 0,
            datagrams: 0,
            gro_batches: 0,
        };
        for slot in 0..2u32 {
            let (h, quic) = s.quic.connect(slot, 7, 0).unwrap();
            assert_eq!(s.quic.owner(h), Some((slot, 7)));
            s.conns[slot as usize] = Some((h, Connection::new(quic, 4, 16384), 0));
        }
        let mut now = 0u64;
        let mut inbox: Vec<VecDeque<Vec<u8>>> = vec![VecDeque::new(), VecDeque::new()];
        let mut out = Vec::new();
        for _ in 0..100_000 {
            if s.answered == [40, 40] {
                break;
            }
            let mut busy = false;
            for (slot, inbox) in inbox.iter_mut().enumerate() {
                let Some((h, conn, opened)) = s.conns[slot].as_mut() else {
                    continue;
                };
                // As GRO gives them: datagrams of one size back to back,
                // the last of the batch possibly shorter.
                while let Some(mut batch) = inbox.pop_front() {
                    let seg = batch.len();
                    while let Some(next) = inbox.front()
                        && batch.len().is_multiple_of(seg)
                        && next.len() <= seg
                    {
                        batch.extend_from_slice(next);
                        inbox.pop_front();
                    }
                    if batch.len() > seg {
                        s.gro_batches += 1;
                    }
                    s.quic.receive(*h, conn.quic_mut(), &batch, seg, now);
                    busy = true;
                }
                s.quic.endpoint_events(*h, conn.quic_mut());
                let mut events = Vec::new();
                conn.poll(s.quic.at(now), &mut events).unwrap();
                for e in events {
                    busy = true;
                    if let Event::Complete {
                        slot: stream_slot,
                        status,
                        ..
                    } = e
                    {
                        assert_eq!(status, 200);
                        s.answered[slot] += 1;
                        if *opened < 40 {
                            assert!(conn.open_stream(stream_slot, &s.request));
                            *opened += 1;
                        }
                    }
                }
                while *opened < 4 && conn.open_stream(*opened, &s.request) {
                    *opened += 1;
                }
                while let Some(seg) = s.quic.transmit(conn.quic_mut(), now, &mut out) {
                    s.sends += 1;
                    for d in out.chunks(seg) {
                        s.datagrams += 1;
                        net.send_from(addr_of(slot), d);
                    }
                    busy = true;
                }
                s.quic.arm(slot as u32, 7, conn.quic_mut());
            }
            while let Some((from, d)) = net.pop_to_server() {
                server.datagram(s.quic.at(now), from, d, &mut net);
                busy = true;
            }
            busy |= server.work(s.quic.at(now), &mut net);
            // The server's datagrams go to the socket, so the slot, of
            // their connection.
            while let Some((to, d)) = net.pop_to_client() {
                let slot = (0..2)
                    .find(|&i| addr_of(i) == to)
                    .expect("a slot's address");
                inbox[slot].push_back(d);
                busy = true;
            }
            if busy {
                continue;
            }
            // Nothing to do: the shard sleeps until its first timer (or
            // the server's).
            let wake = s.quic.next_wake();
            let server_wake = server.next_timeout().map(|t| s.quic.ns(t));
            now = wake.into_iter().chain(server_wake).min().expect("a timer");
            assert!(now < 10_000_000_000, "no progress in 10 s");
            while let Some((slot, generation)) = s.quic.expired(now) {
                assert_eq!(generation, 7);
                let (_, conn, _) = s.conns[slot as usize].as_mut().unwrap();
                conn.quic_mut().handle_timeout(s.quic.at(now));
            }
            server.handle_timeouts(s.quic.at(now));
        }
        assert_eq!(s.answered, [40, 40]);
        assert!(net.dropped > 0, "every fifth datagram is lost");
        assert!(s.datagrams >= s.sends);
        assert!(s.gro_batches > 0, "no datagrams came in a batch");
        // Closing: the connections drain and free their handles.
        for slot in 0..2 {
            let (_, conn, _) = s.conns[slot].as_mut().unwrap();
            conn.quic_mut()
                .close(s.quic.at(now), 0u32.into(), Bytes::new());
        }
        let mut drained = [false, false];
        for _ in 0..1000 {
            for (slot, drained) in drained.iter_mut().enumerate() {
                let (h, conn, _) = s.conns[slot].as_mut().unwrap();
                *drained |= s.quic.endpoint_events(*h, conn.quic_mut());
                s.quic.arm(slot as u32, 7, conn.quic_mut());
            }
            if drained == [true, true] {
                break;
            }
            now = s.quic.next_wake().expect("the drain timer");
            while let Some((slot, _)) = s.quic.expired(now) {
                let (_, conn, _) = s.conns[slot as usize].as_mut().unwrap();
                conn.quic_mut().handle_timeout(s.quic.at(now));
            }
        }
        assert_eq!(drained, [true, true]);
        for slot in 0..2 {
            let (h, _, _) = s.conns[slot].as_ref().unwrap();
            assert_eq!(s.quic.owner(*h), None);
        }
    }

    #[test]
    fn stale_timer_entries_never_fire_and_never_wake_late() {
        let mut q = Quic::new(
            client_config(),
            "localhost".into(),
            harness::SERVER.parse().unwrap(),
            Instant::now(),
            3,
        );
        q.armed = vec![NONE; 3];
        let push = |q: &mut Quic, slot: u32, at: u64| {
            q.armed[slot as usize] = at;
            q.timers.push(Reverse((at, slot, 1)));
        };
        push(&mut q, 0, 50);
        push(&mut q, 1, 20);
        push(&mut q, 1, 80); // re-armed later: the 20 is stale
        push(&mut q, 2, 30);
        q.disarm(2);
        assert_eq!(q.next_wake(), Some(50));
        assert_eq!(q.expired(60), Some((0, 1)));
        assert_eq!(q.expired(60), None);
        assert_eq!(q.next_wake(), Some(80));
        assert_eq!(q.expired(80), Some((1, 1)));
        assert_eq!((q.expired(1000), q.next_wake()), (None, None));
    }

    #[test]
    fn a_retry_is_told_by_its_long_header_type_and_nonzero_version() {
        // Version 1 Retry, Initial, Handshake; version negotiation (version
        // 0, any first byte); a short header; too short to say.
        assert!(is_retry(&[0xf0, 0, 0, 0, 1, 8, 1]));
        assert!(is_retry(&[0xff, 0xff, 0, 0, 0x1d, 8, 1]));
        assert!(!is_retry(&[0xc0, 0, 0, 0, 1, 8, 1]));
        assert!(!is_retry(&[0xe0, 0, 0, 0, 1, 8, 1]));
        assert!(!is_retry(&[0xf7, 0, 0, 0, 0, 8, 1]));
        assert!(!is_retry(&[0x40, 1, 2, 3, 4, 5, 6]));
        assert!(!is_retry(&[0xf0, 0, 0, 0, 1]));
    }
}
