//! One connection's TLS: ciphertext in, plaintext out, and back. A thin
//! layer over rustls's `ClientConnection` that speaks the core's terms.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection, HandshakeKind};

/// Why a TLS connection failed, by the class the report counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server's certificate was refused; says why.
    Cert(String),
    /// The server sent a fatal alert.
    Alert(String),
    /// Anything else: not TLS, a bad record, a broken handshake.
    Protocol(String),
}

/// What reading plaintext found.
pub enum Plain {
    /// This many bytes, in the caller's buffer.
    Data(usize),
    /// Nothing decrypted is waiting.
    Empty,
    /// The server closed the TLS session (close_notify).
    Closed,
}

pub struct Session {
    conn: ClientConnection,
}

impl Session {
    pub fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Session, Failure> {
        let mut conn = ClientConnection::new(config, name).map_err(classify)?;
        // Pipelined batches are bounded by the core (depth × request), so
        // rustls may buffer all of them rather than take a part.
        conn.set_buffer_limit(None);
        Ok(Session { conn })
    }

    /// Takes as much of `rest` as rustls will hold and processes it.
    /// Returns how many bytes it took: 0 with bytes left means the caller
    /// must drain plaintext first.
    pub fn absorb(&mut self, rest: &mut &[u8]) -> Result<usize, Failure> {
        let before = rest.len();
        // An error here is rustls's buffer being full; processing (and the
        // caller's draining) makes room.
        let _ = self.conn.read_tls(rest);
        self.conn.process_new_packets().map_err(classify)?;
        Ok(before - rest.len())
    }

    /// Moves decrypted bytes into `buf`.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> Plain {
        match self.conn.reader().read(buf) {
            Ok(0) => Plain::Closed,
            Ok(n) => Plain::Data(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Plain::Empty,
            // The TCP stream ended without close_notify: the core sees
            // that as the socket's EOF.
            Err(_) => Plain::Empty,
        }
    }

    /// Encrypts `bytes` for sending (collected by [`Session::write_tls`]).
    pub fn write_plain(&mut self, bytes: &[u8]) {
        // With no buffer limit, rustls takes everything.
        let _ = self.conn.writer().write_all(bytes);
    }

    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Appends every pending TLS record to `out`.
    pub fn write_tls(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// `1.2` or `1.3`.
    pub fn version(&self) -> Option<&'static str> {
        match self.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => Some("1.2"),
            rustls::ProtocolVersion::TLSv1_3 => Some("1.3"),
            _ => None,
        }
    }

    /// The negotiated suite's IANA name.
    pub fn cipher(&self) -> Option<String> {
        let s = self.conn.negotiated_cipher_suite()?;
        Some(match s.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256".into(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384".into(),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => {
                "TLS_CHACHA20_POLY1305_SHA256".into()
            }
            other => format!("{other:?}"),
        })
    }

    pub fn alpn(&self) -> Option<String> {
        self.conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }
}

/// Sorts a rustls error into the report's classes, in words a user can act
/// on.
pub fn classify(e: rustls::Error) -> Failure {
    match e {
        rustls::Error::InvalidCertificate(c) => Failure::Cert(match c {
            CertificateError::UnknownIssuer => {
                "unknown issuer (self-signed, or signed by a CA that is not trusted here)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "name mismatch (the certificate is not valid for the URL's host)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the certificate is not valid yet (check the clocks)".into()
            }
            CertificateError::Revoked => "the certificate is revoked".into(),
            CertificateError::BadSignature => "the certificate's signature is invalid".into(),
            other => format!("{other:?}"),
        }),
        rustls::Error::AlertReceived(a) => Failure::Alert(format!("{a:?}")),
        rustls::Error::InvalidMessage(m) => Failure::Protocol(format!(
            "the server's reply is not TLS ({m:?}); is the URL meant to be http://?"
        )),
        other => Failure::Protocol(other.to_string()),
    }
}
