//! Loss made by the kernel, for the HTTP/3 tests (design note http3.md §4):
//! two network namespaces, a client and a server, joined by a veth pair,
//! each with an nftables rule on its *input* hook that drops a share of
//! the UDP datagrams arriving there (`numgen random mod 100 < P`). On the
//! output hook a dropped datagram fails the sender's send() with EPERM,
//! which tests error paths, not loss. There is no netem on this kernel.
//!
//! Root, iproute2 and nft only: [`LossyLink::new`] skips loudly without
//! them (a failure under LOADGEN_REQUIRE_ALL=1). The namespaces are removed
//! when the link is dropped, even when the test fails.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netns::{Namespaces, in_namespace, ip};

/// Which end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

pub struct LossyLink {
    client_ns: String,
    server_ns: String,
    pub client_ip: Ipv4Addr,
    pub server_ip: Ipv4Addr,
    /// Deletes both namespaces, and with them the veth pair.
    _made: Namespaces,
}

/// The nft table each side's rule lives in.
const TABLE: &str = "loadgen_loss";

impl LossyLink {
    /// A fresh link dropping `to_server` % of the UDP datagrams that reach
    /// the server's namespace and `to_client` % of those that reach the
    /// client's. None (after a loud SKIP) without root, ip or nft.
    pub fn new(to_server: u32, to_client: u32) -> Option<LossyLink> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            crate::skip("the netns loss link needs root (network namespaces, nftables)");
            return None;
        }
        if !crate::have_cmd("ip", &["-V"]) || !crate::have_cmd("nft", &["--version"]) {
            crate::skip(
                "the netns loss link needs iproute2 and nftables (apt-get install iproute2 nftables)",
            );
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id();
        let (client_ns, server_ns) = (format!("lg-lossc-{id}-{k}"), format!("lg-losss-{id}-{k}"));
        let link = LossyLink {
            _made: Namespaces(vec![client_ns.clone(), server_ns.clone()]),
            client_ns,
            server_ns,
            client_ip: Ipv4Addr::new(198, 19, (k % 250) as u8, 2),
            server_ip: Ipv4Addr::new(198, 19, (k % 250) as u8, 1),
        };
        match link.build(id, k, to_server, to_client) {
            Ok(()) => {
                crate::privileged_ran();
                Some(link)
            }
            Err(e) => {
                crate::skip(&format!("cannot make the netns loss link: {e}"));
                None
            }
        }
    }

    fn build(&self, id: u32, k: u32, to_server: u32, to_client: u32) -> Result<(), String> {
        let (c_end, s_end) = (format!("llc{id}{k}"), format!("lls{id}{k}"));
        // Interface names are at most 15 bytes.
        let (c_end, s_end) = (&c_end[..c_end.len().min(15)], &s_end[..s_end.len().min(15)]);
        for ns in [&self.client_ns, &self.server_ns] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "link",
            "add",
            c_end,
            "netns",
            &self.client_ns,
            "type",
            "veth",
            "peer",
            "name",
            s_end,
            "netns",
            &self.server_ns,
        ])?;
        for (ns, end, addr) in [
            (&self.client_ns, c_end, self.client_ip),
            (&self.server_ns, s_end, self.server_ip),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", end])?;
            ip(&["-n", ns, "link", "set", end, "up"])?;
        }
        self.drop_rule(Side::Server, to_server)?;
        self.drop_rule(Side::Client, to_client)
    }

    fn ns(&self, side: Side) -> &str {
        match side {
            Side::Client => &self.client_ns,
            Side::Server => &self.server_ns,
        }
    }

    /// The input-hook rule, with a counter of what it dropped.
    fn drop_rule(&self, side: Side, percent: u32) -> Result<(), String> {
        let rule = if percent > 0 {
            format!("meta l4proto udp numgen random mod 100 < {percent} counter drop")
        } else {
            String::new()
        };
        let script = format!(
            "table inet {TABLE} {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  {rule}\n }}\n}}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.ns(side), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft stdin: {e}"))?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Datagrams the rule on `side` has dropped so far (nft's counter).
    pub fn dropped(&self, side: Side) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                self.ns(side),
                "nft",
                "list",
                "table",
                "inet",
                TABLE,
            ])
            .output()
            .expect("nft list");
        let text = String::from_utf8_lossy(&out.stdout);
        // "... counter packets 97 bytes 4074 drop"
        text.split_once("counter packets ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The address of `side` on the link.
    pub fn ip(&self, side: Side) -> Ipv4Addr {
        match side {
            Side::Client => self.client_ip,
            Side::Server => self.server_ip,
        }
    }

    /// A UDP socket bound in `side`'s namespace to its address and `port`
    /// (0: any). A thread enters the namespace to make it; the socket stays
    /// there and can be used from any thread.
    pub fn udp_socket(&self, side: Side, port: u16) -> std::io::Result<UdpSocket> {
        let addr = SocketAddr::from((self.ip(side), port));
        in_namespace(self.ns(side), move || UdpSocket::bind(addr))
    }

    /// `program` to run in `side`'s namespace (`ip netns exec`).
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(side), program]);
        c
    }
}
