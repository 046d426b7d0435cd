//! The socket calls io_uring does not make for us, shared by the io_uring
//! engine and the built-in target.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// A socket address in the form `connect` takes, kept at a stable address
/// for the lifetime of a shard (io_uring reads it when the SQE is issued).
pub struct SockAddr {
    pub storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
    pub family: libc::c_int,
}

impl SockAddr {
    pub fn new(addr: SocketAddr) -> Box<SockAddr> {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let (len, family) = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for
                // sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                (std::mem::size_of::<libc::sockaddr_in>(), libc::AF_INET)
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for
                // sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                (std::mem::size_of::<libc::sockaddr_in6>(), libc::AF_INET6)
            }
        };
        Box::new(SockAddr {
            storage,
            len: len as libc::socklen_t,
            family,
        })
    }

    pub fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }
}

/// A non-blocking, close-on-exec TCP socket (client or listener).
pub fn stream_socket(family: libc::c_int) -> io::Result<RawFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A client socket with Nagle off (requests are small and must leave at
/// once).
pub fn tcp_socket(family: libc::c_int) -> io::Result<RawFd> {
    let fd = stream_socket(family)?;
    let one: libc::c_int = 1;
    // SAFETY: fd is ours; the option value points to a live c_int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// Binds client socket `fd` to source address `src` (port 0) before it
/// connects. `IP_BIND_ADDRESS_NO_PORT` leaves the port to `connect`, which
/// picks one for the whole 4-tuple: the address then has its ~28k
/// ephemeral ports for each destination, not once for all of them.
pub fn bind_source(fd: RawFd, src: &SockAddr) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: fd is ours; the option value points to a live c_int. A
    // kernel without the option (< 4.2) ignores it: bind then picks the
    // port, which still works, with fewer ports.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // SAFETY: `src` is a valid sockaddr of `src.len` bytes.
    if unsafe { libc::bind(fd, src.as_ptr(), src.len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Checks that this host can use `ip` as a source address: binds a
/// throwaway socket to it (so a typo is found before the run).
pub fn check_source(ip: std::net::IpAddr) -> io::Result<()> {
    let src = SockAddr::new(SocketAddr::new(ip, 0));
    let fd = tcp_socket(src.family)?;
    let r = bind_source(fd, &src);
    close(fd);
    r
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

/// Ends a connection now: [`shutdown`], then [`close`].
pub fn shutdown_and_close(fd: RawFd) {
    shutdown(fd);
    close(fd);
}
