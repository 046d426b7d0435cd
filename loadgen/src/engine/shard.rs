//! One shard: a pinned thread, its io_uring, its connections, its stats.
//! Nothing here is shared with other shards except the stop flag, which is
//! read once per loop turn and written only on Ctrl-C.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::conn::{Conn, ConnState};
use super::ring::{BufRing, RingMode, build_ring};
use super::sock::{SockAddr, tcp_socket};
use super::{EngineError, ShardPlan};
use crate::config::Config;
use crate::stats::ShardStats;

const OP_CONNECT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
/// A send whose success posts no completion; only failures come back.
const OP_SEND_SKIP: u64 = 4;

const BUF_COUNT: u16 = 1024;
const BUF_SIZE: usize = 4096;
const BUF_GROUP: u16 = 0;
const RATE_INTERVAL_NS: u64 = 100_000_000;
const BACKOFF_MIN_NS: u64 = 10_000_000;
const BACKOFF_MAX_NS: u64 = 1_000_000_000;
/// Completions handled per batch (copied out so the ring can be pushed to
/// while they are processed).
const CQE_BATCH: usize = 256;

#[inline]
fn user_data(conn: usize, generation: u32, op: u64) -> u64 {
    ((conn as u64) << 32) | (((generation & 0x00ff_ffff) as u64) << 8) | op
}

#[inline]
fn split_user_data(ud: u64) -> (usize, u32, u64) {
    (
        (ud >> 32) as usize,
        ((ud >> 8) & 0x00ff_ffff) as u32,
        ud & 0xff,
    )
}

/// Why a connection is being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Read,
    Write,
    Timeout,
    Parse,
    Closed,
}

pub struct Shard<'a> {
    // Field order matters: the ring must be dropped (and its operations
    // cancelled) before the buffers it points into.
    ring: IoUring,
    bufs: BufRing,
    addr: Box<SockAddr>,
    /// The request repeated `depth` times: a send of `k` pipelined requests
    /// is the first `k * req_len` bytes.
    reqs: Box<[u8]>,
    req_len: usize,
    head_request: bool,
    skip_send_cqe: bool,
    conns: Vec<Conn>,
    pub stats: ShardStats,
    /// Requests still to start (`None`: until the deadline).
    quota: Option<u64>,
    /// Requests started and not yet finished (answered or failed).
    outstanding: u64,
    stamp_list: Vec<u32>,
    ops_in_flight: u64,
    epoch: Instant,
    now: u64,
    timeout_ns: u64,
    check_every_ns: u64,
    stopping: bool,
    rng: u64,
    cfg: &'a Config,
    pub mode: RingMode,
}

impl<'a> Shard<'a> {
    pub fn new(cfg: &'a Config, plan: &ShardPlan) -> Result<Shard<'a>, EngineError> {
        let conns_n = plan.connections;
        let depth = cfg.pipeline.max(1);
        let entries = ((conns_n * 4).max(64) as u32)
            .next_power_of_two()
            .min(32768);
        let (ring, mode) = build_ring(entries, cfg.ring_floor).map_err(EngineError::Ring)?;
        let bufs =
            BufRing::new(&ring, BUF_COUNT, BUF_SIZE, BUF_GROUP).map_err(EngineError::BufRing)?;
        let one = cfg.request_bytes.as_slice();
        let reqs = one.repeat(depth).into_boxed_slice();
        let timeout_ns = cfg.timeout.as_nanos() as u64;
        Ok(Shard {
            ring,
            bufs,
            addr: SockAddr::new(cfg.addr),
            reqs,
            req_len: one.len(),
            head_request: cfg.head_request,
            // A batch is only sent when nothing is in flight, so the
            // previous send has completed (the server answered it) and no
            // send can overtake another. A batch that fits the smallest
            // socket send buffer then needs no completion at all.
            skip_send_cqe: one.len() * depth <= 16 * 1024,
            conns: (0..conns_n)
                .map(|_| Conn::new(depth, cfg.max_header_bytes))
                .collect(),
            stats: ShardStats::new(),
            quota: plan.requests,
            outstanding: 0,
            stamp_list: Vec::with_capacity(conns_n),
            ops_in_flight: 0,
            epoch: Instant::now(),
            now: 0,
            timeout_ns,
            check_every_ns: (timeout_ns / 10).clamp(1_000_000, 50_000_000),
            stopping: false,
            rng: 0x9e37_79b9_7f4a_7c15
                ^ (plan.index as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            cfg,
            mode,
        })
    }

    #[inline]
    fn clock(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Runs the load until the deadline, the quota, or the stop flag.
    pub fn run(&mut self, stop: &AtomicBool, start: &Barrier) -> Result<(), EngineError> {
        start.wait();
        self.epoch = Instant::now();
        let deadline = self.cfg.duration.map(|d| d.as_nanos() as u64);
        for ci in 0..self.conns.len() {
            self.open(ci);
        }
        let mut next_rate = RATE_INTERVAL_NS;
        let mut rate_count = 0u64;
        let mut rate_since = 0u64;
        let mut next_check = self.check_every_ns;
        let mut batch = [(0u64, 0i32, 0u32); CQE_BATCH];
        loop {
            let mut wake = next_rate.min(next_check);
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            self.enter(wake)?;
            self.now = self.clock();
            let before = self.stats.responses + self.stats.errors.requests();
            loop {
                let n = {
                    let mut cq = self.ring.completion();
                    let mut n = 0;
                    for cqe in &mut cq {
                        batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                        n += 1;
                        if n == CQE_BATCH {
                            break;
                        }
                    }
                    n
                };
                for &(ud, res, flags) in &batch[..n] {
                    self.complete(ud, res, flags);
                }
                if n < CQE_BATCH {
                    break;
                }
            }
            self.bufs.publish();
            rate_count += self.stats.responses + self.stats.errors.requests() - before;

            if self.now >= next_check {
                self.check_timers();
                next_check = self.now + self.check_every_ns;
            }
            if self.now >= next_rate {
                // wrk's Req/Sec: per-thread rate over each ~100 ms interval.
                if rate_count > 0 {
                    let ns = (self.now - rate_since).max(1);
                    self.stats
                        .rate
                        .saturating_record(rate_count * 1_000_000_000 / ns);
                }
                rate_count = 0;
                rate_since = self.now;
                next_rate = self.now + RATE_INTERVAL_NS;
            }
            let done = match (deadline, self.quota) {
                (Some(d), _) if self.now >= d => true,
                (_, Some(0)) => self.outstanding == 0,
                _ => false,
            };
            if done || stop.load(Ordering::Relaxed) || self.unreachable() {
                break;
            }
        }
        self.stats.elapsed = Duration::from_nanos(match deadline {
            Some(d) => self.now.min(d),
            None => self.now,
        });
        self.shutdown();
        Ok(())
    }

    /// In `-n` mode, a target that never accepted a connection within the
    /// timeout ends the run instead of retrying forever.
    fn unreachable(&self) -> bool {
        self.quota.is_some()
            && self.now >= self.timeout_ns
            && self.stats.errors.connect > 0
            && !self.conns.iter().any(|c| c.ever_connected)
    }

    /// Stamps this turn's sends, submits everything queued in one
    /// `io_uring_enter`, and waits for at least one completion or `wake`.
    fn enter(&mut self, wake: u64) -> Result<(), EngineError> {
        self.stamp_sends();
        let now = self.clock();
        let wait = Duration::from_nanos(wake.saturating_sub(now).max(1000));
        let ts = types::Timespec::from(wait);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => Ok(()),
                _ => Err(EngineError::Enter(e)),
            },
        }
    }

    fn stamp_sends(&mut self) {
        if self.stamp_list.is_empty() {
            return;
        }
        let t = self.clock();
        for &ci in &self.stamp_list {
            self.conns[ci as usize].stamp(t);
        }
        self.stamp_list.clear();
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry we build points only at memory owned by
            // this shard (`addr`, `reqs`, the buffer ring) that outlives
            // the ring, which is dropped first.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // The submission queue is full: hand it to the kernel now.
            self.stamp_sends();
            if let Err(e) = self.ring.submit()
                && e.raw_os_error() != Some(libc::EBUSY)
            {
                // Nothing more we can do for this entry; the connection
                // will time out and be replaced.
                return;
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough to spread reconnects.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn open(&mut self, ci: usize) {
        if self.stopping {
            return;
        }
        let fd = match tcp_socket(self.addr.family) {
            Ok(fd) => fd,
            Err(_) => {
                // Out of descriptors or ports: a connect error, back off.
                self.stats.errors.connect += 1;
                self.backoff(ci);
                return;
            }
        };
        let now = self.now;
        let c = &mut self.conns[ci];
        c.fd = fd;
        c.state = ConnState::Connecting;
        c.connect_started = now;
        let ud = user_data(ci, c.generation, OP_CONNECT);
        let entry = opcode::Connect::new(types::Fd(fd), self.addr.as_ptr(), self.addr.len)
            .build()
            .user_data(ud);
        self.ops_in_flight += 1;
        self.push(entry);
    }

    fn backoff(&mut self, ci: usize) {
        let r = self.next_random();
        let c = &mut self.conns[ci];
        c.reset();
        c.failures = c.failures.saturating_add(1);
        let base = (BACKOFF_MIN_NS << (c.failures - 1).min(7)).min(BACKOFF_MAX_NS);
        // Full jitter in [base/2, base): connections that failed together do
        // not retry together.
        let delay = base / 2 + r % (base / 2).max(1);
        c.state = ConnState::Backoff;
        c.retry_at = self.now + delay;
    }

    fn arm_recv(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        c.recv_armed = true;
        let ud = user_data(ci, c.generation, OP_RECV);
        let entry = opcode::RecvMulti::new(types::Fd(c.fd), self.bufs.bgid)
            .build()
            .user_data(ud);
        self.ops_in_flight += 1;
        self.push(entry);
    }

    /// Sends the next batch of up to `depth` requests once the previous
    /// batch is fully answered (wrk's pipelining: one write per batch).
    ///
    /// On loopback each send costs a full trip through the TCP stack on
    /// the client's CPU. Topping the pipeline up one request per response
    /// cost 10.4 µs/request at depth 16 (wrk: 7.3); refilling at half
    /// depth, 7.2; whole batches, 6.6 with 3 % more throughput from the
    /// server, which also reads whole batches (BENCHMARKS.md).
    fn fill(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        if c.state != ConnState::Open || self.stopping || c.inflight + c.queued > 0 {
            return;
        }
        while c.inflight + c.queued < c.depth() {
            match &mut self.quota {
                Some(0) => break,
                Some(q) => *q -= 1,
                None => {}
            }
            c.queued += 1;
            self.outstanding += 1;
        }
        if c.queued > 0 && !c.send_busy {
            self.send(ci);
        }
    }

    fn send(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        let n = c.queued;
        let len = n as usize * self.req_len;
        let (op, flags) = if self.skip_send_cqe {
            (OP_SEND_SKIP, squeue::Flags::SKIP_SUCCESS)
        } else {
            c.send_busy = true;
            (OP_SEND, squeue::Flags::empty())
        };
        if c.unstamped == 0 {
            self.stamp_list.push(ci as u32);
        }
        c.queued = 0;
        c.inflight += n;
        c.unstamped += n;
        let ud = user_data(ci, c.generation, op);
        // MSG_WAITALL: the kernel retries short sends itself, so a success
        // means every byte went out.
        let entry = opcode::Send::new(types::Fd(c.fd), self.reqs.as_ptr(), len as u32)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build()
            .flags(flags)
            .user_data(ud);
        self.stats.bytes_written += len as u64;
        if op == OP_SEND {
            self.ops_in_flight += 1;
        }
        self.push(entry);
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) {
        let (ci, generation, op) = split_user_data(ud);
        let more = op == OP_RECV && cqueue::more(flags);
        if !more && op != OP_SEND_SKIP {
            self.ops_in_flight = self.ops_in_flight.saturating_sub(1);
        }
        let bid = cqueue::buffer_select(flags);
        let current = self
            .conns
            .get(ci)
            .is_some_and(|c| c.generation & 0x00ff_ffff == generation && c.fd >= 0);
        if !current {
            // A completion for a socket we already replaced.
            if let Some(bid) = bid {
                self.bufs.recycle(bid);
            }
            return;
        }
        match op {
            OP_CONNECT => self.on_connect(ci, res),
            OP_RECV => self.on_recv(ci, res, bid, more),
            OP_SEND | OP_SEND_SKIP => self.on_send(ci, res),
            _ => {}
        }
    }

    fn on_connect(&mut self, ci: usize, res: i32) {
        if res < 0 {
            self.stats.errors.connect += 1;
            self.backoff(ci);
            return;
        }
        let c = &mut self.conns[ci];
        if c.ever_connected {
            self.stats.reconnects += 1;
        }
        c.ever_connected = true;
        c.failures = 0;
        c.state = ConnState::Open;
        self.arm_recv(ci);
        self.fill(ci);
    }

    fn on_send(&mut self, ci: usize, res: i32) {
        // MSG_WAITALL makes any non-negative result a complete send.
        if res < 0 {
            self.fail(ci, Failure::Write);
            return;
        }
        let c = &mut self.conns[ci];
        c.send_busy = false;
        if c.queued > 0 {
            self.send(ci);
        }
    }

    fn on_recv(&mut self, ci: usize, res: i32, bid: Option<u16>, more: bool) {
        if res > 0 {
            let Some(bid) = bid else {
                self.fail(ci, Failure::Read);
                return;
            };
            let len = res as usize;
            self.stats.bytes_read += len as u64;
            let outcome = self.deliver(ci, bid, len);
            self.bufs.recycle(bid);
            match outcome {
                Delivered::More => {}
                Delivered::ServerClose => {
                    self.replace(ci);
                    return;
                }
                Delivered::Error(f) => {
                    self.fail(ci, f);
                    return;
                }
            }
            self.fill(ci);
        } else if res == 0 {
            self.on_eof(ci);
            return;
        } else if res == -libc::ENOBUFS {
            // Every buffer is waiting to be parsed; they are recycled before
            // the next enter, so re-arming is enough.
        } else {
            if let Some(bid) = bid {
                self.bufs.recycle(bid);
            }
            self.fail(ci, Failure::Read);
            return;
        }
        if !more {
            self.arm_recv(ci);
        }
    }

    /// Parses what arrived, completing responses in order.
    fn deliver(&mut self, ci: usize, bid: u16, len: usize) -> Delivered {
        let data = self.bufs.get(bid, len);
        let c = &mut self.conns[ci];
        let now = self.now;
        let mut off = 0;
        while off < data.len() {
            if c.inflight == 0 {
                // Bytes nobody asked for.
                return Delivered::Error(Failure::Parse);
            }
            match c.parser.parse(&data[off..], self.head_request) {
                Ok((n, resp)) => {
                    off += n;
                    match resp {
                        Some(r) => {
                            let sent = c.pop_oldest();
                            self.outstanding -= 1;
                            self.stats
                                .record_response(r.status, now.saturating_sub(sent) / 1000);
                            if r.close {
                                return Delivered::ServerClose;
                            }
                        }
                        None if n == 0 => return Delivered::Error(Failure::Parse),
                        None => {}
                    }
                }
                Err(_) => return Delivered::Error(Failure::Parse),
            }
        }
        Delivered::More
    }

    fn on_eof(&mut self, ci: usize) {
        match self.conns[ci].parser.eof() {
            Ok(Some(r)) => {
                let c = &mut self.conns[ci];
                let sent = c.pop_oldest();
                self.outstanding -= 1;
                self.stats
                    .record_response(r.status, self.now.saturating_sub(sent) / 1000);
                self.replace(ci);
            }
            // An idle keep-alive connection closed by the server: normal.
            Ok(None) if self.conns[ci].inflight == 0 => self.replace(ci),
            Ok(None) | Err(_) => self.fail(ci, Failure::Closed),
        }
    }

    /// The oldest in-flight request failed with `f`; the connection is
    /// replaced and the requests behind it are sent again on the new one.
    fn fail(&mut self, ci: usize, f: Failure) {
        let e = &mut self.stats.errors;
        match f {
            Failure::Read => e.read += 1,
            Failure::Write => e.write += 1,
            Failure::Timeout => e.timeout += 1,
            Failure::Parse => e.parse += 1,
            Failure::Closed => e.closed += 1,
        }
        if self.conns[ci].inflight > 0 {
            self.conns[ci].pop_oldest();
            self.outstanding -= 1;
        }
        self.replace(ci);
    }

    /// Closes the connection, returns its unanswered requests to the quota
    /// and opens a new one.
    fn replace(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        let sent = c.inflight as u64;
        let lost = c.reset() as u64;
        self.stats.reissued += sent;
        self.outstanding -= lost;
        if let Some(q) = &mut self.quota {
            *q += lost;
        }
        self.open(ci);
    }

    fn check_timers(&mut self) {
        let now = self.now;
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            match c.state {
                ConnState::Open => {
                    if c.oldest_sent_at()
                        .is_some_and(|t| now.saturating_sub(t) > self.timeout_ns)
                    {
                        self.fail(ci, Failure::Timeout);
                    }
                }
                ConnState::Connecting => {
                    if now.saturating_sub(c.connect_started) > self.timeout_ns {
                        self.stats.errors.connect += 1;
                        self.backoff(ci);
                    }
                }
                ConnState::Backoff => {
                    if now >= c.retry_at {
                        self.open(ci);
                    }
                }
                ConnState::Closed => {}
            }
        }
    }

    /// Closes every socket and waits briefly for the kernel to finish the
    /// operations that still reference shard memory.
    fn shutdown(&mut self) {
        self.stopping = true;
        for c in &mut self.conns {
            c.reset();
            c.state = ConnState::Closed;
        }
        let give_up = Instant::now() + Duration::from_millis(200);
        while self.ops_in_flight > 0 && Instant::now() < give_up {
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let mut recycled = Vec::new();
            for cqe in self.ring.completion() {
                let op = cqe.user_data() & 0xff;
                if !(op == OP_RECV && cqueue::more(cqe.flags())) && op != OP_SEND_SKIP {
                    self.ops_in_flight = self.ops_in_flight.saturating_sub(1);
                }
                recycled.extend(cqueue::buffer_select(cqe.flags()));
            }
            for bid in recycled {
                self.bufs.recycle(bid);
            }
            self.bufs.publish();
        }
    }
}

enum Delivered {
    More,
    ServerClose,
    Error(Failure),
}
