//! TLS for the shard core: rustls's client, sans-IO. The core feeds each
//! connection's [`Session`] the bytes the engine received and sends what it
//! produces; no engine knows TLS exists. [`client_config`] turns the user's
//! choices (roots, `-k`, client certificate, versions, suites, resumption)
//! into a rustls config, once, before the run.

mod config;
pub mod session;
mod stats;

pub use config::{
    TlsError, TlsInputs, TlsSettings, TlsVersion, cipher_names, client_config, default_provider,
};
pub use session::{Failure, Session};
pub use stats::{TlsErrors, TlsStats};
