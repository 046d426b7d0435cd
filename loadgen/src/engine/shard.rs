//! One shard: a pinned thread, its io_uring, its connections, its stats.
//! Nothing here is shared with other shards except the stop flag (read
//! once per turn) and the progress counters (written once per second).
//!
//! Completion handling lives in `events.rs`; this file is the loop, the
//! timers, and deciding when requests are sent.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::clocks::Clocks;
use super::conn::{Conn, ConnState};
use super::ring::{BufRing, RingMode, build_ring};
use super::sock::SockAddr;
use super::{EngineError, ShardPlan, ShardProgress};
use crate::config::Config;
use crate::scenario::{ConnGen, Scenario, ShardGen};
use crate::schedule::ShardSchedule;
use crate::stats::{ErrorKind, ShardStats};

pub(super) const OP_CONNECT: u64 = 1;
pub(super) const OP_RECV: u64 = 2;
pub(super) const OP_SEND: u64 = 3;
/// A send whose success posts no completion; only failures come back.
pub(super) const OP_SEND_SKIP: u64 = 4;

const BUF_COUNT: u16 = 1024;
const BUF_SIZE: usize = 4096;
const BUF_GROUP: u16 = 0;
/// Completions handled per batch (copied out so the ring can be pushed to
/// while they are processed).
const CQE_BATCH: usize = 256;

#[inline]
pub(super) fn user_data(conn: usize, generation: u32, op: u64) -> u64 {
    ((conn as u64) << 32) | (((generation & 0x00ff_ffff) as u64) << 8) | op
}

#[inline]
pub(super) fn split_user_data(ud: u64) -> (usize, u32, u64) {
    (
        (ud >> 32) as usize,
        ((ud >> 8) & 0x00ff_ffff) as u32,
        ud & 0xff,
    )
}

/// Open-loop state: which request is next and when it is due.
pub(super) struct OpenLoop {
    pub schedule: ShardSchedule,
    /// Index of the next new request in the schedule.
    pub next_k: u64,
    /// Its intended send time (ns); `None` once the schedule is exhausted.
    pub next_due: Option<u64>,
    /// Intended times of requests lost with a failed connection, to be
    /// sent again first (preallocated: at most one per pipeline slot).
    pub retry: Vec<u64>,
    /// The last dispatch found no free connection: no point waking up for
    /// `next_due` until a completion frees one.
    pub blocked: bool,
    /// Turn time of the last dispatch that found no free connection:
    /// requests due by then waited for a connection, not for us.
    pub last_block_at: Option<u64>,
    /// Where the search for a free connection resumes.
    pub cursor: usize,
    /// Connections given requests in this dispatch (preallocated).
    pub touched: Vec<u32>,
}

pub struct Shard<'a> {
    // Field order matters: the ring must be dropped (and its operations
    // cancelled) before the buffers it points into.
    pub(super) ring: IoUring,
    pub(super) bufs: BufRing,
    pub(super) addr: Box<SockAddr>,
    /// A fixed request repeated `depth` times: a send of `k` pipelined
    /// requests is the first `k * req_len` bytes. Empty when templated.
    reqs: Box<[u8]>,
    req_len: usize,
    /// Templated requests: `{{seq}}` and the feed cursors of this shard.
    generator: Option<ShardGen>,
    pub(super) scenario: &'a Scenario,
    /// Unix time (ms) at `epoch`, for `{{now_ms}}` and token lifetimes.
    wall_epoch_ms: u64,
    skip_send_cqe: bool,
    pub(super) conns: Vec<Conn>,
    pub stats: ShardStats,
    /// Requests still to start (`None`: until the deadline).
    pub(super) quota: Option<u64>,
    /// Requests started and not yet finished (answered or failed).
    pub(super) outstanding: u64,
    pub(super) open_loop: Option<OpenLoop>,
    stamp_list: Vec<u32>,
    pub(super) ops_in_flight: u64,
    epoch: Instant,
    pub(super) now: u64,
    pub(super) timeout_ns: u64,
    check_every_ns: u64,
    pub(super) stopping: bool,
    /// Measurement starts here (end of warm-up), ns.
    measure_from: u64,
    pub(super) rng: u64,
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
        let (ring, mode) = build_ring(entries, cfg.ring_best).map_err(EngineError::Ring)?;
        let bufs =
            BufRing::new(&ring, BUF_COUNT, BUF_SIZE, BUF_GROUP).map_err(EngineError::BufRing)?;
        let scenario: &Scenario = &cfg.scenario;
        let fixed = scenario.fixed_bytes();
        let reqs = fixed.unwrap_or_default().repeat(depth).into_boxed_slice();
        let req_len = fixed.map_or(scenario.max_request_len(), <[u8]>::len);
        let out_capacity = if fixed.is_some() { 0 } else { depth * req_len };
        let timeout_ns = cfg.timeout.as_nanos() as u64;
        let open_loop = cfg.schedule.as_ref().map(|s| {
            let mut schedule = s.with_warmup(cfg.warmup).for_shard(plan.index, cfg.shards);
            let next_due = schedule.intended_ns(0);
            OpenLoop {
                schedule,
                next_k: 0,
                next_due,
                retry: Vec::with_capacity(conns_n * depth),
                blocked: false,
                last_block_at: None,
                cursor: 0,
                touched: Vec::with_capacity(conns_n),
            }
        });
        // A send needs no completion only if it cannot be overtaken: that
        // holds when a connection sends only with nothing in flight (closed
        // loop sends whole batches; open loop at depth 1), and the send
        // fits the smallest socket send buffer.
        let sends_only_when_idle = open_loop.is_none() || depth == 1;
        Ok(Shard {
            ring,
            bufs,
            addr: SockAddr::new(cfg.addr),
            reqs,
            req_len,
            generator: fixed
                .is_none()
                .then(|| ShardGen::new(scenario, plan.index, cfg.shards)),
            scenario,
            wall_epoch_ms: 0,
            skip_send_cqe: sends_only_when_idle && req_len * depth <= 16 * 1024,
            conns: (0..conns_n)
                .map(|i| {
                    let generator = fixed
                        .is_none()
                        .then(|| ConnGen::new(scenario, plan.index, i));
                    Conn::new(depth, cfg.max_header_bytes, generator, out_capacity)
                })
                .collect(),
            stats: ShardStats::with_requests(scenario.named_count()),
            quota: plan.quota_at_start(cfg),
            outstanding: 0,
            open_loop,
            stamp_list: Vec::with_capacity(conns_n),
            ops_in_flight: 0,
            epoch: Instant::now(),
            now: 0,
            timeout_ns,
            check_every_ns: (timeout_ns / 10).clamp(1_000_000, 50_000_000),
            stopping: false,
            measure_from: cfg.warmup.as_nanos() as u64,
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
    pub fn run(
        &mut self,
        plan: &ShardPlan,
        stop: &AtomicBool,
        start: &Barrier,
        progress: &ShardProgress,
    ) -> Result<(), EngineError> {
        start.wait();
        self.epoch = Instant::now();
        self.wall_epoch_ms = super::clocks::unix_ms();
        let deadline = self
            .cfg
            .duration
            .map(|d| self.measure_from + d.as_nanos() as u64);
        let mut warming = self.measure_from > 0;
        for ci in 0..self.conns.len() {
            self.open(ci);
        }
        let mut clocks = Clocks::new(self.measure_from);
        let mut next_check = self.check_every_ns;
        let mut batch = [(0u64, 0i32, 0u32); CQE_BATCH];
        loop {
            let mut wake = clocks.next_wake().min(next_check);
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            if warming {
                wake = wake.min(self.measure_from);
            }
            if let Some(ol) = &self.open_loop
                && !ol.blocked
                && self.quota != Some(0)
                && let Some(due) = ol.next_due
            {
                wake = wake.min(due);
            }
            self.enter(wake)?;
            self.now = self.clock();
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
            if self.open_loop.is_some() {
                self.dispatch();
            }

            if warming && self.now >= self.measure_from {
                // Warm-up over: forget it, and start counting `-n` now. The
                // requests still in flight finish inside the measurement and
                // count toward N.
                warming = false;
                self.stats.reset_measurements();
                self.quota = plan.requests.map(|n| n.saturating_sub(self.outstanding));
                clocks.restart(self.now);
            }
            if self.now >= next_check {
                self.check_timers();
                next_check = self.now + self.check_every_ns;
            }
            let done = match (deadline, self.quota) {
                (Some(d), _) if self.now >= d => true,
                (_, Some(0)) => self.outstanding == 0,
                _ => false,
            };
            let stopped = done || stop.load(Ordering::Relaxed) || self.unreachable();
            clocks.tick(&mut self.stats, self.now, warming, stopped, progress);
            if stopped {
                break;
            }
        }
        let end = deadline.map_or(self.now, |d| self.now.min(d));
        self.stats.elapsed = Duration::from_nanos(end.saturating_sub(self.measure_from));
        self.shutdown();
        Ok(())
    }

    /// In `-n` mode, a target that never accepted a connection within the
    /// timeout ends the run instead of retrying forever.
    fn unreachable(&self) -> bool {
        self.cfg.requests.is_some()
            && self.now >= self.timeout_ns
            && self.stats.errors.connect > 0
            && !self.conns.iter().any(|c| c.ever_connected)
    }

    /// Stamps this turn's sends, submits everything queued in one
    /// `io_uring_enter`, and waits for at least one completion or `wake`.
    fn enter(&mut self, wake: u64) -> Result<(), EngineError> {
        self.stamp_sends();
        // A zero timeout when a timer is already due: submit and reap without
        // sleeping. It must still be a wait: with DEFER_TASKRUN completions
        // are only posted by an enter with GETEVENTS, which a plain submit
        // is not (a spin of plain submits once starved the receives).
        let ts = types::Timespec::from(Duration::from_nanos(wake.saturating_sub(self.clock())));
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

    pub(super) fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry we build points only at memory owned by
            // this shard (`addr`, `reqs`, each connection's `out`, the
            // buffer ring) that outlives the ring, which is dropped first.
            // `out` never reallocates: it is sized for the longest batch.
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

    /// Closed loop: sends the next batch of up to `depth` requests once the
    /// previous batch is fully answered (wrk's pipelining: one write per
    /// batch). Open loop: nothing; `dispatch` sends on schedule.
    ///
    /// On loopback each send costs a full trip through the TCP stack on
    /// the client's CPU. Topping the pipeline up one request per response
    /// cost 10.4 µs/request at depth 16 (wrk: 7.3); refilling at half
    /// depth, 7.2; whole batches, 6.6 with 3 % more throughput from the
    /// server, which also reads whole batches (BENCHMARKS.md).
    pub(super) fn fill(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        if self.open_loop.is_some()
            || c.state != ConnState::Open
            || self.stopping
            || c.inflight + c.queued > 0
        {
            return;
        }
        while c.inflight + c.queued < c.depth() {
            match &mut self.quota {
                Some(0) => break,
                Some(q) => *q -= 1,
                None => {}
            }
            c.queue(0);
            self.outstanding += 1;
        }
        if c.queued > 0 && !c.send_busy {
            self.send(ci);
        }
    }

    /// Open loop: queues every request whose intended time has come on a
    /// connection with a free pipeline slot, then sends once per touched
    /// connection. When no slot is free the request waits; the wait counts
    /// in its corrected latency.
    fn dispatch(&mut self) {
        if self.stopping {
            return;
        }
        let now = self.now;
        let n = self.conns.len();
        let Some(ol) = self.open_loop.as_mut() else {
            return;
        };
        ol.blocked = false;
        loop {
            let (intended, is_retry) = match ol.retry.last() {
                Some(&t) => (t, true),
                None => match ol.next_due {
                    Some(t) if t <= now => (t, false),
                    _ => break,
                },
            };
            if !is_retry && self.quota == Some(0) {
                break;
            }
            let cursor = ol.cursor;
            let conns = &self.conns;
            let Some(ci) = (0..n)
                .map(|i| (cursor + i) % n)
                .find(|&ci| conns[ci].state == ConnState::Open && conns[ci].free_slots() > 0)
            else {
                ol.blocked = true;
                ol.last_block_at = Some(now);
                break;
            };
            ol.cursor = (ci + 1) % n;
            if is_retry {
                ol.retry.pop();
            } else {
                ol.next_k += 1;
                ol.next_due = ol.schedule.intended_ns(ol.next_k);
                if let Some(q) = &mut self.quota {
                    *q -= 1;
                }
                self.outstanding += 1;
                if intended >= self.measure_from {
                    if ol.last_block_at.is_some_and(|b| intended <= b) {
                        // It waited for a connection (the server was slow),
                        // not for us: not generator lag.
                        self.stats.conn_waits += 1;
                    } else {
                        self.stats
                            .lag
                            .saturating_record(now.saturating_sub(intended) / 1000 + 1);
                    }
                }
            }
            let c = &mut self.conns[ci];
            if c.queued == 0 {
                ol.touched.push(ci as u32);
            }
            c.queue(intended);
        }
        let touched = std::mem::take(&mut ol.touched);
        for &ci in &touched {
            let ci = ci as usize;
            if self.conns[ci].queued > 0 && !self.conns[ci].send_busy {
                self.send(ci);
            }
        }
        if let Some(ol) = self.open_loop.as_mut() {
            ol.touched = touched;
            ol.touched.clear();
        }
    }

    pub(super) fn send(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        let n = c.queued;
        let (first, depth) = (c.head + c.inflight, c.depth());
        let (ptr, len) = match (&mut self.generator, &mut c.generator) {
            (Some(sg), Some(cg)) => {
                // The previous send from `out` is complete: closed loop and
                // SKIP_SUCCESS sends happen only with nothing in flight, and
                // otherwise `send_busy` holds the next send back.
                let now_ms = self.wall_epoch_ms + self.now / 1_000_000;
                c.out.clear();
                for k in 0..n {
                    let slot = ((first + k) % depth) as usize;
                    c.which[slot] = self.scenario.render(sg, cg, now_ms, &mut c.out);
                }
                (c.out.as_ptr(), c.out.len())
            }
            _ => (self.reqs.as_ptr(), n as usize * self.req_len),
        };
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
        let entry = opcode::Send::new(types::Fd(c.fd), ptr, len as u32)
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
    fn check_timers(&mut self) {
        let now = self.now;
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            match c.state {
                ConnState::Open => {
                    if c.oldest_sent_at()
                        .is_some_and(|t| now.saturating_sub(t) > self.timeout_ns)
                    {
                        self.fail(ci, ErrorKind::Timeout);
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
