//! The exit status, decided in one place. Each cause of a non-zero status
//! is a [`Cause`] with its own line on stderr; the status is the smallest
//! cause's code, so 1 (a run that reached nothing) wins over 3 (slower
//! than the baseline), 4 (unexpected statuses) and 5 (a threshold failed),
//! and the reports are written either way.

use std::fmt;
use std::process::ExitCode;

use loadgen::peer::Peer;
use loadgen::stats::ShardStats;
use loadgen::threshold::Outcome;

/// Why a command does not exit 0.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// `--http2`, and the server does not speak it (ALPN chose another
    /// protocol, or it answered the h2c preface in HTTP/1.1).
    NoHttp2 { why: String },
    /// `--http3`, and the server speaks no QUIC version we do.
    NoHttp3 { why: String },
    /// The server's certificate did not verify.
    Certificate { host: String, why: String },
    /// Every TLS handshake failed, though connections were made (`quic`:
    /// QUIC handshakes, `--http3`).
    NoHandshake { addr: Peer, failed: u64, quic: bool },
    /// No connection could be made (`quic`: the UDP port refused QUIC).
    NoConnection { addr: Peer, errors: u64, quic: bool },
    /// `-n`: the server was reached, then refused every connection (or
    /// handshake) for a whole `--timeout`; the run ended short.
    LostTarget { addr: Peer },
    /// `--fail-if-slower PCT`: significantly slower than the baseline.
    Slower { pct: f64 },
    /// Responses with a status outside `--expect-status`.
    Unexpected { count: u64, expected: String },
    /// `--threshold`s that failed, of how many.
    Thresholds { failed: Vec<String>, of: usize },
}

impl Cause {
    pub fn code(&self) -> u8 {
        match self {
            // A usage error in effect: the flag does not fit the server.
            Cause::NoHttp2 { .. } | Cause::NoHttp3 { .. } => 2,
            Cause::Certificate { .. }
            | Cause::NoHandshake { .. }
            | Cause::NoConnection { .. }
            | Cause::LostTarget { .. } => 1,
            Cause::Slower { .. } => 3,
            Cause::Unexpected { .. } => 4,
            Cause::Thresholds { .. } => 5,
        }
    }

    /// The thresholds that failed, if any did.
    pub fn of_thresholds(outcomes: &[Outcome]) -> Option<Cause> {
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.ok)
            .map(|o| o.expr.clone())
            .collect();
        (!failed.is_empty()).then_some(Cause::Thresholds {
            failed,
            of: outcomes.len(),
        })
    }

    /// `count` responses outside `--expect-status` (`None`: not given).
    pub fn of_unexpected(count: Option<u64>, expected: impl FnOnce() -> String) -> Option<Cause> {
        count.filter(|&n| n > 0).map(|count| Cause::Unexpected {
            count,
            expected: expected(),
        })
    }

    /// A run that reached nothing: the certificate, the handshake or the
    /// connection failed, said as the first of these that applies.
    pub fn of_reach(r: &Reach, host: &str, addr: &Peer) -> Option<Cause> {
        if let Some(why) = &r.h2_refused {
            return Some(Cause::NoHttp2 { why: why.clone() });
        }
        if let Some(why) = &r.h3_refused {
            return Some(Cause::NoHttp3 { why: why.clone() });
        }
        if let Some(why) = &r.cert_error {
            return Some(Cause::Certificate {
                host: host.to_string(),
                why: why.clone(),
            });
        }
        if r.lost_target {
            return Some(Cause::LostTarget { addr: addr.clone() });
        }
        if r.responses > 0 {
            return None;
        }
        if r.tls_failed > 0 && r.connect_errors == 0 {
            return Some(Cause::NoHandshake {
                addr: addr.clone(),
                failed: r.tls_failed,
                quic: r.quic,
            });
        }
        (r.connect_errors > 0).then(|| Cause::NoConnection {
            addr: addr.clone(),
            errors: r.connect_errors,
            quic: r.quic,
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::NoHttp2 { why } => write!(f, "{why}; drop --http2"),
            Cause::NoHttp3 { why } => write!(f, "{why}; drop --http3"),
            Cause::Certificate { host, why } => write!(
                f,
                "TLS certificate verification failed for {host}: {why}; trust its CA with --cacert FILE, or skip verification with -k"
            ),
            // Over QUIC a closed UDP port or a silent one is no sign that
            // the server is down or its TLS wrong: it may serve only TCP.
            Cause::NoHandshake {
                addr,
                failed,
                quic: true,
            } => write!(
                f,
                "no QUIC handshake with {addr} succeeded ({failed} failed; see the TLS errors line): does the server serve HTTP/3 on that UDP port (a firewall may drop UDP), and accept this client (--cert)? If not, drop --http3"
            ),
            Cause::NoHandshake { addr, failed, .. } => write!(
                f,
                "no TLS handshake with {addr} succeeded ({failed} failed; see the TLS errors line): is it an https server, and does it accept this client (--tls-version, --ciphers, --cert)?"
            ),
            Cause::NoConnection {
                addr,
                errors,
                quic: true,
            } => write!(
                f,
                "could not connect to {addr} over QUIC ({errors} connect errors: its UDP port is closed): is the server running, and does it serve HTTP/3 on that UDP port? If not, drop --http3"
            ),
            Cause::NoConnection { addr, errors, .. } => write!(
                f,
                "could not connect to {addr} ({errors} connect errors): is the server running?"
            ),
            Cause::LostTarget { addr } => write!(
                f,
                "lost {addr} mid-run: no connection or handshake succeeded for a whole --timeout, so the run ended before -n was reached (see the error lines)"
            ),
            Cause::Slower { pct } => {
                write!(
                    f,
                    "significantly slower than the baseline by {pct}% or more"
                )
            }
            Cause::Unexpected { count, expected } => write!(
                f,
                "{count} responses had a status outside --expect-status {expected}"
            ),
            Cause::Thresholds { failed, of } => write!(
                f,
                "{} of {of} thresholds failed: {}",
                failed.len(),
                failed.join(", ")
            ),
        }
    }
}

/// What a run's totals say about reaching the server at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reach {
    pub responses: u64,
    pub connect_errors: u64,
    pub tls_failed: u64,
    pub cert_error: Option<String>,
    /// Why the server would not speak HTTP/2 (`--http2`).
    pub h2_refused: Option<String>,
    /// Why the server would not speak QUIC (`--http3`).
    pub h3_refused: Option<String>,
    /// `-n` ended short: the target was lost mid-run.
    pub lost_target: bool,
    /// `--http3`: the connections and handshakes were QUIC's.
    pub quic: bool,
}

impl Reach {
    pub fn of(t: &ShardStats) -> Reach {
        Reach {
            responses: t.responses,
            connect_errors: t.errors.connect,
            tls_failed: t.tls.as_ref().map_or(0, |t| t.errors.total()),
            cert_error: t.tls.as_ref().and_then(|t| t.cert_error.clone()),
            h2_refused: t.h2.as_ref().and_then(|h| h.refused.clone()),
            h3_refused: t.quic.as_ref().and_then(|q| q.refused.clone()),
            lost_target: t.lost_target,
            quic: t.quic.is_some(),
        }
    }
}

/// The status `causes` give: 0 with none, else the smallest code.
pub fn exit_code(causes: &[Cause]) -> u8 {
    causes.iter().map(Cause::code).min().unwrap_or(0)
}

/// Says each cause on its own line on stderr, and gives the status.
pub fn finish(causes: &[Cause]) -> ExitCode {
    for c in causes {
        eprintln!("loadgen: {c}");
    }
    ExitCode::from(exit_code(causes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Peer {
        Peer::Tcp("127.0.0.1:9".parse().unwrap())
    }

    fn outcome(expr: &str, ok: bool) -> Outcome {
        Outcome {
            expr: expr.into(),
            ok,
            ..Outcome::default()
        }
    }

    #[test]
    fn nothing_wrong_is_zero() {
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(Cause::of_thresholds(&[outcome("p99<1s", true)]), None);
        assert_eq!(Cause::of_thresholds(&[]), None);
        assert_eq!(Cause::of_unexpected(Some(0), String::new), None);
        assert_eq!(Cause::of_unexpected(None, String::new), None);
        let reached = Reach {
            responses: 5,
            connect_errors: 3,
            tls_failed: 2,
            cert_error: None,
            h2_refused: None,
            h3_refused: None,
            lost_target: false,
            quic: true,
        };
        assert_eq!(Cause::of_reach(&reached, "h", &addr()), None);
    }

    #[test]
    fn a_target_lost_mid_run_fails_the_run_though_it_answered() {
        let lost = Reach {
            responses: 50,
            connect_errors: 3,
            lost_target: true,
            ..Reach::default()
        };
        let c = Cause::of_reach(&lost, "h", &addr()).unwrap();
        assert_eq!(c.code(), 1);
        assert!(c.to_string().starts_with("lost "), "{c}");
        assert!(c.to_string().contains("before -n was reached"), "{c}");
    }

    #[test]
    fn the_smallest_code_wins_and_one_wins_over_all() {
        let slower = Cause::Slower { pct: 5.0 };
        let unexpected = Cause::of_unexpected(Some(3), || "2xx".into()).unwrap();
        let thresholds = Cause::of_thresholds(&[outcome("a", false)]).unwrap();
        assert_eq!(exit_code(std::slice::from_ref(&thresholds)), 5);
        assert_eq!(exit_code(&[thresholds.clone(), unexpected.clone()]), 4);
        assert_eq!(
            exit_code(&[thresholds.clone(), unexpected.clone(), slower.clone()]),
            3
        );
        let unreachable = Reach {
            connect_errors: 1,
            ..Reach::default()
        };
        let none = Cause::of_reach(&unreachable, "h", &addr()).unwrap();
        assert_eq!(exit_code(&[slower, unexpected, thresholds, none]), 1);
    }

    #[test]
    fn failed_thresholds_are_named() {
        let c = Cause::of_thresholds(&[
            outcome("p99<1ms", false),
            outcome("errors==0", true),
            outcome("rps>=500k", false),
        ])
        .unwrap();
        assert_eq!(c.code(), 5);
        assert_eq!(
            c.to_string(),
            "2 of 3 thresholds failed: p99<1ms, rps>=500k"
        );
    }

    #[test]
    fn a_server_without_http2_is_a_usage_error_that_wins() {
        let r = Reach {
            tls_failed: 2,
            cert_error: Some("unknown issuer".into()),
            h2_refused: Some("the server chose http/1.1".into()),
            ..Reach::default()
        };
        let c = Cause::of_reach(&r, "h", &addr()).unwrap();
        assert_eq!(c.to_string(), "the server chose http/1.1; drop --http2");
        assert_eq!(exit_code(&[c, Cause::Slower { pct: 1.0 }]), 2);
    }

    #[test]
    fn reaching_nothing_says_the_first_cause() {
        let cert = Reach {
            tls_failed: 4,
            cert_error: Some("unknown issuer".into()),
            ..Reach::default()
        };
        let c = Cause::of_reach(&cert, "example.test", &addr()).unwrap();
        assert!(matches!(c, Cause::Certificate { .. }), "{c}");
        assert!(
            c.to_string().contains("example.test: unknown issuer"),
            "{c}"
        );
        // A bad certificate fails the run even when some requests were
        // answered before it was seen.
        let answered = Reach {
            responses: 1,
            ..cert
        };
        assert!(Cause::of_reach(&answered, "h", &addr()).is_some());
        let handshakes = Reach {
            tls_failed: 4,
            ..Reach::default()
        };
        let c = Cause::of_reach(&handshakes, "h", &addr()).unwrap();
        assert_eq!(
            c,
            Cause::NoHandshake {
                addr: addr(),
                failed: 4,
                quic: false
            }
        );
        // Connect errors beside failed handshakes: the connections are
        // the problem.
        let both = Reach {
            tls_failed: 4,
            connect_errors: 2,
            ..Reach::default()
        };
        let c = Cause::of_reach(&both, "h", &addr()).unwrap();
        assert_eq!(
            c,
            Cause::NoConnection {
                addr: addr(),
                errors: 2,
                quic: false
            }
        );
        assert!(c.to_string().contains("is the server running?"), "{c}");
        assert_eq!(Cause::of_reach(&Reach::default(), "h", &addr()), None);
    }

    #[test]
    fn over_quic_reaching_nothing_asks_whether_http3_is_served_there() {
        // A closed UDP port (ICMP refusals are connect errors): the server
        // may well run, over TCP only.
        let closed = Reach {
            connect_errors: 3,
            quic: true,
            ..Reach::default()
        };
        let c = Cause::of_reach(&closed, "h", &addr()).unwrap();
        assert_eq!(c.code(), 1);
        assert_eq!(
            c.to_string(),
            "could not connect to 127.0.0.1:9 over QUIC (3 connect errors: its UDP port is closed): is the server running, and does it serve HTTP/3 on that UDP port? If not, drop --http3"
        );
        // A silent one: the handshakes time out, which says nothing of
        // TLS versions or ciphers.
        let silent = Reach {
            tls_failed: 4,
            quic: true,
            ..Reach::default()
        };
        let c = Cause::of_reach(&silent, "h", &addr()).unwrap();
        assert_eq!(c.code(), 1);
        assert_eq!(
            c.to_string(),
            "no QUIC handshake with 127.0.0.1:9 succeeded (4 failed; see the TLS errors line): does the server serve HTTP/3 on that UDP port (a firewall may drop UDP), and accept this client (--cert)? If not, drop --http3"
        );
    }
}
