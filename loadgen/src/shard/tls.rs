//! The core's side of TLS: handshakes, records in and out, and failures by
//! class. The engine still only sees "these bytes came in" and "send these
//! bytes".

use super::Core;
use super::Delivered;
use super::conn::{ConnState, SendFrom};
use crate::stats::ErrorKind;
use crate::tls::session::Plain;
use crate::tls::{Failure, Session};

/// How a batch of received records ended.
enum Outcome {
    More,
    ServerClose,
    Error(ErrorKind),
    PeerClosed,
    Failed(Failure),
}

impl Core<'_> {
    /// TCP is up: say hello.
    pub(super) fn start_handshake(&mut self, ci: usize, now: u64) {
        let Some((config, name)) = &self.tls else {
            return;
        };
        match Session::new(config.clone(), name.clone()) {
            Ok(s) => {
                let c = &mut self.conns[ci];
                c.tls = Some(s);
                c.handshake_started = now;
                self.set_state(ci, ConnState::Handshaking);
                self.flush_tls(ci);
            }
            Err(f) => {
                // Only a config rustls refuses gets here; it will not heal.
                self.set_state(ci, ConnState::Handshaking);
                self.tls_failed(ci, f, now);
            }
        }
    }

    /// Sends every TLS record rustls has ready, unless a send is in flight
    /// (its ack sends the rest).
    pub(super) fn flush_tls(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        let Some(s) = c.tls.as_mut() else {
            return;
        };
        if c.send_busy || !s.wants_write() {
            return;
        }
        c.tls_out.clear();
        s.write_tls(&mut c.tls_out);
        c.send_len = c.tls_out.len();
        c.send_from = SendFrom::Tls;
        c.send_busy = true;
        self.stats.bytes_written += c.send_len as u64;
        self.actions.push(super::Action::Send {
            conn: ci as u32,
            generation: c.generation,
            ack: true,
        });
    }

    /// Records arrived: decrypt, finish the handshake if it is done, and
    /// parse what they carried.
    pub(super) fn received_tls(&mut self, ci: usize, data: &[u8], now: u64) {
        let mut plain = std::mem::take(&mut self.tls_plain);
        let mut rest = data;
        let outcome = 'records: loop {
            let c = &mut self.conns[ci];
            let Some(s) = c.tls.as_mut() else {
                break Outcome::More;
            };
            let took = match s.absorb(&mut rest) {
                Ok(n) => n,
                Err(f) => break Outcome::Failed(f),
            };
            if c.state == ConnState::Handshaking && !s.is_handshaking() {
                self.handshake_done(ci, now);
            }
            let mut drained = 0;
            loop {
                let Some(s) = self.conns[ci].tls.as_mut() else {
                    break 'records Outcome::More;
                };
                match s.read_plain(&mut plain) {
                    Plain::Data(n) => {
                        drained += n;
                        match self.deliver(ci, &plain[..n], now) {
                            Delivered::More => {}
                            Delivered::ServerClose => break 'records Outcome::ServerClose,
                            Delivered::Error(k) => break 'records Outcome::Error(k),
                        }
                    }
                    Plain::Empty => break,
                    Plain::Closed => break 'records Outcome::PeerClosed,
                }
            }
            if rest.is_empty() {
                break Outcome::More;
            }
            if took == 0 && drained == 0 {
                // rustls took nothing and gave nothing: it never does that
                // while healthy; do not spin.
                break Outcome::Failed(Failure::Protocol("the TLS stream stalled".into()));
            }
        };
        self.tls_plain = plain;
        match outcome {
            Outcome::More => {
                self.fill(ci, now);
                self.flush(ci);
            }
            Outcome::ServerClose => self.replace(ci, now),
            Outcome::Error(k) => self.fail(ci, k, now),
            Outcome::PeerClosed => self.closed_by_server(ci, now),
            Outcome::Failed(f) => self.tls_failed(ci, f, now),
        }
    }

    fn handshake_done(&mut self, ci: usize, now: u64) {
        let c = &self.conns[ci];
        if let (Some(t), Some(s)) = (&mut self.stats.tls, &c.tls) {
            t.handshakes += 1;
            t.resumed += u64::from(s.resumed());
            t.handshake
                .saturating_record((now.saturating_sub(c.handshake_started) / 1000).max(1));
            if t.version.is_none() {
                t.version = s.version();
                t.cipher = s.cipher();
                t.alpn = s.alpn();
            }
        }
        if let (Some(st), Some(s)) = (&mut self.stats.h2, &c.tls) {
            let alpn = s.alpn();
            if alpn.as_deref() != Some("h2") {
                // Not a silent downgrade: the user asked for HTTP/2.
                let chose = alpn.unwrap_or_else(|| "no protocol (ALPN)".into());
                st.refused
                    .get_or_insert_with(|| format!("the server chose {chose}"));
                self.fatal = true;
                self.backoff(ci, now);
                return;
            }
        }
        self.ready(ci, now);
    }

    /// The server hung up (or reset) before the handshake finished.
    pub(super) fn handshake_lost(&mut self, ci: usize, now: u64) {
        if let Some(t) = &mut self.stats.tls {
            t.errors.closed += 1;
        }
        self.backoff(ci, now);
    }

    /// TLS itself failed: counted by class. During the handshake the slot
    /// backs off and retries, as after a failed connect; on an open
    /// connection the request in flight fails. A refused certificate ends
    /// the run: no retry can fix it, and the user must say what to trust.
    pub(super) fn tls_failed(&mut self, ci: usize, f: Failure, now: u64) {
        if let Some(t) = &mut self.stats.tls {
            t.errors.add(&f);
            if let Failure::Cert(why) = &f
                && t.cert_error.is_none()
            {
                t.cert_error = Some(why.clone());
            }
        }
        if matches!(f, Failure::Cert(_)) {
            self.fatal = true;
        }
        if let Failure::Alert(a) = &f
            && a == "NoApplicationProtocol"
        {
            // The server speaks nothing we offered (h2 over TLS, h3 over
            // QUIC): no retry will change it.
            if let Some(h2) = self.stats.h2.as_mut() {
                h2.refused.get_or_insert_with(|| {
                    "the server refused ALPN h2 (no_application_protocol)".into()
                });
                self.fatal = true;
            }
            if let Some(q) = self.stats.quic.as_mut() {
                q.refused.get_or_insert_with(|| {
                    "the server refused ALPN h3 (no_application_protocol): it answers QUIC but serves no HTTP/3".into()
                });
                self.fatal = true;
            }
        }
        if self.conns[ci].state == ConnState::Handshaking {
            self.backoff(ci, now);
        } else {
            self.fail(ci, ErrorKind::Tls, now);
        }
    }
}
