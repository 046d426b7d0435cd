//! What a shard counts about TLS: handshakes, resumptions, handshake time,
//! and failures by class.

use hdrhistogram::Histogram;

use super::Failure;
use crate::histogram::new_latency_histogram;

/// TLS failures by class; the names are part of the JSON interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TlsErrors {
    /// The server's certificate was refused.
    pub cert: u64,
    /// The server sent a fatal alert.
    pub alert: u64,
    /// Not TLS, bad records, a broken handshake.
    pub protocol: u64,
    /// No complete handshake within `--timeout`.
    pub timeout: u64,
    /// The server closed or reset the connection during the handshake.
    pub closed: u64,
}

impl TlsErrors {
    pub fn total(&self) -> u64 {
        self.cert + self.alert + self.protocol + self.timeout + self.closed
    }

    pub fn add(&mut self, f: &Failure) {
        match f {
            Failure::Cert(_) => self.cert += 1,
            Failure::Alert(_) => self.alert += 1,
            Failure::Protocol(_) => self.protocol += 1,
        }
    }

    fn merge(&mut self, o: &TlsErrors) {
        self.cert += o.cert;
        self.alert += o.alert;
        self.protocol += o.protocol;
        self.timeout += o.timeout;
        self.closed += o.closed;
    }
}

#[derive(Debug, Clone)]
pub struct TlsStats {
    pub handshakes: u64,
    pub resumed: u64,
    /// From the TCP connection to the end of the handshake, µs.
    pub handshake: Histogram<u64>,
    pub errors: TlsErrors,
    /// What the first handshake negotiated.
    pub version: Option<&'static str>,
    pub cipher: Option<String>,
    pub alpn: Option<String>,
    /// The first certificate failure, in words: it ends the run.
    pub cert_error: Option<String>,
}

impl Default for TlsStats {
    fn default() -> Self {
        TlsStats {
            handshakes: 0,
            resumed: 0,
            handshake: new_latency_histogram(),
            errors: TlsErrors::default(),
            version: None,
            cipher: None,
            alpn: None,
            cert_error: None,
        }
    }
}

impl TlsStats {
    /// Forgets the counts (end of warm-up); keeps what was negotiated.
    pub fn reset(&mut self) {
        self.handshakes = 0;
        self.resumed = 0;
        self.handshake.reset();
        self.errors = TlsErrors::default();
    }

    pub fn merge(&mut self, o: &TlsStats) {
        self.handshakes += o.handshakes;
        self.resumed += o.resumed;
        crate::histogram::add(&mut self.handshake, &o.handshake);
        self.errors.merge(&o.errors);
        self.version = self.version.or(o.version);
        if self.cipher.is_none() {
            self.cipher.clone_from(&o.cipher);
        }
        if self.alpn.is_none() {
            self.alpn.clone_from(&o.alpn);
        }
        if self.cert_error.is_none() {
            self.cert_error.clone_from(&o.cert_error);
        }
    }
}
