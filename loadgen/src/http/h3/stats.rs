//! What QUIC did during an `--http3` run, per shard and merged: handshakes
//! and 0-RTT, packets sent and lost (quinn-proto's own counts, taken as
//! deltas), datagrams per `sendmsg` (GSO) and per receive (GRO), the
//! smoothed RTT at each
//! response, and how connections ended in error, by code name.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use quinn_proto::{ConnectionError, TransportErrorCode};

use crate::histogram::new_latency_histogram;

/// How many [`QuicStats::counters`] there are.
pub const COUNTERS: usize = 10;

#[derive(Debug, Clone)]
pub struct QuicStats {
    /// Handshakes completed.
    pub handshakes: u64,
    /// Connections that sent requests as 0-RTT (early data), and of those
    /// the ones the server accepted.
    pub zero_rtt_attempted: u64,
    pub zero_rtt_accepted: u64,
    /// Retry packets received: the server asked the client to prove its
    /// address before the handshake (quinn-proto follows them, counting
    /// none; the core spots them by their header).
    pub retries: u64,
    /// QUIC packets sent and declared lost (quinn-proto's path counts).
    pub packets_sent: u64,
    pub packets_lost: u64,
    /// Datagrams handed to the kernel, and the `sendmsg` calls that
    /// carried them (one GSO send each).
    pub datagrams_sent: u64,
    pub sends: u64,
    /// Datagrams that arrived, and the receive completions that brought
    /// them (a GRO batch is one).
    pub datagrams_received: u64,
    pub receives: u64,
    /// The connection's smoothed RTT at each completed response, µs.
    pub rtt: Histogram<u64>,
    /// Connections that ended in error, by code name (`IDLE_TIMEOUT`,
    /// `H3_FRAME_UNEXPECTED`, `CRYPTO_ERROR(UnknownCA)`…).
    pub connection_errors: BTreeMap<String, u64>,
    /// Why the server cannot be spoken to over QUIC at all (it answered
    /// with version negotiation), which ends the run; not in the reports'
    /// numbers: the exit status says it.
    pub refused: Option<String>,
}

impl Default for QuicStats {
    fn default() -> Self {
        QuicStats {
            handshakes: 0,
            zero_rtt_attempted: 0,
            zero_rtt_accepted: 0,
            retries: 0,
            packets_sent: 0,
            packets_lost: 0,
            datagrams_sent: 0,
            sends: 0,
            datagrams_received: 0,
            receives: 0,
            rtt: new_latency_histogram(),
            connection_errors: BTreeMap::new(),
            refused: None,
        }
    }
}

/// A connection's packet counts as last added to the shard's stats, so
/// the next addition is the difference (quinn-proto's are totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketCounts {
    pub sent: u64,
    pub lost: u64,
}

impl PacketCounts {
    pub fn of(c: &quinn_proto::Connection) -> PacketCounts {
        let path = c.stats().path;
        PacketCounts {
            sent: path.sent_packets,
            lost: path.lost_packets,
        }
    }
}

impl QuicStats {
    /// Adds what a connection did since `counted`, and moves `counted`
    /// to `now`.
    pub fn add_packets(&mut self, counted: &mut PacketCounts, now: PacketCounts) {
        self.packets_sent += now.sent.saturating_sub(counted.sent);
        self.packets_lost += now.lost.saturating_sub(counted.lost);
        *counted = now;
    }

    /// One GSO send of `bytes` in datagrams of `segment` bytes (the last
    /// possibly shorter).
    #[inline]
    pub fn add_send(&mut self, bytes: usize, segment: usize) {
        self.sends += 1;
        self.datagrams_sent += bytes.div_ceil(segment.max(1)) as u64;
    }

    /// One receive of `bytes` in datagrams of `segment` bytes (a GRO batch;
    /// the last possibly shorter).
    #[inline]
    pub fn add_receive(&mut self, bytes: usize, segment: usize) {
        self.receives += 1;
        self.datagrams_received += bytes.div_ceil(segment.max(1)) as u64;
    }

    pub fn add_error(&mut self, name: String) {
        *self.connection_errors.entry(name).or_default() += 1;
    }

    /// Datagrams per `sendmsg` (0 without sends).
    pub fn datagrams_per_send(&self) -> f64 {
        if self.sends == 0 {
            0.0
        } else {
            self.datagrams_sent as f64 / self.sends as f64
        }
    }

    /// Datagrams per receive completion (0 without receives).
    pub fn datagrams_per_receive(&self) -> f64 {
        if self.receives == 0 {
            0.0
        } else {
            self.datagrams_received as f64 / self.receives as f64
        }
    }

    /// The plain counters, in the one order every live view of them keeps
    /// (the shards' publications, the Prometheus snapshot and its names):
    /// handshakes, 0-RTT attempted and accepted, retries, packets sent and
    /// lost, datagrams sent and sends, datagrams received and receives.
    pub fn counters(&self) -> [u64; COUNTERS] {
        [
            self.handshakes,
            self.zero_rtt_attempted,
            self.zero_rtt_accepted,
            self.retries,
            self.packets_sent,
            self.packets_lost,
            self.datagrams_sent,
            self.sends,
            self.datagrams_received,
            self.receives,
        ]
    }

    /// Forgets the warm-up's counts.
    pub fn reset(&mut self) {
        let mut rtt = std::mem::replace(&mut self.rtt, new_latency_histogram());
        rtt.reset();
        *self = QuicStats {
            rtt,
            refused: self.refused.take(),
            ..QuicStats::default()
        };
    }

    pub fn merge(&mut self, o: &QuicStats) {
        self.handshakes += o.handshakes;
        self.zero_rtt_attempted += o.zero_rtt_attempted;
        self.zero_rtt_accepted += o.zero_rtt_accepted;
        self.retries += o.retries;
        self.packets_sent += o.packets_sent;
        self.packets_lost += o.packets_lost;
        self.datagrams_sent += o.datagrams_sent;
        self.sends += o.sends;
        self.datagrams_received += o.datagrams_received;
        self.receives += o.receives;
        crate::histogram::add(&mut self.rtt, &o.rtt);
        for (name, &n) in &o.connection_errors {
            *self.connection_errors.entry(name.clone()).or_default() += n;
        }
        if self.refused.is_none() {
            self.refused.clone_from(&o.refused);
        }
    }
}

/// The name a connection error is counted under: the wire code's name
/// when the peer closed or the transport failed, else what ended it.
pub fn error_name(e: &ConnectionError) -> String {
    match e {
        ConnectionError::VersionMismatch => "VERSION_MISMATCH".into(),
        ConnectionError::TransportError(t) => transport_code_name(t.code),
        ConnectionError::ConnectionClosed(c) => transport_code_name(c.error_code),
        ConnectionError::ApplicationClosed(c) => application_code_name(c.error_code.into_inner()),
        ConnectionError::Reset => "STATELESS_RESET".into(),
        ConnectionError::TimedOut => "IDLE_TIMEOUT".into(),
        ConnectionError::LocallyClosed => "LOCALLY_CLOSED".into(),
        ConnectionError::CidsExhausted => "CIDS_EXHAUSTED".into(),
    }
}

/// An HTTP/3 or QPACK code by name, another as hex.
pub fn application_code_name(code: u64) -> String {
    match super::code_name(code) {
        Some(name) => name.into(),
        None => format!("APPLICATION_{code:#x}"),
    }
}

/// RFC 9000's names; a TLS alert (0x100 + alert) as `CRYPTO_ERROR(alert)`.
fn transport_code_name(code: TransportErrorCode) -> String {
    let n = u64::from(code);
    if (0x100..0x200).contains(&n) {
        let alert = rustls::AlertDescription::from((n & 0xff) as u8);
        format!("CRYPTO_ERROR({alert:?})")
    } else {
        format!("{code:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_added_as_deltas_and_sends_and_receives_count_their_datagrams() {
        let mut s = QuicStats::default();
        let mut counted = PacketCounts::default();
        s.add_packets(&mut counted, PacketCounts { sent: 10, lost: 1 });
        s.add_packets(&mut counted, PacketCounts { sent: 25, lost: 1 });
        assert_eq!((s.packets_sent, s.packets_lost), (25, 1));
        assert_eq!(counted, PacketCounts { sent: 25, lost: 1 });
        s.add_send(1200 * 3 + 100, 1200);
        s.add_send(80, 80);
        assert_eq!((s.sends, s.datagrams_sent), (2, 5));
        assert_eq!(s.datagrams_per_send(), 2.5);
        assert_eq!(QuicStats::default().datagrams_per_send(), 0.0);
        // A GRO batch of four (the last shorter), then one datagram.
        s.add_receive(1350 * 3 + 40, 1350);
        s.add_receive(90, 90);
        assert_eq!((s.receives, s.datagrams_received), (2, 5));
        assert_eq!(s.datagrams_per_receive(), 2.5);
        assert_eq!(QuicStats::default().datagrams_per_receive(), 0.0);
    }

    #[test]
    fn merge_adds_everything_and_reset_forgets_it() {
        let mut a = QuicStats {
            handshakes: 2,
            zero_rtt_attempted: 1,
            zero_rtt_accepted: 1,
            ..QuicStats::default()
        };
        a.rtt.record(100).unwrap();
        a.add_error("IDLE_TIMEOUT".into());
        let mut b = a.clone();
        b.packets_sent = 7;
        b.add_error("H3_FRAME_UNEXPECTED".into());
        a.merge(&b);
        assert_eq!(a.handshakes, 4);
        assert_eq!((a.zero_rtt_attempted, a.zero_rtt_accepted), (2, 2));
        assert_eq!(a.packets_sent, 7);
        assert_eq!(a.rtt.len(), 2);
        assert_eq!(a.connection_errors["IDLE_TIMEOUT"], 2);
        assert_eq!(a.connection_errors["H3_FRAME_UNEXPECTED"], 1);
        a.reset();
        assert_eq!(a.handshakes, 0);
        assert!(a.rtt.is_empty() && a.connection_errors.is_empty());
    }

    #[test]
    fn errors_are_named_by_their_wire_code() {
        assert_eq!(error_name(&ConnectionError::TimedOut), "IDLE_TIMEOUT");
        assert_eq!(error_name(&ConnectionError::Reset), "STATELESS_RESET");
        assert_eq!(
            error_name(&ConnectionError::TransportError(
                TransportErrorCode::PROTOCOL_VIOLATION.into()
            )),
            "PROTOCOL_VIOLATION"
        );
        assert_eq!(
            error_name(&ConnectionError::TransportError(
                TransportErrorCode::crypto(0x30).into()
            )),
            "CRYPTO_ERROR(UnknownCA)"
        );
        assert_eq!(application_code_name(0x105), "H3_FRAME_UNEXPECTED");
        assert_eq!(application_code_name(0x21), "APPLICATION_0x21");
    }
}
