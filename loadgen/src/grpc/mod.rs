//! gRPC over the HTTP/2 client (`--grpc SERVICE/METHOD`): unary calls.
//! Every gRPC rule is here: the message framing, the status codes and
//! what a response without one means, and what a run counts. The shard
//! core asks this module; the engines know nothing of gRPC.
//!
//! A call is `POST /SERVICE/METHOD` with `content-type: application/grpc`
//! and `te: trailers`, its body one framed message; the server answers
//! with HEADERS, DATA and trailers holding `grpc-status` (or one header
//! block holding it: Trailers-Only).

pub mod frame;
mod message;
pub mod reflection;
pub mod schema;
pub mod stats;
pub mod status;

use std::path::PathBuf;

pub use message::MessageType;
pub use stats::GrpcStats;

/// Why a method or its message cannot be used; each is one line that
/// says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("--proto does not compile: {0}")]
    Proto(String),
    #[error("--protoset {0}: {1}")]
    Protoset(PathBuf, String),
    #[error("no service {service:?} here; the services are: {known}")]
    UnknownService { service: String, known: String },
    #[error("service {service} has no method {method:?}; its methods are: {known}")]
    UnknownMethod {
        service: String,
        method: String,
        known: String,
    },
    #[error("{0} streams messages: only unary methods are supported")]
    Streaming(String),
    #[error("the message is not a {message} in proto3 JSON: {why}")]
    Json { message: String, why: String },
    #[error("server reflection failed ({0}): give the schema with --proto or --protoset")]
    Reflection(String),
    #[error("server reflection refused: {0}: give the schema with --proto or --protoset")]
    ReflectionRefused(String),
}

/// A unary method: what a call names in its `:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// `helloworld.Greeter`.
    pub service: String,
    /// `SayHello`.
    pub method: String,
}

impl Method {
    /// `SERVICE/METHOD` (a leading `/` allowed), or why not.
    pub fn parse(s: &str) -> Result<Method, String> {
        let (service, method) = split_method(s)?;
        Ok(Method {
            service: service.into(),
            method: method.into(),
        })
    }

    /// `/SERVICE/METHOD`, the request's `:path`.
    pub fn path(&self) -> String {
        format!("/{self}")
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.service, self.method)
    }
}

/// A run with gRPC calls (`--grpc`, or scenario requests with `grpc =`):
/// which requests are calls is the scenario's
/// ([`crate::scenario::Request::call`]); this is what the run expects of
/// their statuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcRun {
    /// `--expect-status` as codes (empty: no expectation).
    pub expect: Vec<u8>,
}

impl GrpcRun {
    /// `--expect-status` as given, by name.
    pub fn expected_text(&self) -> String {
        self.expect
            .iter()
            .map(|&c| status::name(c))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The headers every call carries besides the caller's metadata.
pub const CONTENT_TYPE: &str = "application/grpc";

/// `grpc-timeout` for a deadline of `d`: the largest unit that keeps the
/// value within gRPC's eight digits without rounding it below `d`'s
/// whole milliseconds (`2000m`, `90S`).
pub fn timeout_header(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return format!("{}u", d.as_micros().clamp(1, 99_999_999));
    }
    if ms < 100_000_000 {
        return format!("{ms}m");
    }
    format!("{}S", d.as_secs().min(99_999_999))
}

/// `SERVICE/METHOD` (a leading `/` allowed): the two parts, or why not.
pub fn split_method(s: &str) -> Result<(&str, &str), String> {
    let t = s.strip_prefix('/').unwrap_or(s);
    match t.split_once('/') {
        Some((svc, m)) if !svc.is_empty() && !m.is_empty() && !m.contains('/') => Ok((svc, m)),
        _ => Err(format!(
            "{s:?} is not SERVICE/METHOD: give e.g. helloworld.Greeter/SayHello"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeouts_in_grpc_units() {
        assert_eq!(timeout_header(Duration::from_secs(2)), "2000m");
        assert_eq!(timeout_header(Duration::from_micros(500)), "500u");
        assert_eq!(timeout_header(Duration::from_secs(200_000)), "200000S");
    }

    #[test]
    fn methods_split() {
        assert_eq!(split_method("a.B/C"), Ok(("a.B", "C")));
        assert_eq!(split_method("/a.B/C"), Ok(("a.B", "C")));
        assert!(split_method("a.B").is_err());
        assert!(split_method("a.B/").is_err());
        assert!(split_method("a/B/C").is_err());
    }
}
