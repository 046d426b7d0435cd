//! What the client connection does with a server that behaves, loses
//! datagrams, resumes, or misbehaves one way.

use super::harness::{Behaviour, Server, World};
use crate::http::h3::{Event, H3Error, code};

#[test]
fn handshake_and_gets_with_loss_and_0rtt() {
    for drop_every in [None, Some(7)] {
        let mut w = World::new(drop_every, Behaviour::Normal);
        w.get(1);
        assert_eq!(
            w.client.zero_rtt,
            Some(None),
            "no ticket yet: a full handshake"
        );
        w.get(16);
        assert_eq!(w.server.served(), 17);
        // Resumed connections (new ones on the same client config): the
        // requests go out in 0-RTT with the handshake and the server reads
        // them before it completes.
        w.get(16);
        assert_eq!(w.client.zero_rtt, Some(Some(true)), "drop {drop_every:?}");
        assert_eq!(w.server.served(), 33);
        assert!(w.server.early() >= 1, "no request arrived in 0-RTT");
        if let Some(n) = drop_every {
            assert!(w.net.dropped >= w.net.sent / n - 1 && w.net.dropped > 0);
            assert!(w.client.quic().stats().path.lost_packets > 0);
        }
        // A server that will not take early data (a restarted one: it does
        // not know the ticket): quinn drops every stream we opened, they
        // come back as unprocessed, and go out again after the handshake,
        // each answered once.
        w.server = Server::new(false, Behaviour::Normal);
        w.get(16);
        assert_eq!(w.client.zero_rtt, Some(Some(false)), "drop {drop_every:?}");
        assert_eq!(w.client.unprocessed(), 16);
        assert_eq!(w.server.served(), 16);
        assert_eq!(w.server.early(), 0);
    }
}

#[test]
fn request_rejected_comes_back_and_other_resets_fail_the_request() {
    let mut w = World::new(
        None,
        Behaviour::ResetEvery {
            n: 3,
            code: code::H3_REQUEST_REJECTED,
        },
    );
    w.get(16);
    // Every third stream read was refused; each came back and went out
    // again until answered: 16 answers, each once.
    assert_eq!(w.server.served(), 16);
    assert!(w.server.resets() >= 5);
    assert_eq!(w.client.unprocessed() as u64, w.server.resets());
    let mut w = World::new(
        None,
        Behaviour::ResetEvery {
            n: 4,
            code: code::H3_INTERNAL_ERROR,
        },
    );
    w.connect_and_run(16);
    assert_eq!(w.client.statuses, vec![200; 12]);
    assert_eq!(w.client.failed(), 4);
    assert!(w.client.log.iter().all(|e| matches!(
        e,
        Event::Reset { code, .. } if *code == code::H3_INTERNAL_ERROR
    )));
}

#[test]
fn goaway_gives_back_the_streams_it_did_not_cover() {
    let mut w = World::new(None, Behaviour::GoawayAfter(5));
    let mut left = 16;
    let mut connections = 0;
    while left > 0 {
        w.connect_and_run(left);
        connections += 1;
        let answered = w.client.statuses.len();
        assert_eq!(answered, left.min(5), "connection {connections}");
        assert_eq!(w.client.unprocessed(), left - answered);
        left -= answered;
    }
    assert_eq!((connections, w.server.served()), (4, 16));
}

#[test]
fn a_response_without_status_fails_only_its_request() {
    let mut w = World::new(None, Behaviour::NoStatus);
    w.connect_and_run(4);
    assert_eq!(w.client.error, None);
    assert_eq!(w.client.failed(), 4);
    assert!(w.client.log.iter().all(|e| matches!(
        e,
        Event::Malformed { code, .. } if *code == code::H3_MESSAGE_ERROR
    )));
}

#[test]
fn a_bad_control_stream_closes_the_connection_with_its_code() {
    let mut w = World::new(None, Behaviour::DataOnControl);
    w.connect_and_run(2);
    assert!(matches!(
        w.client.error,
        Some(H3Error::FrameUnexpected { frame: 0, .. })
    ));
    // The server hears it closed. The server's control stream came with
    // its handshake (0.5-RTT), so the client closed before its own
    // handshake was confirmed, and an application's code cannot go in
    // handshake packets: QUIC sends APPLICATION_ERROR instead (RFC 9000
    // §10.2.3). After the handshake the server would read 0x105.
    let lost = w.server.conns.values().find_map(|c| c.lost.clone());
    match lost {
        Some(quinn_proto::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code.into_inner(), code::H3_FRAME_UNEXPECTED);
        }
        Some(quinn_proto::ConnectionError::ConnectionClosed(c)) => {
            assert_eq!(
                c.error_code,
                quinn_proto::TransportErrorCode::APPLICATION_ERROR
            );
        }
        other => panic!("{other:?}"),
    }
}

/// The CPU probe of design note §7: the client's own time per request
/// (quinn-proto, its crypto, our framing) on a resumed connection, at 1 and
/// 16 streams, against the in-process server on the fake clock. A
/// measurement, so it is ignored by default and wants an optimized build:
/// `cargo test -p loadgen --release --lib -- --ignored --nocapture
/// client_cpu_per_request`.
#[test]
#[ignore]
fn client_cpu_per_request() {
    let mut w = World::new(None, Behaviour::Normal);
    w.get(1);
    for (depth, total) in [(1, 20_000), (16, 100_000), (1, 20_000), (16, 100_000)] {
        let per = w.load(depth, total);
        let stats = w.client.quic().stats();
        eprintln!(
            "depth {depth:>2}: {:.2} µs of client time per request; {} datagrams out, {} in ({:.2} and {:.2} per request)",
            per.as_secs_f64() * 1e6,
            stats.udp_tx.datagrams,
            stats.udp_rx.datagrams,
            stats.udp_tx.datagrams as f64 / total as f64,
            stats.udp_rx.datagrams as f64 / total as f64,
        );
    }
}
