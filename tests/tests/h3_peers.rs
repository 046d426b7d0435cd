//! The HTTP/3 test peers, proved with clients independent of loadgen so
//! that loadgen's HTTP/3 tests can trust them: the aioquic server
//! (tests/src/aioquic.rs) with aioquic's own client, exact counts and each
//! misbehaviour seen from the client's side; the UDP relay
//! (tests/src/udp_relay.rs) with std sockets and with aioquic through it;
//! the netns + nftables loss link (tests/src/netns_loss.rs) with std
//! sockets over its veth pair.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use loadgen_tests::aioquic::{self, AioquicServer, BODY, ClientRun, H3Options, REQUEST_REJECTED};
use loadgen_tests::netns_loss::{LossyLink, Side};
use loadgen_tests::pki::Pki;
use loadgen_tests::skip;
use loadgen_tests::udp_relay::{Impairment, RelayConfig, UdpRelay};

fn pki() -> Option<Pki> {
    Pki::new().map_err(|e| skip(&e)).ok()
}

fn server(pki: &Pki, o: H3Options) -> Option<AioquicServer> {
    AioquicServer::start(pki, &o)
}

#[test]
fn aioquic_counts_exactly_over_one_and_two_connections() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(&pki, H3Options::default()) else {
        return;
    };
    let saw = aioquic::client(
        &pki.ca,
        &ClientRun {
            port: srv.port,
            requests: 20,
            concurrency: 4,
            path: "/one",
            ..ClientRun::default()
        },
    )
    .expect("aioquic client");
    assert_eq!(saw.ok(), 20, "{saw:?}");
    assert_eq!(saw.bodies.get(BODY), Some(&20), "{saw:?}");
    let c = srv.counts();
    assert_eq!(c.answered.get("/one"), Some(&20), "{c:?}");
    assert_eq!((c.connections, c.received), (1, 20), "{c:?}");

    let saw = aioquic::client(
        &pki.ca,
        &ClientRun {
            port: srv.port,
            connections: 2,
            requests: 15,
            concurrency: 3,
            path: "/two",
            ..ClientRun::default()
        },
    )
    .expect("aioquic client");
    assert_eq!(saw.ok(), 30, "{saw:?}");
    let c = srv.counts();
    assert_eq!(c.answered.get("/two"), Some(&30), "{c:?}");
    assert_eq!(c.answered.get("/one"), Some(&20), "{c:?}");
    assert_eq!((c.connections, c.received), (3, 50), "{c:?}");
    assert_eq!((c.rejected, c.unanswered, c.goaways), (0, 0, 0), "{c:?}");
}

#[test]
fn aioquic_answers_slowly_and_caps_concurrent_streams() {
    let Some(pki) = pki() else { return };
    let Some(mut slow) = server(
        &pki,
        H3Options {
            delay_ms: 150,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let run = |port, concurrency| ClientRun {
        port,
        requests: 8,
        concurrency,
        ..ClientRun::default()
    };
    let saw = aioquic::client(&pki.ca, &run(slow.port, 8)).expect("client");
    assert_eq!(saw.ok(), 8, "{saw:?}");
    assert!(
        saw.durations_ms.iter().all(|&d| d >= 150.0),
        "every answer waits 150 ms: {:?}",
        saw.durations_ms
    );
    // Uncapped, the 8 are open at once and all end in about one delay.
    assert_eq!(slow.counts().peak_streams, 8);

    let Some(mut capped) = server(
        &pki,
        H3Options {
            delay_ms: 150,
            max_streams: 2,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let saw = aioquic::client(&pki.ca, &run(capped.port, 8)).expect("client");
    assert_eq!(saw.ok(), 8, "{saw:?}");
    assert_eq!(saw.peer_max_streams_bidi, [2], "{saw:?}");
    // Two at a time: the last pair waits out three delays before its own.
    let slowest = saw.durations_ms.iter().cloned().fold(0.0, f64::max);
    assert!(slowest >= 4.0 * 150.0, "{:?}", saw.durations_ms);
    let c = capped.counts();
    assert_eq!((c.peak_streams, c.answered_total()), (2, 8), "{c:?}");
}

#[test]
fn aioquic_sends_goaway_and_rejects_the_streams_beyond_it() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            goaway_after: 5,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    // One at a time: requests 1..5 are streams 0..16, so GOAWAY names 20;
    // aioquic's client does not heed it and the next 5 are rejected.
    let saw = aioquic::client(
        &pki.ca,
        &ClientRun {
            port: srv.port,
            requests: 10,
            ..ClientRun::default()
        },
    )
    .expect("client");
    assert_eq!(saw.goaway, [20], "{saw:?}");
    assert_eq!(saw.ok(), 5, "{saw:?}");
    assert_eq!(saw.resets.get(&REQUEST_REJECTED), Some(&5), "{saw:?}");
    let c = srv.counts();
    assert_eq!(
        (c.goaways, c.rejected, c.answered_total()),
        (1, 5, 5),
        "{c:?}"
    );
}

#[test]
fn aioquic_rejects_every_third_request() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            reject_every: 3,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let saw = aioquic::client(
        &pki.ca,
        &ClientRun {
            port: srv.port,
            requests: 9,
            concurrency: 3,
            ..ClientRun::default()
        },
    )
    .expect("client");
    assert_eq!(saw.ok(), 6, "{saw:?}");
    assert_eq!(saw.resets.get(&REQUEST_REJECTED), Some(&3), "{saw:?}");
    let c = srv.counts();
    assert_eq!(
        (c.rejected, c.received, c.answered_total()),
        (3, 9, 6),
        "{c:?}"
    );
}

#[test]
fn aioquic_falls_silent_after_four_answers() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            silent_after: 4,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    // The fifth request gets nothing, and neither does a new handshake.
    let saw = aioquic::client(
        &pki.ca,
        &ClientRun {
            port: srv.port,
            connections: 2,
            requests: 5,
            timeout_s: 1.0,
            ..ClientRun::default()
        },
    )
    .expect("client");
    assert_eq!(saw.ok(), 4, "{saw:?}");
    assert_eq!((saw.timed_out, saw.connect_failed), (1, 1), "{saw:?}");
    let c = srv.counts();
    assert_eq!((c.answered_total(), c.connections), (4, 1), "{c:?}");
    assert_eq!(c.unanswered, 1, "{c:?}");
}

#[test]
fn aioquic_sends_retry_when_asked() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(
        &pki,
        H3Options {
            retry: true,
            ..H3Options::default()
        },
    ) else {
        return;
    };
    let saw = aioquic::client(
        &pki.ca,
        &ClientRun {
            port: srv.port,
            connections: 2,
            requests: 3,
            ..ClientRun::default()
        },
    )
    .expect("client");
    assert_eq!((saw.retried, saw.ok()), (2, 6), "{saw:?}");
    assert_eq!(srv.counts().connections, 2);
}

/// A std UDP "server" that records what arrives (a u32 sequence number
/// per datagram) and echoes each back.
fn echo_server() -> (SocketAddr, std::sync::mpsc::Receiver<u32>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
            if n < 4 || tx.send(seq).is_err() {
                return;
            }
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    (addr, rx)
}

/// Sends 0..n through the relay toward the server, each batch of 100
/// only once the last has arrived (none lost in a socket buffer), and
/// returns the sequence numbers that arrived, in order.
fn send_through(relay: &UdpRelay, rx: &std::sync::mpsc::Receiver<u32>, n: u32) -> Vec<u32> {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(relay.addr).unwrap();
    let mut got = Vec::new();
    for batch in (0..n).collect::<Vec<_>>().chunks(100) {
        for &i in batch {
            client.send(&i.to_be_bytes()).unwrap();
        }
        let seen = batch.last().unwrap() + 1;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let f = relay.counts().to_server;
            if f.forwarded + f.dropped >= seen as u64 && got.len() as u64 >= f.forwarded {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stalled: {f:?}, {} arrived",
                got.len()
            );
            if let Ok(i) = rx.recv_timeout(Duration::from_micros(500)) {
                got.push(i);
            }
        }
    }
    got.extend(rx.try_iter());
    got
}

#[test]
fn relay_drops_a_seeded_share_the_same_way_twice() {
    let lossy = RelayConfig {
        to_server: Impairment {
            drop_percent: 10.0,
            reorder_every: 0,
        },
        seed: 7,
        ..RelayConfig::default()
    };
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let (addr, rx) = echo_server();
        let relay = UdpRelay::start(addr, RelayConfig { seed, ..lossy }).unwrap();
        let got = send_through(&relay, &rx, 10_000);
        let f = relay.counts().to_server;
        assert_eq!(f.forwarded + f.dropped, 10_000, "{f:?}");
        assert_eq!(got.len() as u64, f.forwarded, "{f:?}");
        // Binomial(10000, 0.1): sd 30; 900..1100 is over 3 sd either way.
        assert!((900..=1100).contains(&f.dropped), "{f:?}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "no reordering asked");
        runs.push(got);
    }
    // (Not assert_eq!: 9000 numbers would drown the message.)
    assert!(runs[0] == runs[1], "the same seed drops the same datagrams");
    assert!(runs[0] != runs[2], "another seed drops others");
}

#[test]
fn relay_reorders_every_fifth_and_delays_both_ways() {
    let (addr, rx) = echo_server();
    let relay = UdpRelay::start(
        addr,
        RelayConfig {
            to_server: Impairment {
                drop_percent: 0.0,
                reorder_every: 5,
            },
            hold_max: Duration::from_millis(500),
            ..RelayConfig::default()
        },
    )
    .unwrap();
    let got = send_through(&relay, &rx, 100);
    // 5 goes after 6, 10 after 11, ...; 100 has no next and goes alone.
    let mut want: Vec<u32> = (0..100).collect();
    for k in (4..99).step_by(5) {
        want.swap(k, k + 1);
    }
    assert_eq!(got, want);
    assert_eq!(relay.counts().to_server.reordered, 19);
    drop(relay);

    let (addr, _rx) = echo_server();
    let direct = rtt(addr);
    let relay = UdpRelay::start(
        addr,
        RelayConfig {
            delay: Duration::from_millis(40),
            ..RelayConfig::default()
        },
    )
    .unwrap();
    let delayed = rtt(relay.addr);
    assert!(
        delayed >= Duration::from_millis(80) && delayed < direct + Duration::from_millis(80 + 100),
        "40 ms each way: {delayed:?} (direct {direct:?})"
    );
}

/// The shortest of 5 round trips of a datagram to an echo at `to`.
fn rtt(to: SocketAddr) -> Duration {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    (0..5)
        .map(|i: u32| {
            let start = Instant::now();
            s.send(&i.to_be_bytes()).unwrap();
            let mut b = [0u8; 16];
            s.recv(&mut b).expect("an echo");
            start.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn aioquic_through_the_relay_at_5_percent_loss_completes_every_request() {
    let Some(pki) = pki() else { return };
    let Some(mut srv) = server(&pki, H3Options::default()) else {
        return;
    };
    let five = Impairment {
        drop_percent: 5.0,
        reorder_every: 7,
    };
    let relay = UdpRelay::start(
        SocketAddr::from(([127, 0, 0, 1], srv.port)),
        RelayConfig {
            to_server: five,
            to_client: five,
            delay: Duration::from_millis(2),
            seed: 27,
            ..RelayConfig::default()
        },
    )
    .unwrap();
    let saw = aioquic::client(
        &pki.ca,
        &ClientRun {
            port: relay.addr.port(),
            connections: 2,
            requests: 40,
            concurrency: 4,
            timeout_s: 10.0,
            ..ClientRun::default()
        },
    )
    .expect("client");
    assert_eq!(saw.ok(), 80, "{saw:?}");
    assert_eq!(srv.counts().answered_total(), 80);
    let c = relay.counts();
    for f in [c.to_server, c.to_client] {
        assert!(f.dropped > 0 && f.reordered > 0, "{c:?}");
    }
}

#[test]
fn nftables_in_a_netns_drops_a_share_of_udp_each_way() {
    let Some(link) = LossyLink::new(10, 20) else {
        return;
    };
    let server = link.udp_socket(Side::Server, 0).unwrap();
    let client = link.udp_socket(Side::Client, 0).unwrap();
    for s in [&server, &client] {
        big_receive_buffer(s);
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    const N: u64 = 10_000;
    for (from, to, side, pct) in [
        (&client, &server, Side::Server, 10),
        (&server, &client, Side::Client, 20),
    ] {
        let dest = to.local_addr().unwrap();
        for i in 0..N as u32 {
            from.send_to(&i.to_be_bytes(), dest).unwrap();
        }
        let mut got = 0u64;
        let mut b = [0u8; 16];
        while to.recv(&mut b).is_ok() {
            got += 1;
        }
        let dropped = link.dropped(side);
        // What did not arrive, nft dropped: no other loss on the way.
        assert_eq!(
            got + dropped,
            N,
            "{side:?}: got {got}, nft dropped {dropped}"
        );
        let (lo, hi) = (N * pct / 100 - 4 * 40, N * pct / 100 + 4 * 40);
        assert!((lo..=hi).contains(&dropped), "{side:?} {pct} %: {dropped}");
    }
}

/// Room for all N datagrams at once (root: SO_RCVBUFFORCE passes rmem_max).
fn big_receive_buffer(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 32 << 20;
    // SAFETY: setsockopt on a socket we own with a c_int option value.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}
