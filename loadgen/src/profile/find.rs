//! `--profile` without a PID: the process listening on the URL's port,
//! found from /proc/net/tcp{,6} socket inodes and /proc/*/fd links (for
//! `--http3`, the UDP socket bound to it, from /proc/net/udp{,6}), or on
//! the `--unix-socket` path, from /proc/net/unix.

use std::fs;
use std::path::Path;

/// Inodes of sockets in LISTEN state on `port` (any address).
fn listening_inodes(port: u16) -> Vec<u64> {
    inodes_on(port, &["/proc/net/tcp", "/proc/net/tcp6"], "0A")
}

/// Inodes of UDP sockets bound to `port` and not connected (a server's:
/// its remote address is all zeros, state 07). A client's connected
/// socket to that port has it as its remote port, not its local one.
fn udp_server_inodes(port: u16) -> Vec<u64> {
    inodes_on(port, &["/proc/net/udp", "/proc/net/udp6"], "07")
}

/// Inodes of the sockets in `tables` whose local port is `port`, in state
/// `state` (hex, as the tables print it) and, for UDP, unconnected.
fn inodes_on(port: u16, tables: &[&str], state: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for table in tables {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... uid timeout inode
            if cols.len() < 10 || cols[3] != state {
                continue;
            }
            let local_port = cols[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // An unconnected socket's remote port is 0 (a listening TCP
            // socket's too).
            let remote_port = cols[2]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port)
                && remote_port == Some(0)
                && let Ok(inode) = cols[9].parse::<u64>()
                && inode != 0
            {
                out.push(inode);
            }
        }
    }
    out
}

/// `__SO_ACCEPTCON` in /proc/net/unix's flags: the socket listens.
const SO_ACCEPTCON: u32 = 1 << 16;

/// Inodes of Unix sockets listening at `path`. The table shows the path
/// as the server bound it (relative to its directory, perhaps, or
/// through a symlink), so both sides are compared resolved too.
fn listening_unix_inodes(path: &Path) -> Vec<u64> {
    let Ok(text) = fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let resolved = fs::canonicalize(path).ok();
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        // Num RefCount Protocol Flags Type St Inode Path
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 {
            continue;
        }
        let listens = u32::from_str_radix(cols[3], 16).is_ok_and(|f| f & SO_ACCEPTCON != 0);
        let bound = Path::new(cols[7]);
        let same = bound == path
            || resolved
                .as_ref()
                .is_some_and(|r| fs::canonicalize(bound).is_ok_and(|b| &b == r));
        if listens
            && same
            && let Ok(inode) = cols[6].parse::<u64>()
        {
            out.push(inode);
        }
    }
    out
}

/// Processes holding a socket that listens on `port`, lowest PID first.
pub fn pids_listening_on(port: u16) -> Vec<u32> {
    pids_holding(&listening_inodes(port))
}

/// Processes holding an unconnected UDP socket bound to `port` (an
/// HTTP/3 server's), lowest PID first.
pub fn pids_serving_udp(port: u16) -> Vec<u32> {
    pids_holding(&udp_server_inodes(port))
}

/// Processes holding a Unix socket that listens at `path`, lowest PID
/// first.
pub fn pids_listening_at(path: &Path) -> Vec<u32> {
    pids_holding(&listening_unix_inodes(path))
}

/// Processes with a descriptor on one of the sockets `inodes`.
fn pids_holding(inodes: &[u64]) -> Vec<u32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut pids = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .ok()
                .is_some_and(|l| targets.iter().any(|t| l.as_os_str() == t.as_str()))
        });
        if holds {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// True while the process exists and is not a zombie (a zombie has no
/// memory maps left to symbolize against).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
        .is_some_and(|dead| !dead)
}

/// The process's name (`/proc/PID/comm`).
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ourselves_listening() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pids_listening_on(port), vec![std::process::id()]);
        drop(l);
        assert!(pids_listening_on(port).is_empty());
        assert!(comm(std::process::id()).is_some());
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }

    #[test]
    fn finds_ourselves_serving_udp_but_not_a_client_connected_to_it() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        assert_eq!(pids_serving_udp(port), vec![std::process::id()]);
        // No TCP listener there, and a UDP server is no TCP listener.
        assert!(pids_listening_on(port).is_empty());
        drop(server);
        // A client's connected socket names the port as its remote one.
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(peer.local_addr().unwrap()).unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert!(
            pids_serving_udp(client_port).is_empty(),
            "connected: a client"
        );
        assert!(pids_serving_udp(port).is_empty());
    }

    #[test]
    fn finds_ourselves_listening_on_a_unix_socket() {
        let dir = std::env::temp_dir().join(format!("loadgen-find-uds-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(pids_listening_at(&path), vec![std::process::id()]);
        // The same socket through another spelling of its path.
        let dotted = dir.join(".").join("s.sock");
        assert_eq!(pids_listening_at(&dotted), vec![std::process::id()]);
        // A connected (not listening) socket is no listener.
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert!(pids_listening_at(&dir.join("other.sock")).is_empty());
        drop(l);
        assert!(pids_listening_at(&path).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
