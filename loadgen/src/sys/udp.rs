//! UDP datagrams through io_uring, for QUIC: the message headers that a
//! multishot `recvmsg` and a segmented `sendmsg` need, and what a receive
//! completion holds.
//!
//! - Receive: one [`MultiRecv`] header per ring serves every socket's
//!   multishot `recvmsg` (the kernel reads only its name and control
//!   lengths). Each completion names a provided buffer that holds the
//!   kernel's `io_uring_recvmsg_out`, the control messages, then the
//!   payload: [`MultiRecv::parse`]. With UDP_GRO
//!   the payload may be several datagrams of `segment` bytes (the last may
//!   be shorter) that arrived together.
//! - Send: a [`SegmentedSend`] per socket holds the header, the iovec and
//!   the UDP_SEGMENT control message of the one send in flight, so that a
//!   burst of equal datagrams leaves in one call (GSO). Measured on this
//!   project's kernel (6.18): at most 128 segments (129 is EINVAL) and
//!   65507 bytes in all (more is EMSGSIZE).

use std::mem::size_of;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

/// `CMSG_ALIGN`: control messages are aligned to the size of a long.
const fn cmsg_align(n: usize) -> usize {
    (n + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// `CMSG_SPACE(n)`: a control message with `n` bytes of data, padded.
const fn cmsg_space(n: usize) -> usize {
    cmsg_align(size_of::<libc::cmsghdr>()) + cmsg_align(n)
}

/// `CMSG_LEN(n)`: the length field of a control message with `n` bytes.
const fn cmsg_len(n: usize) -> usize {
    cmsg_align(size_of::<libc::cmsghdr>()) + n
}

/// Room for the one control message a receive can carry: UDP_GRO's
/// segment size, an int.
pub const RECV_CONTROL: usize = cmsg_space(size_of::<libc::c_int>());

/// The bytes a provided buffer gives up before the payload: the kernel's
/// `io_uring_recvmsg_out` (16) and the control space.
pub const RECV_OVERHEAD: usize = 16 + RECV_CONTROL;

/// One datagram, or a GRO batch of them, as a receive completion holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    /// The datagrams, back to back.
    pub payload: &'a [u8],
    /// The size of each but the last (UDP_GRO's segment size); the payload's
    /// length when the kernel sent no size (one datagram).
    pub segment: usize,
    /// The buffer was too small: the payload is cut short, and what did
    /// not fit is lost (the kernel does not keep it for the next receive).
    pub truncated: bool,
}

impl<'a> Received<'a> {
    /// The datagrams one by one.
    pub fn datagrams(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.payload.chunks(self.segment.max(1))
    }
}

/// The message header of every multishot `recvmsg` on a ring. Boxed: the
/// kernel may read it until the receive's first completion, so its address
/// must not change while the ring lives (the owner keeps it as long as the
/// ring).
pub struct MultiRecv {
    hdr: Box<libc::msghdr>,
}

impl Default for MultiRecv {
    fn default() -> Self {
        Self::new()
    }
}

impl MultiRecv {
    pub fn new() -> Self {
        // SAFETY: msghdr is plain data; all zeroes is a valid value (null
        // pointers, zero lengths).
        let mut hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        // Connected sockets: no source address wanted. The control space
        // holds the GRO segment size.
        hdr.msg_namelen = 0;
        hdr.msg_controllen = RECV_CONTROL as _;
        MultiRecv { hdr }
    }

    /// The entry that arms a multishot receive on `fd` into buffer group
    /// `bgid`: one completion per datagram (or GRO batch), each naming a
    /// buffer, until one comes without `IORING_CQE_F_MORE`.
    pub fn entry(&self, fd: RawFd, bgid: u16) -> squeue::Entry {
        opcode::RecvMsgMulti::new(types::Fd(fd), &*self.hdr, bgid).build()
    }

    /// What a completion's buffer holds (`buf` is the `res` bytes the
    /// completion names); `None` if it is too short to be a receive.
    pub fn parse<'a>(&self, buf: &'a [u8]) -> Option<Received<'a>> {
        let out = types::RecvMsgOut::parse(buf, &self.hdr).ok()?;
        // The payload follows the header and the whole control space (no
        // name: the socket is connected); `out` lends it only for its own
        // life, so it is cut from `buf` again.
        let payload = &buf[RECV_OVERHEAD..RECV_OVERHEAD + out.payload_data().len()];
        let segment = gro_segment(out.control_data()).unwrap_or(payload.len());
        Some(Received {
            payload,
            segment,
            truncated: out.is_payload_truncated(),
        })
    }
}

/// The UDP_GRO segment size among the control messages, if any.
fn gro_segment(mut control: &[u8]) -> Option<usize> {
    let hdr = cmsg_align(size_of::<libc::cmsghdr>());
    while control.len() >= hdr {
        // SAFETY: at least a cmsghdr's bytes remain; read_unaligned copes
        // with any alignment of the buffer.
        let c: libc::cmsghdr =
            unsafe { std::ptr::read_unaligned(control.as_ptr() as *const libc::cmsghdr) };
        let len = c.cmsg_len as usize;
        if len < hdr || len > control.len() {
            return None;
        }
        if c.cmsg_level == libc::SOL_UDP && c.cmsg_type == libc::UDP_GRO && len >= cmsg_len(4) {
            let mut v = [0u8; 4];
            v.copy_from_slice(&control[hdr..hdr + 4]);
            return Some(i32::from_ne_bytes(v).max(0) as usize);
        }
        control = control.get(cmsg_align(len)..).unwrap_or(&[]);
    }
    None
}

/// Control space with a long's alignment, for the UDP_SEGMENT message.
#[repr(C, align(8))]
struct SendControl([u8; cmsg_space(size_of::<u16>())]);

/// The header, iovec and UDP_SEGMENT control message of one socket's send
/// in flight. Boxed by [`SegmentedSend::new`], so the pointers between them
/// and the kernel's reads stay valid while the send is in flight.
pub struct SegmentedSend {
    hdr: libc::msghdr,
    iov: libc::iovec,
    control: SendControl,
}

impl SegmentedSend {
    pub fn new() -> Box<Self> {
        Box::new(SegmentedSend {
            // SAFETY: plain data; all zeroes is a valid msghdr and iovec.
            hdr: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            iov: unsafe { std::mem::zeroed() },
            control: SendControl([0; cmsg_space(size_of::<u16>())]),
        })
    }

    /// The entry that sends `data` on connected socket `fd`: as datagrams
    /// of `segment` bytes (the last may be shorter) when `segment` is given
    /// and below `data.len()`, else as one datagram.
    ///
    /// # Safety
    /// `data` must stay valid and unchanged, and `self` must be neither
    /// moved out of its box, dropped nor used for another send, until the
    /// send's completion is reaped.
    pub unsafe fn entry(&mut self, fd: RawFd, data: &[u8], segment: Option<u16>) -> squeue::Entry {
        self.iov.iov_base = data.as_ptr() as *mut libc::c_void;
        self.iov.iov_len = data.len();
        self.hdr.msg_name = std::ptr::null_mut();
        self.hdr.msg_namelen = 0;
        self.hdr.msg_iov = &mut self.iov;
        self.hdr.msg_iovlen = 1;
        match segment.filter(|&s| s > 0 && (s as usize) < data.len()) {
            Some(s) => {
                let c = libc::cmsghdr {
                    cmsg_len: cmsg_len(size_of::<u16>()) as _,
                    cmsg_level: libc::SOL_UDP,
                    cmsg_type: libc::UDP_SEGMENT,
                };
                let hdr = cmsg_align(size_of::<libc::cmsghdr>());
                // SAFETY: the control buffer holds a cmsghdr and 2 bytes
                // after its aligned end (its size is CMSG_SPACE(2)).
                unsafe {
                    std::ptr::write_unaligned(self.control.0.as_mut_ptr() as *mut libc::cmsghdr, c)
                };
                self.control.0[hdr..hdr + 2].copy_from_slice(&s.to_ne_bytes());
                self.hdr.msg_control = self.control.0.as_mut_ptr() as *mut libc::c_void;
                self.hdr.msg_controllen = self.control.0.len() as _;
            }
            None => {
                self.hdr.msg_control = std::ptr::null_mut();
                self.hdr.msg_controllen = 0;
            }
        }
        opcode::SendMsg::new(types::Fd(fd), &self.hdr).build()
    }
}

#[cfg(test)]
mod tests {
    use std::mem::ManuallyDrop;
    use std::net::{SocketAddr, UdpSocket as StdUdp};
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::time::{Duration, Instant};

    use io_uring::{cqueue, opcode};

    use super::*;
    use crate::sys::sock::{SockAddr, close, shutdown, udp_socket};
    use crate::sys::uring::{BatchWait, Completion, RingMode, Uring};

    const RECV: u64 = 1;
    const SEND: u64 = 2;
    const CANCEL: u64 = 3;

    fn ring(udp_bufs: u16, size: usize) -> Uring {
        let mut u = Uring::new(64, RingMode::DeferTaskrun, 4, 4096, 0).unwrap();
        u.enable_udp(udp_bufs, size, 1).unwrap();
        u
    }

    fn push(u: &mut Uring, e: squeue::Entry, user_data: u64) {
        // SAFETY: every entry in these tests points to a header the test
        // keeps alive (the ring's, or a boxed SegmentedSend and its data
        // held until the completions are waited for).
        assert!(unsafe { u.push(&e.user_data(user_data)) });
    }

    fn arm(u: &mut Uring, fd: RawFd) {
        let e = u.udp_recv_entry(fd).unwrap();
        push(u, e, RECV);
    }

    /// Reaps into `log` (every completion of the test so far) until `done`
    /// says so of it, or 2 s.
    fn wait(u: &mut Uring, log: &mut Vec<Completion>, mut done: impl FnMut(&[Completion]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = [Completion::default(); 16];
        while !done(log) {
            assert!(Instant::now() < deadline, "timed out with {log:?}");
            u.enter(Duration::from_millis(20), BatchWait::NONE).unwrap();
            let n = u.reap(&mut buf);
            log.extend_from_slice(&buf[..n]);
        }
    }

    /// Cancels the receive on `fd` (the only one armed) and closes it once
    /// the receive's last completion came.
    fn end(u: &mut Uring, fd: RawFd) {
        push(u, opcode::AsyncCancel::new(RECV).build(), CANCEL);
        let mut log = Vec::new();
        wait(u, &mut log, |c| {
            c.iter()
                .any(|c| c.user_data == RECV && !cqueue::more(c.flags))
        });
        close(fd);
    }

    fn find(log: &[Completion], user_data: u64) -> Option<&Completion> {
        log.iter().find(|c| c.user_data == user_data)
    }

    fn local_addr(fd: RawFd) -> SocketAddr {
        // SAFETY: fd is an open UDP socket; ManuallyDrop keeps it open.
        let s = ManuallyDrop::new(unsafe { StdUdp::from_raw_fd(fd) });
        s.local_addr().unwrap()
    }

    fn burst() -> Vec<u8> {
        (0..10u8).flat_map(|i| [i; 1200]).collect()
    }

    /// Sends `data` from `fd` through the ring as `segment`-byte datagrams
    /// and waits for the send's completion: its result.
    fn send(
        u: &mut Uring,
        log: &mut Vec<Completion>,
        fd: RawFd,
        data: &[u8],
        segment: Option<u16>,
    ) -> i32 {
        log.retain(|c| c.user_data != SEND);
        let mut s = SegmentedSend::new();
        // SAFETY: `s` and `data` outlive the wait for the completion below.
        let e = unsafe { s.entry(fd, data, segment) };
        push(u, e, SEND);
        wait(u, log, |c| find(c, SEND).is_some());
        find(log, SEND).unwrap().result
    }

    #[test]
    fn a_gso_burst_arrives_as_separate_datagrams() {
        let mut u = ring(16, 2048);
        let mut log = Vec::new();
        let rx = StdUdp::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = udp_socket(&SockAddr::from(rx.local_addr().unwrap()), None, false).unwrap();
        assert!(!tx.gro);
        let data = burst();
        assert_eq!(send(&mut u, &mut log, tx.fd, &data, Some(1200)), 12000);
        let mut buf = [0u8; 65536];
        for i in 0..10u8 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 1200][..], "datagram {i}");
        }
        // Without a segment size it is one datagram, as a plain send.
        assert_eq!(send(&mut u, &mut log, tx.fd, &data[..1300], None), 1300);
        assert_eq!(rx.recv(&mut buf).unwrap(), 1300);
        close(tx.fd);
    }

    /// Receives on `fd` until `bytes` of payload came: (segment size,
    /// datagrams) per completion, all with the receive still armed.
    fn receive(u: &mut Uring, log: &mut Vec<Completion>, bytes: usize) -> Vec<(usize, usize)> {
        let recvd = |log: &[Completion]| -> usize {
            log.iter()
                .filter(|c| c.user_data == RECV && c.result > 0)
                .map(|c| c.result as usize - RECV_OVERHEAD)
                .sum()
        };
        wait(u, log, |c| recvd(c) >= bytes);
        let mut got = Vec::new();
        let mut payload = 0;
        for c in log.iter().filter(|c| c.user_data == RECV) {
            assert!(cqueue::more(c.flags), "the multishot receive stays armed");
            let bid = cqueue::buffer_select(c.flags).unwrap();
            let r = u.udp_received(bid, c.result as usize).unwrap();
            assert!(!r.truncated);
            payload += r.payload.len();
            got.push((r.segment, r.datagrams().count()));
            u.udp_recycle(bid);
        }
        u.publish();
        assert_eq!(payload, bytes);
        log.retain(|c| c.user_data != RECV);
        got
    }

    #[test]
    fn multishot_receives_datagrams_and_gro_batches_with_their_stride() {
        for gro in [false, true] {
            let mut u = ring(16, 16384);
            let mut log = Vec::new();
            let peer = StdUdp::bind("127.0.0.1:0").unwrap();
            let rx = udp_socket(&SockAddr::from(peer.local_addr().unwrap()), None, gro).unwrap();
            assert_eq!(rx.gro, gro, "this kernel has UDP_GRO");
            peer.connect(local_addr(rx.fd)).unwrap();
            arm(&mut u, rx.fd);
            // A GSO burst from the peer's socket (a std socket, sent through
            // the ring for its UDP_SEGMENT message).
            assert_eq!(
                send(&mut u, &mut log, peer.as_raw_fd(), &burst(), Some(1200)),
                12000
            );
            let got = receive(&mut u, &mut log, 12000);
            if gro {
                // One receive: ten datagrams of 1200 bytes.
                assert_eq!(got, [(1200, 10)]);
            } else {
                assert_eq!(got, [(1200, 1); 10]);
            }
            // Plain datagrams of different sizes, one receive each.
            for n in [1, 700, 1452] {
                peer.send(&vec![7; n]).unwrap();
                assert_eq!(receive(&mut u, &mut log, n), [(n, 1)]);
            }
            end(&mut u, rx.fd);
        }
    }

    #[test]
    fn a_batch_too_large_for_the_buffer_is_counted_as_truncated() {
        let mut u = ring(16, 4096);
        let mut log = Vec::new();
        let peer = StdUdp::bind("127.0.0.1:0").unwrap();
        let rx = udp_socket(&SockAddr::from(peer.local_addr().unwrap()), None, true).unwrap();
        peer.connect(local_addr(rx.fd)).unwrap();
        arm(&mut u, rx.fd);
        assert_eq!(
            send(&mut u, &mut log, peer.as_raw_fd(), &burst(), Some(1200)),
            12000
        );
        wait(&mut u, &mut log, |c| find(c, RECV).is_some());
        let c = *find(&log, RECV).unwrap();
        let bid = cqueue::buffer_select(c.flags).unwrap();
        let r = u.udp_received(bid, c.result as usize).unwrap();
        assert!(r.truncated);
        assert_eq!(r.payload.len(), 4096 - RECV_OVERHEAD);
        assert_eq!(u.udp_truncated, 1);
        u.udp_recycle(bid);
        u.publish();
        // The rest of the batch is gone: the next receive is the next
        // datagram.
        peer.send(&[9; 10]).unwrap();
        log.clear();
        assert_eq!(receive(&mut u, &mut log, 10), [(10, 1)]);
        end(&mut u, rx.fd);
    }

    #[test]
    fn a_closed_port_fails_the_receive_with_econnrefused() {
        let mut u = ring(16, 2048);
        let mut log = Vec::new();
        let closed = StdUdp::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let s = udp_socket(&SockAddr::from(closed), None, true).unwrap();
        arm(&mut u, s.fd);
        // The send itself goes out; the ICMP error that comes back ends the
        // receive.
        assert_eq!(send(&mut u, &mut log, s.fd, &[1; 100], None), 100);
        wait(&mut u, &mut log, |c| find(c, RECV).is_some());
        let c = find(&log, RECV).unwrap();
        assert_eq!(c.result, -libc::ECONNREFUSED);
        assert!(!cqueue::more(c.flags), "a failed multishot receive is over");
        close(s.fd);
    }

    #[test]
    fn cancel_ends_a_multishot_receive_and_shutdown_does_not() {
        let mut u = ring(16, 2048);
        let mut log = Vec::new();
        let peer = StdUdp::bind("127.0.0.1:0").unwrap();
        let s = udp_socket(&SockAddr::from(peer.local_addr().unwrap()), None, false).unwrap();
        arm(&mut u, s.fd);
        // Unlike TCP's, a UDP receive does not see the shutdown (its
        // recvmsg ignores RCV_SHUTDOWN and the ring re-arms on the wake-up):
        // the engine must cancel UDP receives, not shut their sockets.
        shutdown(s.fd);
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut buf = [Completion::default(); 4];
        while Instant::now() < deadline {
            u.enter(Duration::from_millis(20), BatchWait::NONE).unwrap();
            let n = u.reap(&mut buf);
            log.extend_from_slice(&buf[..n]);
        }
        assert_eq!(log.len(), 0, "{log:?}");
        push(&mut u, opcode::AsyncCancel::new(RECV).build(), CANCEL);
        wait(&mut u, &mut log, |c| {
            find(c, RECV).is_some() && find(c, CANCEL).is_some()
        });
        let c = find(&log, RECV).unwrap();
        assert!(!cqueue::more(c.flags));
        assert_eq!(c.result, -libc::ECANCELED);
        assert_eq!(find(&log, CANCEL).unwrap().result, 0);
        close(s.fd);
    }
}
