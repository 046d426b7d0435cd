//! The core over HTTP/3: the test plays the engine (one UDP socket per
//! slot, at its own address: the core's sends go to the in-process QUIC
//! server as datagrams of the segment size, the server's come back to the
//! slot) and the clock, which moves only to the next timer.

use std::net::SocketAddr;
use std::time::Instant;

use super::*;
use crate::http::h3::code;
use crate::http::h3::quic_tests::harness::{Behaviour, Net, Server};
use rustls::pki_types::pem::PemObject;

fn h3_config(connections: usize, streams: u32, requests: u64) -> Config {
    h3_config_resuming(connections, streams, requests, true)
}

fn h3_config_resuming(connections: usize, streams: u32, requests: u64, resume: bool) -> Config {
    h3_config_with(connections, streams, requests, resume, true)
}

fn h3_config_with(
    connections: usize,
    streams: u32,
    requests: u64,
    resume: bool,
    insecure: bool,
) -> Config {
    let url = Url::parse("https://localhost:4433/").unwrap();
    let addr: SocketAddr = "127.0.0.1:4433".parse().unwrap();
    let mut cfg = Config::for_url(url, addr);
    cfg.connections = connections;
    cfg.duration = None;
    cfg.requests = Some(requests);
    cfg.timeout = Duration::from_secs(2);
    cfg.http3 = Some(streams);
    cfg.tls = Some(
        crate::tls::client_config(crate::tls::TlsInputs {
            // Verifying: the server's self-signed certificate is trusted as
            // a CA, which webpki refuses as the server's own (CA:TRUE).
            extra_roots: if insecure {
                Vec::new()
            } else {
                rustls::pki_types::CertificateDer::pem_slice_iter(include_bytes!(
                    "../../http/h3/testdata/cert.pem"
                ))
                .map(Result::unwrap)
                .collect()
            },
            insecure,
            resume,
            ..crate::tls::TlsInputs::insecure_for("localhost")
        })
        .unwrap(),
    );
    cfg
}

fn addr_of(slot: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40100 + slot as u16))
}

/// The engine and the server around a [`Fake`] core.
struct World<'a> {
    f: Fake<'a>,
    server: Server,
    net: Net,
    epoch: Instant,
    /// The generation of each slot's socket, while it has one.
    sockets: Vec<Option<u32>>,
    sends: u64,
    datagrams: u64,
    /// Datagrams delivered to a live socket, one receive each.
    received: u64,
}

impl<'a> World<'a> {
    fn new(f: Fake<'a>, behaviour: Behaviour, drop_every: Option<u64>) -> Self {
        let n = f.core.conns.len();
        World {
            f,
            server: Server::new(true, behaviour),
            net: Net::new(drop_every),
            epoch: Instant::now(),
            sockets: vec![None; n],
            sends: 0,
            datagrams: 0,
            received: 0,
        }
    }

    fn at(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.f.now)
    }

    /// Carries out the core's actions as the engine would: a connect is
    /// instant (UDP), a send goes out as datagrams and is acked.
    fn apply(&mut self, actions: Vec<Action>) {
        let now = self.f.now;
        for a in actions {
            match a {
                Action::Connect {
                    conn, generation, ..
                } => {
                    self.sockets[conn as usize] = Some(generation);
                    self.f.core.on_connected(conn, generation, now);
                }
                Action::Send {
                    conn,
                    generation,
                    ack,
                } => {
                    let bytes = self.f.core.send_bytes(conn).to_vec();
                    let seg = self.f.core.segment_size(conn);
                    assert!(!bytes.is_empty(), "a send without datagrams");
                    assert!(seg > 0 && bytes.len() <= 10 * seg, "one GSO send");
                    // A send without ack is a connection's CONNECTION_CLOSE,
                    // which the stats do not count (nor quinn its packet).
                    let load = u64::from(ack);
                    self.sends += load;
                    for d in bytes.chunks(seg) {
                        self.datagrams += load;
                        self.net.send_from(addr_of(conn), d);
                    }
                    self.f.core.on_sent(conn, generation, now);
                }
                Action::Close { conn, generation } => {
                    if self.sockets[conn as usize] == Some(generation) {
                        self.sockets[conn as usize] = None;
                    }
                }
            }
            self.f.core.stamp(now);
        }
    }

    /// Runs until the core finishes.
    fn run(&mut self) {
        for _ in 0..200_000 {
            if self.f.core.is_finished() {
                return;
            }
            let mut busy = false;
            let actions = self.f.actions();
            if !actions.is_empty() {
                busy = true;
                self.apply(actions);
            }
            while let Some((from, d)) = self.net.pop_to_server() {
                self.server.datagram(self.at(), from, d, &mut self.net);
                busy = true;
            }
            busy |= self.server.work(self.at(), &mut self.net);
            while let Some((to, d)) = self.net.pop_to_client() {
                let slot = u32::from(to.port() - 40100);
                if let Some(g) = self.sockets[slot as usize] {
                    self.received += 1;
                    self.f.core.on_datagrams(slot, g, &d, d.len(), self.f.now);
                    self.f.core.stamp(self.f.now);
                }
                busy = true;
            }
            if busy {
                // A microsecond a step, as a real clock would move: frozen,
                // a response that came after a request left would share
                // its instant, and "nothing came since it left" would
                // misread a live connection as dead.
                self.f.now += 1_000;
                continue;
            }
            let server = self
                .server
                .next_timeout()
                .map(|t| t.saturating_duration_since(self.epoch).as_nanos() as u64);
            let next = server
                .into_iter()
                .chain([self.f.core.next_wake()])
                .min()
                .unwrap();
            assert!(next < 30_000_000_000, "no progress for 30 s of fake time");
            let next = next.max(self.f.now);
            let actions = self.f.at(next);
            self.server.handle_timeouts(self.at());
            self.apply(actions);
        }
        panic!("the run did not finish in 200000 steps");
    }
}

/// The open loop's last turn dispatches the request due at the deadline
/// and then closes every connection: the engine carries that send out on
/// the old socket after the slot was reset, and must still find its
/// datagrams (it found none, and over TLS the fixed requests' bytes cut
/// at the TLS record's length: a panic).
#[test]
fn a_send_queued_in_the_turn_that_ends_the_run_keeps_its_bytes() {
    let mut cfg = h3_config(1, 4, 0);
    cfg.requests = None;
    cfg.duration = Some(Duration::from_millis(200));
    cfg.schedule = Some(Schedule::constant(100.0));
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::Normal, None);
    w.run();
    let st = w.f.core.stats();
    assert!(st.responses >= 15, "{} responses", st.responses);
}

#[test]
fn n_is_exact_over_quic_and_streams_refill_as_they_end() {
    let cfg = h3_config(1, 4, 50);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::Normal, None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!((st.responses, w.server.served()), (50, 50));
    assert_eq!(st.errors.total(), 0);
    assert_eq!(st.reissued, 0);
    assert_eq!(st.ttfb.len(), 50);
    let t = st.tls.as_deref().unwrap();
    assert_eq!(t.handshakes, 1);
    assert_eq!((t.version, t.alpn.as_deref()), (Some("1.3"), Some("h3")));
    assert!(w.datagrams >= w.sends);
    // QUIC's own counts: the core's sends as the engine carried them,
    // quinn's packets (at least one a datagram), an RTT per response.
    let q = st.quic.as_deref().unwrap();
    assert_eq!(q.handshakes, 1);
    assert_eq!((q.zero_rtt_attempted, q.zero_rtt_accepted), (0, 0));
    assert_eq!((q.sends, q.datagrams_sent), (w.sends, w.datagrams));
    assert_eq!((q.receives, q.datagrams_received), (w.received, w.received));
    assert!(q.packets_sent >= w.datagrams, "{q:?}");
    assert_eq!(q.packets_lost, 0);
    assert_eq!(q.rtt.len(), 50);
    assert!(q.connection_errors.is_empty(), "{q:?}");
}

#[test]
fn two_connections_survive_loss_with_every_request_answered_once() {
    let cfg = h3_config(2, 8, 200);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::Normal, Some(7));
    w.run();
    let st = w.f.core.stats();
    assert_eq!((st.responses, w.server.served()), (200, 200));
    assert_eq!(st.errors.total(), 0);
    assert!(w.net.dropped > 10);
    assert_eq!(w.server.conns.len(), 2);
    let q = st.quic.as_deref().unwrap();
    assert!(q.packets_lost > 0, "{q:?}");
    assert!(q.packets_sent > q.packets_lost);
    assert_eq!(q.handshakes, 2);
}

#[test]
fn goaway_and_request_rejected_send_the_requests_again() {
    let cfg = h3_config(1, 4, 20);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::GoawayAfter(5), None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!((st.responses, w.server.served()), (20, 20));
    assert_eq!(st.errors.total(), 0);
    assert!(st.reissued > 0);
    assert!(
        w.server.conns.len() >= 4,
        "a new connection after each GOAWAY"
    );
    // Each reconnect resumed and sent its requests as 0-RTT, accepted.
    let q = st.quic.as_deref().unwrap();
    assert_eq!(q.handshakes, w.server.conns.len() as u64);
    assert_eq!(q.zero_rtt_attempted, q.handshakes - 1, "{q:?}");
    assert_eq!(q.zero_rtt_accepted, q.zero_rtt_attempted);
    // --no-tls-resume: full handshakes, no early data.
    let cfg = h3_config_resuming(1, 4, 20, false);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::GoawayAfter(5), None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!((st.responses, w.server.served()), (20, 20));
    let q = st.quic.as_deref().unwrap();
    assert!(q.handshakes >= 4);
    assert_eq!(q.zero_rtt_attempted, 0);

    let rejected = Behaviour::ResetEvery {
        n: 3,
        code: code::H3_REQUEST_REJECTED,
    };
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), rejected, None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!((st.responses, w.server.served()), (20, 20));
    assert_eq!(st.errors.total(), 0);
    assert_eq!(st.reissued, w.server.resets());
}

#[test]
fn a_request_past_its_time_is_cancelled_and_its_connection_stays() {
    let cfg = h3_config(1, 4, 40);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::SilentEvery(10), None);
    w.run();
    let st = w.f.core.stats();
    // Every tenth stream the server read was never answered: each failed
    // after the timeout, on the same connection.
    assert!(w.server.silenced() >= 3);
    assert_eq!(st.errors.timeout, w.server.silenced());
    assert_eq!(st.responses, w.server.served());
    assert_eq!(st.responses + st.errors.timeout, 40);
    assert_eq!(w.server.conns.len(), 1, "no reconnect");
}

#[test]
fn a_refused_certificate_ends_the_run_with_its_reason() {
    // The harness server's certificate is a CA's (see h3_config_with).
    let cfg = h3_config_with(2, 4, 20, true, false);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::Normal, None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!(st.responses, 0);
    let t = st.tls.as_deref().unwrap();
    assert!(t.errors.cert >= 1, "{t:?}");
    let why = t.cert_error.as_deref().unwrap();
    assert!(why.contains("CaUsedAsEndEntity"), "{why}");
    let q = st.quic.as_deref().unwrap();
    assert!(
        q.connection_errors
            .keys()
            .any(|k| k.starts_with("CRYPTO_ERROR(")),
        "{q:?}"
    );
}

#[test]
fn a_body_above_the_stream_window_is_sent_whole_as_credit_comes() {
    let mut cfg = h3_config(1, 2, 6);
    let mut spec = crate::http::RequestSpec::get("localhost:4433", "/");
    spec.method = "POST".into();
    spec.body = vec![b'x'; 100_000];
    cfg.scenario = std::sync::Arc::new(Scenario::fixed(&spec).unwrap());
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let window = Behaviour::StreamWindow(16 * 1024);
    let mut w = World::new(Fake::new(&cfg, &p, &s), window, None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!((st.responses, w.server.served()), (6, 6));
    assert_eq!(st.errors.total(), 0);
    let body: u64 = w.server.conns.values().map(|c| c.body).sum();
    assert_eq!(body, 6 * 100_000);
}

#[test]
fn a_stream_the_server_has_no_credit_for_waits_and_is_not_counted_as_resent() {
    // 8 streams asked, 2 allowed: the rest wait for `Available`, never
    // having left.
    let cfg = h3_config(1, 8, 40);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::MaxStreams(2), None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!((st.responses, w.server.served()), (40, 40));
    assert_eq!(st.errors.total(), 0);
    assert_eq!(st.reissued, 0, "nothing was sent twice");
    assert_eq!(w.server.conns.len(), 1);
}

#[test]
fn the_live_quic_figures_at_the_end_are_the_reports() {
    let cfg = h3_config(2, 4, 60);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::Normal, None);
    // Losses on the client's side, so that its count of them moves.
    w.net = Net::losing_client_datagrams(9);
    w.run();
    let q = w.f.core.stats().quic.as_deref().unwrap();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let live = &p.quic;
    // The connections are still open at the last publication: their
    // packets are counted in it, not only when they close after it.
    assert!(q.packets_sent > 0 && q.packets_lost > 0, "{q:?}");
    assert_eq!(live.counters.each_ref().map(load), q.counters());
    assert_eq!(load(&live.rtt.count), q.rtt.len());
}

/// Every connection the core lets go, replaced after a GOAWAY or closed at
/// the end of the run, is closed at the server too (CONNECTION_CLOSE with
/// H3_NO_ERROR): before, the server kept each until its idle timeout.
#[test]
fn connections_the_core_drops_are_closed_at_the_server() {
    let cfg = h3_config(2, 4, 30);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::GoawayAfter(5), None);
    w.run();
    // The end of the run's own actions: the closes, and their datagrams.
    let last = w.f.actions();
    w.apply(last);
    while let Some((from, d)) = w.net.pop_to_server() {
        w.server.datagram(w.at(), from, d, &mut w.net);
    }
    w.server.work(w.at(), &mut w.net);
    assert_eq!(w.server.served(), 30);
    assert!(w.server.conns.len() >= 6, "GOAWAYs replaced connections");
    for c in w.server.conns.values() {
        match &c.lost {
            Some(quinn_proto::ConnectionError::ApplicationClosed(a)) => {
                assert_eq!(u64::from(a.error_code), code::H3_NO_ERROR);
            }
            other => panic!(
                "not closed by the client: {other:?}; {:?}",
                w.server
                    .conns
                    .values()
                    .map(|c| c.lost.is_some())
                    .collect::<Vec<_>>()
            ),
        }
    }
}

/// A server that answers with version negotiation (it speaks no version
/// quinn-proto does: draft 29 only here) ends the run at once, said why:
/// before, each slot retried its handshake until the run's end.
#[test]
fn version_negotiation_ends_the_run_with_its_reason() {
    let cfg = h3_config(2, 4, 20);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::Draft29Only, None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!(st.responses, 0);
    assert!(w.f.now < 1_000_000_000, "ended at {} ns", w.f.now);
    let q = st.quic.as_deref().unwrap();
    assert!(
        q.connection_errors.contains_key("VERSION_MISMATCH"),
        "{q:?}"
    );
    let why = q.refused.as_deref().unwrap_or_default();
    assert!(why.contains("version negotiation"), "{why}");
}

/// A server that sends Retry before a handshake: quinn-proto follows it
/// and counts nothing, so the core counts the Retry packets by their
/// header. Every request is answered once.
#[test]
fn retry_packets_are_counted_and_the_handshakes_complete() {
    let cfg = h3_config_resuming(2, 4, 40, false);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut w = World::new(Fake::new(&cfg, &p, &s), Behaviour::Retry, None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!((st.responses, w.server.served()), (40, 40));
    assert_eq!(st.errors.total(), 0);
    let q = st.quic.as_deref().unwrap();
    assert_eq!(q.handshakes, 2);
    assert_eq!((w.server.retries, q.retries), (2, 2), "{q:?}");
}

/// A QUIC server that offers no `h3` refuses the handshake with the TLS
/// alert no_application_protocol: the run ends at once, said why (before,
/// each slot retried its handshake until the run's end).
#[test]
fn a_server_refusing_alpn_h3_ends_the_run_without_retrying() {
    let cfg = h3_config(2, 4, 20);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let other = Behaviour::OnlyAlpn(b"hq-interop");
    let mut w = World::new(Fake::new(&cfg, &p, &s), other, None);
    w.run();
    let st = w.f.core.stats();
    assert_eq!(st.responses, 0);
    // One handshake a slot, refused; no backoff and retry for --timeout.
    assert!(w.server.conns.len() <= 2, "{} tried", w.server.conns.len());
    assert!(w.f.now < 1_000_000_000, "ended at {} ns", w.f.now);
    let q = st.quic.as_deref().unwrap();
    let why = q.refused.as_deref().unwrap_or_default();
    assert!(why.contains("refused ALPN h3"), "{why}");
    assert!(
        q.connection_errors
            .contains_key("CRYPTO_ERROR(NoApplicationProtocol)"),
        "{q:?}"
    );
    assert!(st.tls.as_deref().unwrap().errors.alert >= 1);
}
