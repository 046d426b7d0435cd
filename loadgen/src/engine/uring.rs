//! The default engine: the shard core's actions as io_uring operations,
//! and completions as its events. One ring per shard (SINGLE_ISSUER |
//! DEFER_TASKRUN where the kernel has it), multishot receives into a
//! provided-buffer ring, sends that post no completion when the core says
//! none is needed, and one `io_uring_enter` per turn: submit, then wait for
//! a completion or the core's next wake-up.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types};

use super::{EngineError, Shard};
use crate::shard::{Action, Core, EngineCaps};
use crate::stats::ShardStats;
use crate::sys::sock::{self, SockAddr, tcp_socket};
use crate::sys::uring::{Completion, SetupError, Uring};

const OP_CONNECT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
/// A send whose success posts no completion; only failures come back.
const OP_SEND_SKIP: u64 = 4;
/// Cancelling a connect the core gave up on.
const OP_CANCEL: u64 = 5;

const BUF_COUNT: u16 = 1024;
const BUF_SIZE: usize = 4096;
const BUF_GROUP: u16 = 0;
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
    Uring::new(entries, shard.cfg.ring_best, BUF_COUNT, BUF_SIZE, BUF_GROUP).map_err(|e| match e {
        SetupError::Ring(e) => EngineError::Ring(e),
        SetupError::BufRing(e) => EngineError::BufRing(e),
    })
}

struct Engine<'a> {
    // Field order: the ring drops (and cancels what is left) before the
    // core whose buffers sends may still read.
    uring: Uring,
    core: Core<'a>,
    addr: Box<SockAddr>,
    /// `--bind`: the source addresses (port 0), by index.
    sources: Vec<SockAddr>,
    sockets: Vec<Socket>,
    /// Shut down, to be closed after the next enter: until the kernel has
    /// taken the queued entries naming them, their numbers must not be
    /// reused by a new socket.
    closing: Vec<RawFd>,
    actions: Vec<Action>,
    epoch: Instant,
}

/// Runs one shard on `uring` until the core says the run is over.
pub fn run(shard: &Shard<'_>, uring: Uring) -> Result<ShardStats, EngineError> {
    let (plan, epoch) = super::start_clock(shard);
    let core = Core::new(shard.cfg, &plan, CAPS, shard.progress, shard.stop);
    let n = plan.connections;
    let mut e = Engine {
        uring,
        core,
        addr: SockAddr::new(shard.cfg.addr),
        sources: shard
            .cfg
            .bind
            .iter()
            .map(|&ip| *SockAddr::new(std::net::SocketAddr::new(ip, 0)))
            .collect(),
        sockets: vec![NO_SOCKET; n],
        closing: Vec::with_capacity(n),
        actions: Vec::with_capacity(n * 3 + 8),
        epoch,
    };
    e.core.start(super::unix_ms());
    e.apply(0);
    let mut cpu = super::CpuMeter::default();
    cpu.watch(&e.core);
    let mut batch = [Completion::default(); CQE_BATCH];
    while !e.core.is_finished() {
        let wake = e.core.next_wake();
        e.core.stamp(e.clock());
        e.enter(Duration::from_nanos(wake.saturating_sub(e.clock())))?;
        let now = e.clock();
        loop {
            let n = e.uring.reap(&mut batch);
            for c in &batch[..n] {
                e.complete(c, now);
            }
            if n < CQE_BATCH {
                break;
            }
        }
        e.uring.publish();
        e.core.turn(now);
        cpu.watch(&e.core);
        e.apply(now);
    }
    let mut stats_cpu = crate::stats::ShardStats::new();
    cpu.finish(&mut stats_cpu);
    e.shutdown();
    let Engine { uring, core, .. } = e;
    // The ring goes first: see `Uring`'s drop for what happens to buffers
    // of operations the kernel never completed.
    drop(uring);
    let mut stats = core.into_stats();
    (stats.cpu, stats.runq) = (stats_cpu.cpu, stats_cpu.runq);
    stats.started_at = stats_cpu.started_at;
    Ok(stats)
}

impl Engine<'_> {
    #[inline]
    fn clock(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn enter(&mut self, timeout: Duration) -> Result<(), EngineError> {
        let r = self.uring.enter(timeout);
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
        // is in flight. A stale send reads bytes for a socket that is
        // already shut down, so nothing it reads can reach the wire.
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
        let source = source.and_then(|i| self.sources.get(i as usize));
        let fd = match tcp_socket(self.addr.family).and_then(|fd| match source {
            // A plain syscall: io_uring's bind is newer than the kernels
            // this engine runs on, and connects are not the hot path.
            Some(src) => sock::bind_source(fd, src)
                .map(|()| fd)
                .inspect_err(|_| sock::close(fd)),
            None => Ok(fd),
        }) {
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
        let entry = opcode::Connect::new(types::Fd(fd), self.addr.as_ptr(), self.addr.len)
            .build()
            .user_data(user_data(conn, generation, OP_CONNECT));
        self.uring.in_flight += 1;
        self.push(entry, now);
    }

    fn send(&mut self, conn: u32, generation: u32, ack: bool, now: u64) {
        let s = self.sockets[conn as usize];
        if s.fd < 0 || s.generation != generation {
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
        if s.connecting {
            // A connect to a black hole stays in the ring until TCP gives
            // up (minutes); the core gave up already.
            let entry = opcode::AsyncCancel::new(user_data(conn, generation, OP_CONNECT))
                .build()
                .user_data(user_data(conn, generation, OP_CANCEL));
            self.uring.in_flight += 1;
            self.push(entry, now);
        }
        sock::shutdown(s.fd);
        self.closing.push(s.fd);
    }

    fn arm_recv(&mut self, conn: u32, s: Socket, now: u64) {
        let entry = opcode::RecvMulti::new(types::Fd(s.fd), self.uring.bgid())
            .build()
            .user_data(user_data(conn, s.generation, OP_RECV));
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

    fn complete(&mut self, c: &Completion, now: u64) {
        let (conn, generation, op) = split_user_data(c.user_data);
        let more = op == OP_RECV && cqueue::more(c.flags);
        if !more && op != OP_SEND_SKIP {
            self.uring.in_flight = self.uring.in_flight.saturating_sub(1);
        }
        let bid = cqueue::buffer_select(c.flags);
        let Some(s) = self.socket(conn, generation) else {
            // A completion for a socket already replaced.
            if let Some(bid) = bid {
                self.uring.recycle(bid);
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

    /// Waits briefly for the kernel to finish the operations that still
    /// reference shard memory; the core closed every socket already.
    fn shutdown(&mut self) {
        let now = self.clock();
        self.apply(now);
        let give_up = Instant::now() + SHUTDOWN_WINDOW;
        let mut batch = [Completion::default(); CQE_BATCH];
        while self.uring.in_flight > 0 && Instant::now() < give_up {
            let _ = self.enter(Duration::from_millis(10));
            let n = self.uring.reap(&mut batch);
            for c in &batch[..n] {
                let op = c.user_data & 0xff;
                if !(op == OP_RECV && cqueue::more(c.flags)) && op != OP_SEND_SKIP {
                    self.uring.in_flight = self.uring.in_flight.saturating_sub(1);
                }
                if let Some(bid) = cqueue::buffer_select(c.flags) {
                    self.uring.recycle(bid);
                }
            }
            self.uring.publish();
        }
        for fd in self.closing.drain(..) {
            sock::close(fd);
        }
    }
}
