//! The socket calls io_uring does not make for us, shared by the io_uring
//! engine and the built-in target, through socket2 where it has them: TCP
//! and Unix stream sockets, and UDP sockets for QUIC.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

pub use socket2::SockAddr;
use socket2::{Socket, Type};

/// A non-blocking, close-on-exec stream socket (client or listener) for
/// addresses like `addr`: TCP, or Unix for a path.
pub fn stream_socket(addr: &SockAddr) -> io::Result<Socket> {
    // socket2 sets close-on-exec on every socket it makes.
    Socket::new(addr.domain(), Type::STREAM.nonblocking(), None)
}

/// A client socket for `addr` (TCP, or a Unix socket path), with Nagle off
/// on TCP (requests are small and must leave at once), bound to `source`
/// when given; the caller owns the descriptor from here (see [`close`]).
pub fn client_socket(addr: &SockAddr, source: Option<&SockAddr>) -> io::Result<RawFd> {
    let s = stream_socket(addr)?;
    if !addr.is_unix() {
        // Best effort, as before socket2: a socket that keeps Nagle still
        // works.
        let _ = s.set_tcp_nodelay(true);
    }
    if let Some(src) = source {
        bind_source(&s, src)?;
    }
    Ok(s.into_raw_fd())
}

/// A connected, non-blocking, close-on-exec UDP socket for QUIC to `addr`:
///
/// - never fragmented, and the kernel's path MTU not applied
///   (`IP_PMTUDISC_PROBE`): QUIC probes the path MTU itself (quinn's MTU
///   discovery needs it, as quinn-udp sets it), and a datagram too large
///   for the path is then dropped, which QUIC's probing expects;
/// - with `UDP_GRO` when `gro` and the kernel has it (Linux ≥ 5.0): a burst
///   of datagrams from the server comes as one receive, with their size
///   (see [`super::udp`]); [`UdpSocket::gro`] says whether it is on;
/// - bound to `source` as TCP sockets are ([`client_socket`]): the port is
///   picked at connect, per destination.
///
/// Connecting only fixes the peer: it is instant and sends nothing. A
/// closed port shows as `ECONNREFUSED` on a later receive or send (the
/// ICMP error), so one socket per connection keeps that error to it.
pub fn udp_socket(addr: &SockAddr, source: Option<&SockAddr>, gro: bool) -> io::Result<UdpSocket> {
    let s = Socket::new(addr.domain(), Type::DGRAM.nonblocking(), None)?;
    if addr.is_ipv6() {
        set_int_opt(
            &s,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )?;
    } else {
        set_int_opt(
            &s,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )?;
    }
    let gro = gro && set_int_opt(&s, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
    if let Some(src) = source {
        bind_source(&s, src)?;
    }
    s.connect(addr)?;
    Ok(UdpSocket {
        fd: s.into_raw_fd(),
        gro,
    })
}

/// A UDP socket from [`udp_socket`]; the caller owns the descriptor (see
/// [`close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSocket {
    pub fd: RawFd,
    /// Receives may hold several datagrams (UDP_GRO).
    pub gro: bool,
}

/// `setsockopt` of an int option socket2 has no setter for.
fn set_int_opt(
    s: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the descriptor is `s`'s, open for this call; the option value
    // points to a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            &value as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds client socket `s` to source address `src` (port 0) before it
/// connects. `IP_BIND_ADDRESS_NO_PORT` leaves the port to `connect`, which
/// picks one for the whole 4-tuple: the address then has its ~28k
/// ephemeral ports for each destination, not once for all of them.
fn bind_source(s: &Socket, src: &SockAddr) -> io::Result<()> {
    // A kernel without this option (< 4.2) refuses it: bind then picks the
    // port, which still works, with fewer ports.
    let _ = set_int_opt(s, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
    s.bind(src)
}

/// Checks that this host can use `ip` as a source address: binds a
/// throwaway socket to it (so a typo is found before the run).
pub fn check_source(ip: std::net::IpAddr) -> io::Result<()> {
    let src = SockAddr::from(SocketAddr::new(ip, 0));
    bind_source(&stream_socket(&src)?, &src)
}

/// Shuts a connection down both ways: receives and sends still pending on
/// it in a ring complete now (the ring holds its own reference to the
/// file, so `close` alone would leave them pending).
pub fn shutdown(fd: RawFd) {
    // SAFETY: plain syscall on a descriptor we own; errors (ENOTCONN on a
    // socket that never connected) change nothing.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Closes a descriptor we own, once (callers forget it afterwards).
pub fn close(fd: RawFd) {
    // SAFETY: fd is ours and closed exactly once.
    unsafe { libc::close(fd) };
}
