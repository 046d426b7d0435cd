//! The rustls client config of a run, built once from plain inputs (the
//! command layer reads the certificate files and the system roots).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// `--tls-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// What the user asked for, files already read.
#[derive(Debug)]
pub struct TlsInputs {
    /// The host the certificate must name (and SNI, unless an IP).
    pub host: String,
    /// The system's trust store.
    pub system_roots: Vec<CertificateDer<'static>>,
    /// `--cacert`: more trusted CAs.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// `-k`: accept any certificate.
    pub insecure: bool,
    /// `--cert` and `--key`: mutual TLS.
    pub client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pub version: Option<TlsVersion>,
    /// `--ciphers`: suite names (IANA, OpenSSL or rustls spelling).
    pub ciphers: Vec<String>,
    /// Resume sessions across reconnects (`--no-tls-resume` clears it).
    pub resume: bool,
    /// `--http2`: offer `h2` first in ALPN (a server that picks anything
    /// else is refused, not followed).
    pub http2: bool,
}

#[cfg(test)]
impl TlsInputs {
    /// For tests: `host`, no roots, certificates not checked (`-k`),
    /// TLS 1.2 and 1.3, resumption on, no h2 in ALPN.
    pub(crate) fn insecure_for(host: &str) -> TlsInputs {
        TlsInputs {
            host: host.into(),
            system_roots: Vec::new(),
            extra_roots: Vec::new(),
            insecure: true,
            client_auth: None,
            version: None,
            ciphers: Vec::new(),
            resume: true,
            http2: false,
        }
    }
}

/// A run's TLS, ready for the shards.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Shared by all shards; each shard gives its copy its own session
    /// store, so resumption takes no lock shared between shards.
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    pub resume: bool,
    /// TLS 1.3 is among the versions (QUIC speaks nothing else).
    pub tls13: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "no trusted CA certificates: the system has none (install ca-certificates) and no --cacert was given; or skip verification with -k"
    )]
    NoRoots,
    #[error("{0:?} is not a host name TLS can verify")]
    ServerName(String),
    #[error("unknown cipher suite {0:?} in --ciphers; this build has: {1}")]
    Cipher(String, String),
    #[error("--ciphers leaves no suite for TLS {0}; add one, or change --tls-version")]
    NoSuiteForVersion(&'static str),
    #[error("cannot use the client certificate and key (--cert, --key): {0}")]
    ClientAuth(rustls::Error),
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
    #[error(
        "HTTP/3 needs TLS 1.3 with TLS_AES_128_GCM_SHA256 (QUIC's initial packets use it); check --tls-version and --ciphers"
    )]
    NoQuicSuite,
}

/// The names `--ciphers` accepts for a suite: IANA, then OpenSSL.
fn suite_names(s: &rustls::SupportedCipherSuite) -> (String, Option<&'static str>) {
    use rustls::CipherSuite as C;
    let iana = match s.suite() {
        // rustls spells the TLS 1.3 suites TLS13_…; IANA and OpenSSL say TLS_….
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256".to_string(),
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384".to_string(),
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256".to_string(),
        other => format!("{other:?}"),
    };
    let openssl = match s.suite() {
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => Some("ECDHE-ECDSA-AES128-GCM-SHA256"),
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => Some("ECDHE-ECDSA-AES256-GCM-SHA384"),
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => Some("ECDHE-ECDSA-CHACHA20-POLY1305"),
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Some("ECDHE-RSA-AES128-GCM-SHA256"),
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Some("ECDHE-RSA-AES256-GCM-SHA384"),
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Some("ECDHE-RSA-CHACHA20-POLY1305"),
        _ => None,
    };
    (iana, openssl)
}

/// The crypto provider of this build: ring by default (measured in
/// BENCHMARKS.md), aws-lc-rs with the `aws-lc-rs` feature.
pub fn default_provider() -> CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    rustls::crypto::ring::default_provider()
}

/// The suites this build offers, by IANA name.
pub fn cipher_names() -> Vec<String> {
    default_provider()
        .cipher_suites
        .iter()
        .map(|s| suite_names(s).0)
        .collect()
}

/// The provider with only the suites `names` asks for (all when empty).
fn provider(names: &[String]) -> Result<CryptoProvider, TlsError> {
    let mut p = default_provider();
    if names.is_empty() {
        return Ok(p);
    }
    let all = std::mem::take(&mut p.cipher_suites);
    for name in names {
        let want = name.trim().to_ascii_uppercase().replace('_', "-");
        let found = all.iter().find(|s| {
            let (iana, openssl) = suite_names(s);
            iana.replace('_', "-") == want
                || format!("{:?}", s.suite()).replace('_', "-") == want
                || openssl == Some(want.as_str())
        });
        match found {
            Some(s) if !p.cipher_suites.contains(s) => p.cipher_suites.push(*s),
            Some(_) => {}
            None => return Err(TlsError::Cipher(name.clone(), cipher_names().join(", "))),
        }
    }
    Ok(p)
}

/// Builds the run's client config.
pub fn client_config(i: TlsInputs) -> Result<TlsSettings, TlsError> {
    let server_name =
        ServerName::try_from(i.host.clone()).map_err(|_| TlsError::ServerName(i.host.clone()))?;
    let provider = Arc::new(provider(&i.ciphers)?);
    let name = |v: &rustls::SupportedProtocolVersion| match v.version {
        rustls::ProtocolVersion::TLSv1_2 => "1.2",
        _ => "1.3",
    };
    let has_suite = |v: &rustls::SupportedProtocolVersion| {
        provider.cipher_suites.iter().any(|s| s.version() == v)
    };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match i.version {
        Some(pinned) => {
            let v = match pinned {
                TlsVersion::V1_2 => &rustls::version::TLS12,
                TlsVersion::V1_3 => &rustls::version::TLS13,
            };
            if !has_suite(v) {
                return Err(TlsError::NoSuiteForVersion(name(v)));
            }
            vec![v]
        }
        // Unpinned, `--ciphers` decides which versions can be spoken.
        None => rustls::DEFAULT_VERSIONS
            .iter()
            .copied()
            .filter(|v| has_suite(v))
            .collect(),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(TlsError::Config)?;
    let builder = if i.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        // Unparsable system roots are skipped, as every TLS client does.
        let _ = roots.add_parsable_certificates(i.system_roots);
        let _ = roots.add_parsable_certificates(i.extra_roots);
        if roots.is_empty() {
            return Err(TlsError::NoRoots);
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match i.client_auth {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(TlsError::ClientAuth)?,
        None => builder.with_no_client_auth(),
    };
    // With --http2 http/1.1 is offered too, so that a server without h2
    // says what it speaks instead of failing the handshake; the core then
    // refuses it (no silent downgrade).
    config.alpn_protocols = if i.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsSettings {
        config: Arc::new(config),
        server_name,
        resume: i.resume,
        tls13: versions.contains(&&rustls::version::TLS13),
    })
}

impl TlsSettings {
    /// One shard's copy of the config, with its own session store.
    pub fn for_shard(&self) -> Arc<ClientConfig> {
        let mut c = (*self.config).clone();
        c.resumption = if self.resume {
            rustls::client::Resumption::in_memory_sessions(1024)
        } else {
            rustls::client::Resumption::disabled()
        };
        Arc::new(c)
    }

    /// One shard's QUIC client config for HTTP/3: the shard's TLS config
    /// (its own session store) with ALPN `h3`, and early data on when
    /// sessions are resumed, so that a reconnect sends its first requests
    /// in 0-RTT.
    pub fn for_shard_quic(&self) -> Result<quinn_proto::ClientConfig, TlsError> {
        if !self.tls13 {
            return Err(TlsError::NoQuicSuite);
        }
        let mut c = Arc::unwrap_or_clone(self.for_shard());
        c.alpn_protocols = vec![crate::http::h3::ALPN.to_vec()];
        c.enable_early_data = self.resume;
        let quic = quinn_proto::crypto::rustls::QuicClientConfig::try_from(Arc::new(c))
            .map_err(|_| TlsError::NoQuicSuite)?;
        Ok(quinn_proto::ClientConfig::new(Arc::new(quic)))
    }
}

/// `-k`: any certificate is accepted, but the handshake's signatures are
/// still checked against it (so the peer holds the key it presents).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> TlsInputs {
        TlsInputs::insecure_for("example.com")
    }

    #[test]
    fn suites_are_found_by_any_usual_name() {
        for names in [
            vec!["TLS_AES_128_GCM_SHA256".to_string()],
            vec!["tls13_aes_128_gcm_sha256".to_string()],
            vec!["ECDHE-RSA-AES128-GCM-SHA256".to_string()],
            vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()],
        ] {
            assert_eq!(
                provider(&names).unwrap().cipher_suites.len(),
                1,
                "{names:?}"
            );
        }
        let e = provider(&["RC4-MD5".to_string()]).unwrap_err();
        assert!(e.to_string().contains("TLS_AES_256_GCM_SHA384"), "{e}");
    }

    #[test]
    fn a_version_with_no_suite_left_is_refused() {
        let e = client_config(TlsInputs {
            version: Some(TlsVersion::V1_2),
            ciphers: vec!["TLS_AES_128_GCM_SHA256".into()],
            ..inputs()
        })
        .unwrap_err();
        assert!(matches!(e, TlsError::NoSuiteForVersion("1.2")), "{e}");
    }

    #[test]
    fn quic_needs_tls13_and_its_initial_suite() {
        assert!(client_config(inputs()).unwrap().for_shard_quic().is_ok());
        for (version, ciphers) in [
            (Some(TlsVersion::V1_2), vec![]),
            (None, vec!["TLS_AES_256_GCM_SHA384".to_string()]),
        ] {
            let s = client_config(TlsInputs {
                version,
                ciphers,
                ..inputs()
            })
            .unwrap();
            assert!(matches!(s.for_shard_quic(), Err(TlsError::NoQuicSuite)));
        }
    }

    #[test]
    fn verification_needs_roots_and_alpn_is_http11() {
        let e = client_config(TlsInputs {
            insecure: false,
            ..inputs()
        })
        .unwrap_err();
        assert!(matches!(e, TlsError::NoRoots));
        let s = client_config(inputs()).unwrap();
        assert_eq!(s.config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(matches!(
            client_config(TlsInputs {
                host: "not a name".into(),
                ..inputs()
            }),
            Err(TlsError::ServerName(_))
        ));
    }
}
