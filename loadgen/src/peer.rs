//! Where a run's connections go: the URL's host and port, resolved, or a
//! Unix domain socket (`--unix-socket PATH`, as curl and oha name it).
//! Either way the URL still gives the `Host` header, the path and the
//! scheme (`https://` speaks TLS over the socket too).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The longest path a Unix socket address holds (`sun_path` is 108
/// bytes, the last for the terminating NUL).
pub const MAX_UNIX_PATH: usize = 107;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Peer {
    /// The TCP address, when the peer is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Peer::Tcp(a) => Some(*a),
            Peer::Unix(_) => None,
        }
    }

    /// The socket path, when the peer is a Unix socket.
    pub fn unix(&self) -> Option<&Path> {
        match self {
            Peer::Tcp(_) => None,
            Peer::Unix(p) => Some(p),
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(a: SocketAddr) -> Peer {
        Peer::Tcp(a)
    }
}

/// `127.0.0.1:8080`, or `unix:/run/app.sock` (curl's and nginx's way of
/// writing a socket path where an address goes).
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_written_as_addresses() {
        let tcp = Peer::from("127.0.0.1:80".parse::<SocketAddr>().unwrap());
        assert_eq!(tcp.to_string(), "127.0.0.1:80");
        assert!(tcp.unix().is_none());
        let unix = Peer::Unix("/run/a.sock".into());
        assert_eq!(unix.to_string(), "unix:/run/a.sock");
        assert_eq!(unix.tcp(), None);
    }
}
