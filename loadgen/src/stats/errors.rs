//! Failures by kind. The list below is the only place the kinds are
//! spelled out: the counters, their JSON names, the text report's lines,
//! the HTML breakdown and the Prometheus labels all follow it. Adding a
//! kind is one entry in [`error_kinds!`] (and its row in the README's
//! Errors table).

use std::fmt;

/// The line of the text report a kind is listed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `Socket errors: …` (wrk's line, with resets appended).
    Socket,
    /// `HTTP errors: …`.
    Http,
    /// The `TLS errors: …` line, after the handshake failures.
    Tls,
    /// `HTTP/2 errors: …` (`--http2`).
    Http2,
}

impl Group {
    /// In the order the text report prints them.
    pub const ALL: [Group; 4] = [Group::Socket, Group::Http, Group::Tls, Group::Http2];

    /// `Socket` in `Socket errors: …`.
    pub fn title(self) -> &'static str {
        match self {
            Group::Socket => "Socket",
            Group::Http => "HTTP",
            Group::Tls => "TLS",
            Group::Http2 => "HTTP/2",
        }
    }
}

/// Defines [`ErrorKind`] and [`Errors`] from one list of
/// `Variant field (Group, "text label")` entries, each with its doc. The
/// field name is the kind's name in the JSON report and in Prometheus
/// (`kind="…"`); the order is the order everywhere.
macro_rules! error_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident $field:ident ($group:ident, $label:literal),)+) => {
        /// Why a request (or, for [`ErrorKind::Connect`], a connection
        /// attempt) failed. Both engines report through it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorKind {
            $($(#[doc = $doc])* $variant,)+
        }

        impl ErrorKind {
            /// Every kind, in report order.
            pub const ALL: [ErrorKind; [$(stringify!($variant)),+].len()] =
                [$(ErrorKind::$variant),+];

            /// The kind's name in the JSON report and in Prometheus.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => stringify!($field),)+
                }
            }

            /// The text report's line for the kind.
            pub fn group(self) -> Group {
                match self {
                    $(ErrorKind::$variant => Group::$group,)+
                }
            }

            /// How the text report names the kind on its line.
            pub fn label(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $label,)+
                }
            }
        }

        /// Failures by kind; the field names are part of the JSON
        /// interface.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct Errors {
            $($(#[doc = $doc])* pub $field: u64,)+
        }

        impl Errors {
            /// The count of `kind`.
            pub fn get(&self, kind: ErrorKind) -> u64 {
                match kind {
                    $(ErrorKind::$variant => self.$field,)+
                }
            }

            fn slot(&mut self, kind: ErrorKind) -> &mut u64 {
                match kind {
                    $(ErrorKind::$variant => &mut self.$field,)+
                }
            }
        }
    };
}

error_kinds! {
    /// Connection attempts that failed (refused, unreachable, timed out);
    /// counted per attempt, never against a request.
    Connect connect (Socket, "connect"),
    /// Receive errors other than resets.
    Read read (Socket, "read"),
    /// Send errors.
    Write write (Socket, "write"),
    /// Requests with no complete response within `--timeout`.
    Timeout timeout (Socket, "timeout"),
    /// Responses that violate HTTP/1.1 framing.
    Parse parse (Http, "parse"),
    /// Connections closed by the server in the middle of a response.
    Closed closed (Http, "closed mid-response"),
    /// Connections reset by the peer (ECONNRESET/EPIPE) mid-request.
    Reset reset (Socket, "reset"),
    /// TLS failures after the handshake, with a request in flight (the
    /// handshake's own failures are in the TLS section).
    Tls tls (Tls, "failed requests"),
    /// HTTP/2: streams the server reset (RST_STREAM other than
    /// REFUSED_STREAM, whose requests are sent again).
    StreamReset stream_reset (Http2, "streams reset"),
    /// HTTP/2: connection errors (malformed frames, HPACK, flow control),
    /// one for the request in flight the connection took down.
    Protocol protocol (Http2, "protocol errors"),
}

impl ErrorKind {
    /// What a failed receive or send with `errno` (positive) was: a peer
    /// reset is its own kind whatever the operation; anything else is
    /// `otherwise`.
    pub fn from_errno(errno: i32, otherwise: ErrorKind) -> ErrorKind {
        if errno == libc::ECONNRESET || errno == libc::EPIPE {
            ErrorKind::Reset
        } else {
            otherwise
        }
    }

    /// A failure of a request (every kind but `connect`, which is counted
    /// per connection attempt).
    pub fn is_request_level(self) -> bool {
        self != ErrorKind::Connect
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Errors {
    /// Every kind with its count, in report order.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL.into_iter().map(|k| (k, self.get(k)))
    }

    /// Counts one failure of `kind`.
    pub fn add(&mut self, kind: ErrorKind) {
        self.add_n(kind, 1);
    }

    /// Counts `n` failures of `kind`.
    pub fn add_n(&mut self, kind: ErrorKind, n: u64) {
        *self.slot(kind) += n;
    }

    /// Request-level failures (everything but connect).
    pub fn requests(&self) -> u64 {
        self.iter()
            .filter(|(k, _)| k.is_request_level())
            .map(|(_, n)| n)
            .sum()
    }

    /// Every failure, connect attempts included.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }

    /// Adds `o`'s counts to these.
    pub fn merge(&mut self, o: &Errors) {
        for (k, n) in o.iter() {
            self.add_n(k, n);
        }
    }

    /// `connect 1, read 0, …`: every kind by name.
    pub fn breakdown(&self) -> String {
        self.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Errors with kind `i` counted `1 << i` times: every count distinct,
/// and any sum of them names its kinds.
#[cfg(test)]
pub(crate) fn one_of_each() -> Errors {
    let mut e = Errors::default();
    for (i, k) in ErrorKind::ALL.into_iter().enumerate() {
        e.add_n(k, 1 << i);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_a_json_field_of_its_name_and_counts_apart() {
        let e = one_of_each();
        let v = serde_json::to_value(e).unwrap();
        let fields = v.as_object().unwrap();
        assert_eq!(fields.len(), ErrorKind::ALL.len());
        for (i, k) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(v[k.name()], 1u64 << i, "{k}");
            assert_eq!(e.get(k), 1 << i);
        }
        let all = (1u64 << ErrorKind::ALL.len()) - 1;
        assert_eq!(e.total(), all);
        assert_eq!(e.requests(), all - e.connect);
        let mut twice = e;
        twice.merge(&e);
        assert!(twice.iter().all(|(k, n)| n == 2 * e.get(k)));
        let back: Errors = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        assert!(e.breakdown().starts_with("connect 1, read 2, "));
    }

    #[test]
    fn resets_are_their_own_kind() {
        assert_eq!(
            ErrorKind::from_errno(libc::ECONNRESET, ErrorKind::Read),
            ErrorKind::Reset
        );
        assert_eq!(
            ErrorKind::from_errno(libc::EPIPE, ErrorKind::Write),
            ErrorKind::Reset
        );
        assert_eq!(
            ErrorKind::from_errno(libc::EIO, ErrorKind::Read),
            ErrorKind::Read
        );
    }
}
