//! The socket calls io_uring does not make for us, shared by the io_uring
//! engine and the built-in target, through socket2 where it has them.

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

/// Binds client socket `s` to source address `src` (port 0) before it
/// connects. `IP_BIND_ADDRESS_NO_PORT` leaves the port to `connect`, which
/// picks one for the whole 4-tuple: the address then has its ~28k
/// ephemeral ports for each destination, not once for all of them.
fn bind_source(s: &Socket, src: &SockAddr) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is `s`'s, open for this call; the option
    // value points to a live c_int of the size given. socket2 has no
    // setter for this option. A kernel without it (< 4.2) ignores it: bind
    // then picks the port, which still works, with fewer ports.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
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
