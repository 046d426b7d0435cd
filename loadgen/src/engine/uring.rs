//! The default engine: the shard core's actions as io_uring operations,
//! and completions as its events. One ring per shard (SINGLE_ISSUER |
//! DEFER_TASKRUN where the kernel has it), multishot receives into a
//! provided-buffer ring, sends that post no completion when the core says
//! none is needed, and one `io_uring_enter` per turn: submit, then wait for
//! a completion or the core's next wake-up.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types};

use super::log_file::LogFile;
use super::{EngineError, Shard};
use crate::peer::Peer;
use crate::shard::{Action, Core, EngineCaps};
use crate::stats::ShardStats;
use crate::sys::sock::{self, SockAddr};
use crate::sys::udp::SegmentedSend;
use crate::sys::uring::{BatchWait, Completion, SetupError, Uring};

const OP_CONNECT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
/// A send whose success posts no completion; only failures come back.
const OP_SEND_SKIP: u64 = 4;
/// Cancelling a connect the core gave up on (or a UDP socket's receive and
/// send: shutdown does not end them).
const OP_CANCEL: u64 = 5;
/// HTTP/3: a UDP socket's multishot receive, and its segmented send.
const OP_RECVMSG: u64 = 6;
const OP_SENDMSG: u64 = 7;
/// HTTP/3: a socket's last send (its CONNECTION_CLOSE), which may go while
/// another is in flight: its own buffer, in `retired` from the start.
const OP_SENDMSG_LAST: u64 = 8;

const BUF_COUNT: u16 = 1024;
const BUF_SIZE: usize = 4096;
const BUF_GROUP: u16 = 0;
/// HTTP/3's receive buffers. With UDP_GRO a completion brings the
/// datagrams that came together on a connection back to back, up to 64 KiB
/// (a server's GSO send arrives whole on loopback): a smaller buffer
/// would truncate the batch and lose the rest. The buffers are allocated
/// zeroed, so untouched pages cost nothing: what a run keeps resident is
/// what its datagrams filled.
const UDP_BUF_COUNT: u16 = 512;
const UDP_BUF_SIZE: usize = (64 << 10) + crate::sys::udp::RECV_OVERHEAD;
const UDP_BUF_GROUP: u16 = 1;
/// Completions handled per batch.
const CQE_BATCH: usize = 256;
/// How long the end of a run waits for the kernel to finish operations
/// that still reference shard memory.
const SHUTDOWN_WINDOW: Duration = Duration::from_millis(200);

pub const CAPS: EngineCaps = EngineCaps { silent_sends: true };

#[inline]
fn user_data(conn: u32, generation: u32, op: u64) -> u64 {
    ((conn as u64) << 32) | (((generation & 0x00ff_ffff) as u64) << 8) | op
}

#[inline]
fn split_user_data(ud: u64) -> (u32, u32, u64) {
    (
        (ud >> 32) as u32,
        ((ud >> 8) & 0x00ff_ffff) as u32,
        ud & 0xff,
    )
}

/// A slot's socket, as the engine knows it.
#[derive(Clone, Copy)]
struct Socket {
    fd: RawFd,
    generation: u32,
    /// Its connect is still in the ring.
    connecting: bool,
}

const NO_SOCKET: Socket = Socket {
    fd: -1,
    generation: 0,
    connecting: false,
};

/// The ring is created on the shard's own thread (SINGLE_ISSUER) before
/// the start gate opens, so a kernel that refuses it fails the run before
/// any load.
pub fn setup(shard: &Shard<'_>) -> Result<Uring, EngineError> {
    let entries = ((shard.plan.connections * 4).max(64) as u32)
        .next_power_of_two()
        .min(32768);
    let mut uring = Uring::new(entries, shard.cfg.ring_best, BUF_COUNT, BUF_SIZE, BUF_GROUP)
        .map_err(|e| match e {
            SetupError::Ring(e) => EngineError::Ring(e),
            SetupError::BufRing(e) => EngineError::BufRing(e),
        })?;
    if shard.cfg.http3.is_some() {
        uring
            .enable_udp(UDP_BUF_COUNT, UDP_BUF_SIZE, UDP_BUF_GROUP)
            .map_err(EngineError::BufRing)?;
    }
    Ok(uring)
}

/// A UDP socket's send in flight: its header and a copy of its datagrams,
/// both owned here per socket generation, because the core reuses the
/// slot's bytes for the next connection at once and a send parked on a
/// full socket buffer reads them when it retries.
struct UdpSend {
    hdr: Box<SegmentedSend>,
    data: Vec<u8>,
}

/// The shard's sockets and ring over its core. It borrows the core, so it
/// is dropped first on every way out of [`run`] (the end of the run, an
/// error, a panic), and its `Drop` shuts every socket down and waits for
/// the kernel before the core's send bytes can go: see [`Engine::shutdown`].
struct Engine<'c, 'a> {
    uring: Uring,
    core: &'c mut Core<'a>,
    /// The target (a TCP address or a Unix socket path), at an address
    /// that stays put while connects in the ring point at it.
    addr: Box<SockAddr>,
    /// `--bind`: the source addresses (port 0), by index.
    sources: Vec<SockAddr>,
    sockets: Vec<Socket>,
    /// Shut down, to be closed after the next enter: until the kernel has
    /// taken the queued entries naming them, their numbers must not be
    /// reused by a new socket.
    closing: Vec<RawFd>,
    actions: Vec<Action>,
    /// HTTP/3: the slots' sockets are UDP.
    quic: bool,
    /// HTTP/3: each slot's send in flight, by slot; and those of closed
    /// sockets, kept until their completion (by user data).
    udp_sends: Vec<Option<UdpSend>>,
    retired: Vec<(u64, UdpSend)>,
    /// `--request-log`.
    log: Option<&'c mut LogFile>,
    epoch: Instant,
    /// `epoch` on the wall clock, Unix µs.
    wall_us: u64,
}

/// Runs one shard on `uring` until the core says the run is over.
pub fn run(
    shard: &Shard<'_>,
    uring: Uring,
    mut log: Option<LogFile>,
) -> Result<ShardStats, EngineError> {
    let addr = match &shard.cfg.peer {
        Peer::Tcp(a) => SockAddr::from(*a),
        Peer::Unix(path) => SockAddr::unix(path).map_err(EngineError::UnixPath)?,
    };
    let (plan, epoch, wall_us) = super::start_clock(shard);
    let mut core = Core::new(shard.cfg, &plan, CAPS, shard.progress, shard.stop);
    let n = plan.connections;
    let mut e = Engine {
        uring,
        core: &mut core,
        addr: Box::new(addr),
        sources: shard
            .cfg
            .bind
            .iter()
            .map(|&ip| SockAddr::from(std::net::SocketAddr::new(ip, 0)))
            .collect(),
        sockets: vec![NO_SOCKET; n],
        closing: Vec::with_capacity(n),
        actions: Vec::with_capacity(n * 3 + 8),
        quic: shard.cfg.http3.is_some(),
        udp_sends: (0..n).map(|_| None).collect(),
        retired: Vec::new(),
        log: log.as_mut(),
        epoch,
        wall_us,
    };
    let mut cpu = super::CpuMeter::default();
    // An error returns here, dropping `e` (see its `Drop`) before `core`.
    e.drive(&mut cpu)?;
    let mut stats_cpu = crate::stats::ShardStats::new();
    cpu.finish(&mut stats_cpu);
    drop(e);
    if let Some(log) = &mut log {
        log.write(&mut core, true);
    }
    let mut stats = core.into_stats();
    (stats.cpu, stats.runq) = (stats_cpu.cpu, stats_cpu.runq);
    stats.started_at = stats_cpu.started_at;
    Ok(stats)
}

impl Engine<'_, '_> {
    #[inline]
    fn clock(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The run: one enter per turn until the core says it is over.
    fn drive(&mut self, cpu: &mut super::CpuMeter) -> Result<(), EngineError> {
        self.core.start(self.wall_us);
        self.apply(0);
        cpu.watch(self.core);
        let mut batch = [Completion::default(); CQE_BATCH];
        while !self.core.is_finished() {
            let wake = self.core.next_wake();
            let t = self.clock();
            self.core.stamp(t);
            let wait = self.core.batch_wait(t, wake);
            self.enter(Duration::from_nanos(wake.saturating_sub(t)), wait)?;
            let now = self.clock();
            loop {
                let n = self.uring.reap(&mut batch);
                for c in &batch[..n] {
                    self.complete(c, now);
                }
                if n < CQE_BATCH {
                    break;
                }
            }
            self.uring.publish();
            self.core.turn(now);
            cpu.watch(self.core);
            self.apply(now);
            if self.log.is_some() && LogFile::due(self.core) {
                // The sends just queued leave first: the write happens
                // while their answers are on the way.
                let t = self.clock();
                self.core.stamp(t);
                self.uring.submit();
                if let Some(log) = &mut self.log {
                    log.write(self.core, false);
                }
            }
        }
        Ok(())
    }

    fn enter(&mut self, timeout: Duration, wait: BatchWait) -> Result<(), EngineError> {
        let r = self.uring.enter(timeout, wait);
        for fd in self.closing.drain(..) {
            sock::close(fd);
        }
        r.map_err(EngineError::Enter)
    }

    fn push(&mut self, entry: squeue::Entry, now: u64) {
        if self.uring.sq_full() {
            // The push submits what is queued: its sends leave now.
            self.core.stamp(now);
        }
        // SAFETY: every entry points only at memory that outlives its
        // operation: the boxed socket address (copied by the kernel at
        // submission), the core's send bytes (kept unchanged until the send
        // is acked or, unacked, answered; see `Core::send_bytes`), and the
        // buffer ring, owned by `uring`, which frees it only once nothing
        // is in flight. The core outlives the engine, whose `Drop` shuts
        // every socket down before the core can go, however `run` ends: a
        // send still in flight then fails on its shut socket and reads no
        // more, so nothing it points at can reach the wire. (UDP sockets
        // are not shut down: their sends read only the engine's own
        // copies, `UdpSend`, kept until completion or leaked.)
        if !unsafe { self.uring.push(&entry) } {
            // The kernel took nothing: the core's timers will fail the
            // request or the connect, and the slot will be replaced.
        }
    }

    /// Carries out everything the core asked for, including what it asks
    /// in answer to failures found on the way.
    fn apply(&mut self, now: u64) {
        while self.core.has_actions() {
            let mut actions = std::mem::take(&mut self.actions);
            self.core.take_actions(&mut actions);
            for a in actions.drain(..) {
                match a {
                    Action::Connect {
                        conn,
                        generation,
                        source,
                    } => self.connect(conn, generation, source, now),
                    Action::Send {
                        conn,
                        generation,
                        ack,
                    } => self.send(conn, generation, ack, now),
                    Action::Close { conn, generation } => self.close(conn, generation, now),
                }
            }
            self.actions = actions;
        }
    }

    fn connect(&mut self, conn: u32, generation: u32, source: Option<u32>, now: u64) {
        if self.quic {
            self.connect_udp(conn, generation, source, now);
            return;
        }
        let source = source.and_then(|i| self.sources.get(i as usize));
        // Plain syscalls: io_uring's bind is newer than the kernels this
        // engine runs on, and connects are not the hot path.
        let fd = match sock::client_socket(&self.addr, source) {
            Ok(fd) => fd,
            Err(_) => {
                // Out of descriptors or ports (for a source address too):
                // a failed connect.
                self.sockets[conn as usize] = Socket {
                    generation,
                    ..NO_SOCKET
                };
                self.core.on_connect_failed(conn, generation, now);
                return;
            }
        };
        self.sockets[conn as usize] = Socket {
            fd,
            generation,
            connecting: true,
        };
        let entry = opcode::Connect::new(types::Fd(fd), self.addr.as_ptr().cast(), self.addr.len())
            .build()
            .user_data(user_data(conn, generation, OP_CONNECT));
        self.uring.in_flight += 1;
        self.push(entry, now);
    }

    /// HTTP/3: a connected UDP socket is up at once (connecting a UDP
    /// socket sends nothing); its receive is armed before the core sends.
    fn connect_udp(&mut self, conn: u32, generation: u32, source: Option<u32>, now: u64) {
        let source = source.and_then(|i| self.sources.get(i as usize));
        let Ok(u) = sock::udp_socket(&self.addr, source, true) else {
            self.sockets[conn as usize] = Socket {
                generation,
                ..NO_SOCKET
            };
            self.core.on_connect_failed(conn, generation, now);
            return;
        };
        let s = Socket {
            fd: u.fd,
            generation,
            connecting: false,
        };
        self.sockets[conn as usize] = s;
        self.arm_recv(conn, s, now);
        self.core.on_connected(conn, generation, now);
    }

    /// HTTP/3: the core's datagrams, as one send of `segment_size` pieces.
    /// A send without ack is the socket's last (the core closes it next):
    /// it gets a buffer of its own, as the slot's may be in flight.
    fn send_udp(&mut self, conn: u32, s: Socket, ack: bool, now: u64) {
        if !ack {
            let ud = user_data(conn, s.generation, OP_SENDMSG_LAST);
            self.retired.push((
                ud,
                UdpSend {
                    hdr: SegmentedSend::new(),
                    data: Vec::new(),
                },
            ));
            let Some((_, out)) = self.retired.last_mut() else {
                return;
            };
            out.data.extend_from_slice(self.core.send_bytes(conn));
            let segment = u16::try_from(self.core.segment_size(conn)).ok();
            // SAFETY: `out` stays in `retired`, unchanged (its header is
            // boxed; the vector of retired sends may move, their buffers
            // do not), until this send's completion; if the kernel never
            // completes it, `shutdown` leaks it.
            let entry = unsafe { out.hdr.entry(s.fd, &out.data, segment) }.user_data(ud);
            self.uring.in_flight += 1;
            self.push(entry, now);
            return;
        }
        let slot = &mut self.udp_sends[conn as usize];
        let out = slot.get_or_insert_with(|| UdpSend {
            hdr: SegmentedSend::new(),
            data: Vec::new(),
        });
        out.data.clear();
        out.data.extend_from_slice(self.core.send_bytes(conn));
        let segment = u16::try_from(self.core.segment_size(conn)).ok();
        // SAFETY: `out` (its boxed header and its data) stays in
        // `udp_sends`, unchanged, until this send's completion: the core
        // sends again only after that ack, and a close moves it to
        // `retired` until the completion comes (see `close`).
        let entry = unsafe { out.hdr.entry(s.fd, &out.data, segment) }.user_data(user_data(
            conn,
            s.generation,
            OP_SENDMSG,
        ));
        self.uring.in_flight += 1;
        self.push(entry, now);
    }

    fn send(&mut self, conn: u32, generation: u32, ack: bool, now: u64) {
        let s = self.sockets[conn as usize];
        if s.fd < 0 || s.generation != generation {
            return;
        }
        if self.quic {
            self.send_udp(conn, s, ack, now);
            return;
        }
        let bytes = self.core.send_bytes(conn);
        let (op, flags) = if ack {
            (OP_SEND, squeue::Flags::empty())
        } else {
            (OP_SEND_SKIP, squeue::Flags::SKIP_SUCCESS)
        };
        // MSG_WAITALL: the kernel retries short sends itself, so a success
        // means every byte went out.
        let entry = opcode::Send::new(types::Fd(s.fd), bytes.as_ptr(), bytes.len() as u32)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build()
            .flags(flags)
            .user_data(user_data(conn, generation, op));
        if ack {
            self.uring.in_flight += 1;
        }
        self.push(entry, now);
    }

    fn close(&mut self, conn: u32, generation: u32, now: u64) {
        let s = self.sockets[conn as usize];
        if s.fd < 0 || s.generation != generation {
            return;
        }
        self.sockets[conn as usize] = NO_SOCKET;
        if self.quic {
            // Shutdown ends neither a UDP receive nor (maybe) a parked
            // send: cancel both. A send in flight keeps its memory until
            // its completion.
            if let Some(out) = self.udp_sends[conn as usize].take() {
                self.retired
                    .push((user_data(conn, generation, OP_SENDMSG), out));
            }
            for op in [OP_RECVMSG, OP_SENDMSG] {
                let entry = opcode::AsyncCancel::new(user_data(conn, generation, op))
                    .build()
                    .user_data(user_data(conn, generation, OP_CANCEL));
                self.uring.in_flight += 1;
                self.push(entry, now);
            }
        }
        if s.connecting {
            // A connect to a black hole stays in the ring until TCP gives
            // up (minutes); the core gave up already.
            let entry = opcode::AsyncCancel::new(user_data(conn, generation, OP_CONNECT))
                .build()
                .user_data(user_data(conn, generation, OP_CANCEL));
            self.uring.in_flight += 1;
            self.push(entry, now);
        }
        if !self.quic {
            // (A UDP socket is not shut down: that ends none of its
            // operations, and would fail the socket's last send, its
            // CONNECTION_CLOSE, queued just before and not yet submitted.)
            sock::shutdown(s.fd);
        }
        self.closing.push(s.fd);
    }

    fn arm_recv(&mut self, conn: u32, s: Socket, now: u64) {
        let entry = if self.quic {
            match self.uring.udp_recv_entry(s.fd) {
                Some(e) => e.user_data(user_data(conn, s.generation, OP_RECVMSG)),
                None => return,
            }
        } else {
            opcode::RecvMulti::new(types::Fd(s.fd), self.uring.bgid())
                .build()
                .user_data(user_data(conn, s.generation, OP_RECV))
        };
        self.uring.in_flight += 1;
        self.push(entry, now);
    }

    /// The slot's socket, if `generation` is still the one the engine has.
    #[inline]
    fn socket(&self, conn: u32, generation: u32) -> Option<Socket> {
        self.sockets
            .get(conn as usize)
            .copied()
            .filter(|s| s.fd >= 0 && s.generation == generation)
    }

    /// Hands a completion's buffer back to the group its operation took it
    /// from.
    fn recycle(&mut self, op: u64, bid: Option<u16>) {
        match (op, bid) {
            (OP_RECVMSG, Some(bid)) => self.uring.udp_recycle(bid),
            (_, Some(bid)) => self.uring.recycle(bid),
            (_, None) => {}
        }
    }

    fn complete(&mut self, c: &Completion, now: u64) {
        let (conn, generation, op) = split_user_data(c.user_data);
        let more = (op == OP_RECV || op == OP_RECVMSG) && cqueue::more(c.flags);
        if !more && op != OP_SEND_SKIP {
            self.uring.in_flight = self.uring.in_flight.saturating_sub(1);
        }
        let bid = cqueue::buffer_select(c.flags);
        if op == OP_SENDMSG_LAST {
            // Nobody waits for it: its buffer goes.
            self.retired.retain(|(ud, _)| *ud != c.user_data);
            return;
        }
        let Some(s) = self.socket(conn, generation) else {
            // A completion for a socket already replaced.
            self.recycle(op, bid);
            if op == OP_SENDMSG {
                self.retired.retain(|(ud, _)| *ud != c.user_data);
            }
            return;
        };
        let res = c.result;
        match op {
            OP_CONNECT => {
                self.sockets[conn as usize].connecting = false;
                if res < 0 {
                    self.core.on_connect_failed(conn, generation, now);
                } else {
                    self.arm_recv(conn, s, now);
                    self.core.on_connected(conn, generation, now);
                }
            }
            OP_RECV => {
                if res > 0 {
                    match bid {
                        Some(bid) => {
                            let data = self.uring.buffer(bid, res as usize);
                            self.core.on_received(conn, generation, data, now);
                            self.uring.recycle(bid);
                        }
                        None => self.core.on_recv_failed(conn, generation, libc::EIO, now),
                    }
                } else if res == 0 {
                    self.core.on_eof(conn, generation, now);
                } else if res != -libc::ENOBUFS {
                    if let Some(bid) = bid {
                        self.uring.recycle(bid);
                    }
                    self.core.on_recv_failed(conn, generation, -res, now);
                }
                // ENOBUFS: every buffer is waiting to be parsed; they are
                // recycled before the next enter, so re-arming is enough.
                self.apply(now);
                if !more && let Some(s) = self.socket(conn, generation) {
                    self.arm_recv(conn, s, now);
                }
                return;
            }
            OP_RECVMSG => {
                if res > 0
                    && let Some(bid) = bid
                {
                    match self.uring.udp_received(bid, res as usize) {
                        Some(r) => self
                            .core
                            .on_datagrams(conn, generation, r.payload, r.segment, now),
                        None => self.core.on_recv_failed(conn, generation, libc::EIO, now),
                    }
                    self.uring.udp_recycle(bid);
                } else if res < 0 && res != -libc::ENOBUFS {
                    self.recycle(op, bid);
                    self.core.on_recv_failed(conn, generation, -res, now);
                }
                self.apply(now);
                if !more && let Some(s) = self.socket(conn, generation) {
                    self.arm_recv(conn, s, now);
                }
                return;
            }
            OP_SENDMSG => {
                if res < 0 {
                    self.core.on_send_failed(conn, generation, -res, now);
                } else {
                    self.core.on_sent(conn, generation, now);
                }
            }
            OP_SEND | OP_SEND_SKIP => {
                if res < 0 {
                    self.core.on_send_failed(conn, generation, -res, now);
                } else if op == OP_SEND {
                    self.core.on_sent(conn, generation, now);
                }
            }
            _ => {}
        }
        self.apply(now);
    }

    /// Shuts every socket down and waits briefly for the kernel to finish
    /// the operations that still reference shard memory. At the end of a
    /// run the core has closed its sockets already; after an error (or a
    /// panic) they are closed here, with the core's work left undone.
    fn shutdown(&mut self) {
        let now = self.clock();
        if self.core.is_finished() && !std::thread::panicking() {
            self.apply(now);
        }
        for conn in 0..self.sockets.len() {
            let s = self.sockets[conn];
            if s.fd >= 0 {
                self.close(conn as u32, s.generation, now);
            }
        }
        let give_up = Instant::now() + SHUTDOWN_WINDOW;
        let mut batch = [Completion::default(); CQE_BATCH];
        while self.uring.in_flight > 0 && Instant::now() < give_up {
            // A ring that cannot be entered completes nothing more: the
            // sockets are shut down, and `Uring`'s drop keeps the buffers.
            if self
                .enter(Duration::from_millis(10), BatchWait::NONE)
                .is_err()
            {
                break;
            }
            let n = self.uring.reap(&mut batch);
            for c in &batch[..n] {
                let op = c.user_data & 0xff;
                let more = (op == OP_RECV || op == OP_RECVMSG) && cqueue::more(c.flags);
                if !more && op != OP_SEND_SKIP {
                    self.uring.in_flight = self.uring.in_flight.saturating_sub(1);
                }
                self.recycle(op, cqueue::buffer_select(c.flags));
                if op == OP_SENDMSG || op == OP_SENDMSG_LAST {
                    self.retired.retain(|(ud, _)| *ud != c.user_data);
                }
            }
            self.uring.publish();
        }
        for fd in self.closing.drain(..) {
            sock::close(fd);
        }
        if self.uring.in_flight > 0 {
            // Sends the kernel never completed may still read their
            // memory: leak it, as `Uring` leaks its buffers then.
            for (_, out) in self.retired.drain(..) {
                std::mem::forget(out);
            }
            for out in self.udp_sends.iter_mut().filter_map(Option::take) {
                std::mem::forget(out);
            }
        }
    }
}

impl Drop for Engine<'_, '_> {
    fn drop(&mut self) {
        self.shutdown();
        // `uring` drops next: see its `Drop` for the buffers of operations
        // the kernel never completed.
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::Config;
    use crate::shard::{ShardProgress, plan};
    use crate::url::Url;

    /// What one connection brought to the server: its bytes, and whether
    /// the client closed it.
    #[derive(Default)]
    struct Seen {
        bytes: Vec<u8>,
        eof: bool,
    }

    type Conns = Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>;

    /// A server answering every request head with a small 200, noting
    /// what each connection sent.
    fn server() -> (u16, Conns) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = Conns::default();
        let all = conns.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                let seen = Arc::new(Mutex::new(Seen::default()));
                all.lock().unwrap().push(seen.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut answered = 0;
                    loop {
                        let n = s.read(&mut buf).unwrap_or(0);
                        let mut seen = seen.lock().unwrap();
                        if n == 0 {
                            seen.eof = true;
                            return;
                        }
                        seen.bytes.extend_from_slice(&buf[..n]);
                        let heads = seen.bytes.windows(4).filter(|w| w == b"\r\n\r\n").count();
                        drop(seen);
                        for _ in answered..heads {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        }
                        answered = heads;
                    }
                });
            }
        });
        (port, conns)
    }

    /// This process's sockets connected to `port` on 127.0.0.1.
    fn sockets_to(port: u16) -> usize {
        let ours: HashSet<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .collect();
        let remote = format!("0100007F:{port:04X}");
        std::fs::read_to_string("/proc/net/tcp")
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 9 && f[2] == remote && ours.contains(f[9])
            })
            .count()
    }

    /// The harness's HTTP/3 server (quinn-proto with an independent
    /// HTTP/3 codec) on a real UDP socket, in a thread, until `stop`;
    /// returns its port and, at the end, how many requests it answered.
    fn quic_server(stop: Arc<AtomicBool>) -> (u16, std::thread::JoinHandle<(u64, usize)>) {
        use crate::http::h3::quic_tests::harness::{Behaviour, Net, Server};
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut server = Server::new(true, Behaviour::Normal);
            let mut net = Net::new(None);
            let mut buf = [0u8; 65536];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Instant::now();
                let wait = server
                    .next_timeout()
                    .map_or(Duration::from_millis(20), |t| {
                        t.saturating_duration_since(now)
                    })
                    .clamp(Duration::from_micros(100), Duration::from_millis(20));
                sock.set_read_timeout(Some(wait)).unwrap();
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    server.datagram(Instant::now(), from, buf[..n].to_vec(), &mut net);
                    while let Some((from, d)) = net.pop_to_server() {
                        server.datagram(Instant::now(), from, d, &mut net);
                    }
                }
                server.handle_timeouts(Instant::now());
                server.work(Instant::now(), &mut net);
                while let Some((to, d)) = net.pop_to_client() {
                    let _ = sock.send_to(&d, to);
                }
            }
            (server.served(), server.conns.len())
        });
        (port, t)
    }

    #[test]
    fn http3_over_udp_through_the_ring_is_exact() {
        let stop = Arc::new(AtomicBool::new(false));
        let (port, server) = quic_server(stop.clone());
        let url = Url::parse(&format!("https://localhost:{port}/")).unwrap();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cfg = Config::for_url(url, addr);
        cfg.connections = 2;
        cfg.duration = None;
        cfg.requests = Some(300);
        cfg.timeout = Duration::from_secs(5);
        cfg.http3 = Some(8);
        cfg.tls = Some(
            crate::tls::client_config(crate::tls::TlsInputs::insecure_for("localhost")).unwrap(),
        );
        let (run_stop, progress) = (AtomicBool::new(false), ShardProgress::default());
        let shard = Shard {
            cfg: &cfg,
            plan: plan(&cfg).remove(0),
            stop: &run_stop,
            progress: &progress,
        };
        let ring = setup(&shard).unwrap();
        let started = Instant::now();
        let stats = run(&shard, ring, None).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (served, conns) = server.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(stats.errors.total(), 0, "{:?}", stats.errors);
        assert_eq!((stats.responses, served), (300, 300));
        assert_eq!(conns, 2);
        assert!(stats.bytes_written > 0 && stats.bytes_read > 0);
    }

    #[test]
    fn a_ring_that_fails_mid_run_closes_every_socket_and_sends_nothing_stale() {
        let (port, conns) = server();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let addr = url.resolve().unwrap();
        let mut cfg = Config::for_url(url, addr);
        cfg.connections = 8;
        cfg.duration = Some(Duration::from_secs(30));
        let (stop, progress) = (AtomicBool::new(false), ShardProgress::default());
        let shard = Shard {
            cfg: &cfg,
            plan: plan(&cfg).remove(0),
            stop: &stop,
            progress: &progress,
        };
        let mut ring = setup(&shard).unwrap();
        // Past the connects and some exchanges on every connection.
        ring.fail_enter_after = Some(100);
        let started = Instant::now();
        let r = run(&shard, ring, None);
        assert!(matches!(r, Err(EngineError::Enter(_))), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the run ended on the error"
        );
        assert_eq!(sockets_to(port), 0, "sockets left open after the error");
        // The server sees every connection end, and only whole copies of
        // the request on it (a send of freed memory would show as other
        // bytes).
        let request = cfg.scenario.fixed_bytes().unwrap().to_vec();
        let deadline = Instant::now() + Duration::from_secs(5);
        let conns = conns.lock().unwrap().clone();
        assert_eq!(conns.len(), 8);
        for c in conns {
            while !c.lock().unwrap().eof && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let seen = c.lock().unwrap();
            assert!(seen.eof, "a connection was never closed");
            assert!(!seen.bytes.is_empty());
            for (i, chunk) in seen.bytes.chunks(request.len()).enumerate() {
                assert_eq!(
                    chunk,
                    &request[..chunk.len()],
                    "request {i} was not the request"
                );
            }
        }
    }
}
