//! The shard core: everything one shard *decides*, with no I/O in it (in
//! the sans-IO style of `http/`, quinn-proto and rustls).
//!
//! It owns the quota and the requests outstanding, the warm-up, the done
//! and unreachable checks, failure and re-issue accounting, connect backoff,
//! open-loop due times and lag, rendering requests into each connection's
//! send buffer, response bookkeeping into [`ShardStats`], and the
//! per-second sampling. An engine feeds it events (connected, bytes
//! received, send done, closed, time passed) with the time they happened,
//! and carries out the [`Action`]s it answers with (connect, send these
//! bytes, close), waking it again at [`Core::next_wake`]. Both engines run
//! this same core, so a rule is written once, and tested once, here.
//!
//! Times are ns since the shard started (the engine's clock; tests use a
//! fake one).

mod clocks;
mod conn;
mod open_loop;
mod plan;
#[cfg(test)]
mod tests;
mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use conn::GENERATION_MASK;
pub use plan::{LIVE_BUCKETS, LIVE_BUCKETS_US, LiveBuckets, ShardPlan, ShardProgress, plan};

use clocks::Clocks;
use conn::{Conn, ConnState};
use open_loop::OpenLoop;

use crate::config::Config;
use crate::scenario::{ConnGen, Scenario, ShardGen};
use crate::stats::{ErrorKind, ShardStats};

const BACKOFF_MIN_NS: u64 = 10_000_000;
const BACKOFF_MAX_NS: u64 = 1_000_000_000;
/// A send this small fits the smallest socket send buffer, so the kernel
/// takes all of it at once and it can go out without a completion.
const SILENT_SEND_MAX: usize = 16 * 1024;

/// What the core asks the engine to do. `conn` is a slot index;
/// `generation` names the socket, and every event the engine reports
/// carries the generation it was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open a socket for the slot, bind it to `--bind` address `source`
    /// (an index into [`Config::bind`]) if there is one, and connect it;
    /// report [`Core::on_connected`] or [`Core::on_connect_failed`].
    Connect {
        conn: u32,
        generation: u32,
        source: Option<u32>,
    },
    /// Send [`Core::send_bytes`] of the slot, whole. With `ack`, report
    /// [`Core::on_sent`] when done; without, report only a failure.
    Send {
        conn: u32,
        generation: u32,
        ack: bool,
    },
    /// Close the slot's socket of this generation (any operation still on
    /// it is stale from now on). A generation with no socket is ignored.
    Close { conn: u32, generation: u32 },
}

/// What the engine can do that changes what the core asks of it.
#[derive(Debug, Clone, Copy)]
pub struct EngineCaps {
    /// A send can report only its failure (io_uring's SKIP_SUCCESS): the
    /// core then asks for no ack when no later send could overtake it.
    pub silent_sends: bool,
}

pub struct Core<'a> {
    scenario: &'a Scenario,
    conns: Vec<Conn>,
    stats: ShardStats,
    /// Requests still to start (`None`: until the deadline).
    quota: Option<u64>,
    /// This shard's `-n`; after a warm-up the quota starts again from it.
    planned: Option<u64>,
    /// Requests started and not yet finished (answered or failed).
    outstanding: u64,
    open_loop: Option<OpenLoop>,
    /// A fixed request repeated `depth` times: a send of `k` pipelined
    /// requests is the first `k * req_len` bytes. Empty when templated.
    reqs: Box<[u8]>,
    req_len: usize,
    /// Templated requests: `{{seq}}` and the feed cursors of this shard.
    generator: Option<ShardGen>,
    /// Unix time (ms) at time 0, for `{{now_ms}}` and token lifetimes.
    wall_epoch_ms: u64,
    /// Sends may go without a success report (see [`EngineCaps`]).
    silent_sends: bool,
    actions: Vec<Action>,
    /// Slots with requests handed over since the last `stamp`.
    stamp_list: Vec<u32>,
    timeout_ns: u64,
    check_every_ns: u64,
    next_check: u64,
    /// Measurement starts here (end of warm-up).
    measure_from: u64,
    deadline: Option<u64>,
    warming: bool,
    clocks: Clocks,
    /// No new connections or requests: the run is ending.
    stopping: bool,
    finished: bool,
    /// Some slot connected at least once (the target is reachable).
    ever_connected: bool,
    /// Slots connecting or in their handshake.
    opening: u32,
    /// When the last request finished (answered or failed).
    last_completion: u64,
    /// `https://`: this shard's client config and the server's name.
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Decrypted bytes on their way to the parser (TLS only).
    tls_plain: Box<[u8]>,
    /// A failure no retry can fix (a refused certificate): the run ends.
    fatal: bool,
    rng: u64,
    progress: &'a ShardProgress,
    stop: &'a AtomicBool,
}

/// Why a response stream stopped being parsed.
enum Delivered {
    More,
    ServerClose,
    Error(ErrorKind),
}

impl<'a> Core<'a> {
    pub fn new(
        cfg: &'a Config,
        plan: &ShardPlan,
        caps: EngineCaps,
        progress: &'a ShardProgress,
        stop: &'a AtomicBool,
    ) -> Core<'a> {
        let conns_n = plan.connections;
        let depth = cfg.pipeline.max(1);
        let scenario: &Scenario = &cfg.scenario;
        let fixed = scenario.fixed_bytes();
        let req_len = fixed.map_or(scenario.max_request_len(), <[u8]>::len);
        let out_capacity = if fixed.is_some() { 0 } else { depth * req_len };
        let timeout_ns = cfg.timeout.as_nanos() as u64;
        let measure_from = plan.warmup.as_nanos() as u64;
        let shards = cfg.shards.max(1);
        let stream = cfg.part.stream(plan.index, shards);
        let open_loop = cfg
            .schedule
            .as_ref()
            .map(|s| OpenLoop::new(s.for_stream(stream, plan.warmup), conns_n, depth));
        let seed = cfg.part_seed();
        // A send needs no completion only if it cannot be overtaken: a
        // connection sends only with nothing in flight (closed loop sends
        // whole batches; open loop at depth 1), and the send fits the
        // smallest socket send buffer.
        let sends_only_when_idle = open_loop.is_none() || depth == 1;
        let check_every_ns = (timeout_ns / 10).clamp(1_000_000, 50_000_000);
        let tls = cfg
            .tls
            .as_ref()
            .map(|t| (t.for_shard(), t.server_name.clone()));
        let mut stats = ShardStats::with_requests(scenario.named_count());
        if tls.is_some() {
            stats.tls = Some(Box::default());
        }
        Core {
            scenario,
            conns: (0..conns_n)
                .map(|i| {
                    let generator = fixed
                        .is_none()
                        .then(|| ConnGen::with_seed(scenario, seed, plan.index, i));
                    let mut c = Conn::new(depth, cfg.max_header_bytes, generator, out_capacity);
                    // Round-robin over the process's connections (shard i's
                    // slot j is number i + S·j), so every shard spreads its
                    // slots over all the addresses.
                    c.source = (!cfg.bind.is_empty())
                        .then(|| ((plan.index + shards * i) % cfg.bind.len()) as u32);
                    c
                })
                .collect(),
            stats,
            quota: if measure_from == 0 {
                plan.requests
            } else {
                // The warm-up is unlimited; `-n` counts from its end.
                None
            },
            planned: plan.requests,
            outstanding: 0,
            open_loop,
            reqs: fixed.unwrap_or_default().repeat(depth).into_boxed_slice(),
            req_len,
            generator: fixed
                .is_none()
                .then(|| ShardGen::for_stream(scenario, stream)),
            wall_epoch_ms: 0,
            // TLS sends always report: rustls may have records to send
            // whenever the server speaks (tickets, key updates, alerts).
            silent_sends: caps.silent_sends
                && tls.is_none()
                && sends_only_when_idle
                && req_len * depth <= SILENT_SEND_MAX,
            actions: Vec::with_capacity(conns_n * 3 + 8),
            stamp_list: Vec::with_capacity(conns_n),
            timeout_ns,
            check_every_ns,
            next_check: check_every_ns,
            measure_from,
            deadline: cfg.duration.map(|d| measure_from + d.as_nanos() as u64),
            warming: measure_from > 0,
            clocks: Clocks::new(measure_from),
            stopping: false,
            finished: false,
            ever_connected: false,
            opening: 0,
            last_completion: 0,
            tls_plain: if tls.is_some() {
                vec![0; 16 * 1024].into_boxed_slice()
            } else {
                Box::default()
            },
            tls,
            fatal: false,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (stream.offset + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            progress,
            stop,
        }
    }

    /// Time 0 is now, which is `wall_ms` in Unix ms: opens every slot.
    pub fn start(&mut self, wall_ms: u64) {
        self.wall_epoch_ms = wall_ms;
        for ci in 0..self.conns.len() {
            self.open(ci, 0);
        }
    }

    /// Moves the actions queued since the last call into `into` (which
    /// must be empty; both vectors keep their capacity).
    #[inline]
    pub fn take_actions(&mut self, into: &mut Vec<Action>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.actions, into);
    }

    #[inline]
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The bytes of slot `conn`'s last [`Action::Send`]. They stay put and
    /// unchanged until that send is acked, or, for a send without ack,
    /// until its responses arrived (see `silent_sends`).
    #[inline]
    pub fn send_bytes(&self, conn: u32) -> &[u8] {
        let c = &self.conns[conn as usize];
        if c.tls.is_some() {
            &c.tls_out
        } else if c.generator.is_some() {
            &c.out
        } else {
            &self.reqs[..c.send_len]
        }
    }

    /// The requests handed over since the last call leave now: their
    /// latency starts at `now`.
    #[inline]
    pub fn stamp(&mut self, now: u64) {
        for &ci in &self.stamp_list {
            self.conns[ci as usize].stamp(now);
        }
        self.stamp_list.clear();
    }

    /// When the core next needs [`Core::turn`], at the latest.
    pub fn next_wake(&self) -> u64 {
        let mut wake = self.clocks.next_wake().min(self.next_check);
        if let Some(d) = self.deadline {
            wake = wake.min(d);
        }
        if self.warming {
            wake = wake.min(self.measure_from);
        }
        if let Some(ol) = &self.open_loop
            && !ol.blocked
            && self.quota != Some(0)
            && let Some(due) = ol.next_due
        {
            wake = wake.min(due);
        }
        wake
    }

    /// The warm-up is over: what happens now is measured.
    #[inline]
    pub fn is_measuring(&self) -> bool {
        !self.warming
    }

    /// True once the run is over: no more actions but the final closes.
    #[inline]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The stats so far (final once [`Core::is_finished`]).
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    pub fn into_stats(self) -> ShardStats {
        self.stats
    }

    /// Runs whatever is due at `now`: open-loop sends, the end of the
    /// warm-up, timeouts and reconnects, samples, and the end of the run.
    pub fn turn(&mut self, now: u64) {
        if self.finished {
            return;
        }
        if self.open_loop.is_some() {
            self.dispatch(now);
        }
        if self.warming && now >= self.measure_from {
            // Warm-up over: forget it, and start counting `-n` now. The
            // requests still in flight finish inside the measurement and
            // count toward N.
            self.warming = false;
            self.stats.reset_measurements();
            let outstanding = self.outstanding;
            self.quota = self.planned.map(|n| n.saturating_sub(outstanding));
            self.clocks.restart(now);
        }
        if now >= self.next_check {
            self.check_timers(now);
            self.next_check = now + self.check_every_ns;
        }
        let stopped = self.done(now)
            || self.fatal
            || self.stop.load(Ordering::Relaxed)
            || self.unreachable(now);
        let published =
            self.clocks
                .tick(&mut self.stats, now, self.warming, stopped, self.progress);
        if published {
            // Once per second: a walk over the slots, not per request.
            let open = self
                .conns
                .iter()
                .filter(|c| c.state == ConnState::Open)
                .count();
            self.progress
                .publish_connections(if stopped { 0 } else { open });
        }
        if stopped {
            self.finish(now);
        }
    }

    /// The deadline passed, or `-n` requests were all answered.
    fn done(&self, now: u64) -> bool {
        match (self.deadline, self.quota) {
            (Some(d), _) if now >= d => true,
            (_, Some(0)) => self.outstanding == 0,
            _ => false,
        }
    }

    /// In `-n` mode, a target that never accepted a connection within the
    /// timeout ends the run instead of retrying forever.
    fn unreachable(&self, now: u64) -> bool {
        let tls_errors = self.stats.tls.as_ref().map_or(0, |t| t.errors.total());
        self.planned.is_some()
            && now >= self.timeout_ns
            && self.stats.errors.connect + tls_errors > 0
            && !self.ever_connected
    }

    /// Ends the run: the measured time, and every socket closed.
    fn finish(&mut self, now: u64) {
        let end = match self.deadline {
            Some(d) => now.min(d),
            // A `-n` run ends with its last response, not when the engine
            // next looked.
            None if self.quota == Some(0) && self.outstanding == 0 => {
                self.last_completion.max(self.measure_from)
            }
            None => now,
        };
        self.stats.elapsed = Duration::from_nanos(end.saturating_sub(self.measure_from));
        self.stopping = true;
        self.finished = true;
        for ci in 0..self.conns.len() {
            self.close_socket(ci);
            self.set_state(ci, ConnState::Closed);
        }
    }

    // ---- events -------------------------------------------------------

    /// The slot's socket of `generation` connected.
    pub fn on_connected(&mut self, conn: u32, generation: u32, now: u64) {
        let ci = conn as usize;
        if !self.current(ci, generation, ConnState::Connecting) {
            return;
        }
        if self.tls.is_some() {
            self.start_handshake(ci, now);
        } else {
            self.ready(ci, now);
        }
    }

    /// The connection can carry requests.
    fn ready(&mut self, ci: usize, now: u64) {
        let c = &mut self.conns[ci];
        self.stats
            .connect
            .saturating_record((now.saturating_sub(c.connect_started) / 1000).max(1));
        if c.ever_connected {
            self.stats.reconnects += 1;
        }
        c.ever_connected = true;
        c.failures = 0;
        self.set_state(ci, ConnState::Open);
        self.ever_connected = true;
        self.fill(ci, now);
    }

    /// The connect failed (or no socket could be made).
    pub fn on_connect_failed(&mut self, conn: u32, generation: u32, now: u64) {
        let ci = conn as usize;
        if !self.current(ci, generation, ConnState::Connecting) {
            return;
        }
        self.stats.errors.connect += 1;
        self.backoff(ci, now);
    }

    /// A tracked send (`ack`) completed: all its bytes went out.
    pub fn on_sent(&mut self, conn: u32, generation: u32, now: u64) {
        let ci = conn as usize;
        if !self.live(ci, generation) {
            return;
        }
        let c = &mut self.conns[ci];
        c.send_busy = false;
        if c.queued > 0 && c.state == ConnState::Open {
            self.send(ci, now);
        } else {
            self.flush_tls(ci);
        }
    }

    /// A send failed with `errno`.
    pub fn on_send_failed(&mut self, conn: u32, generation: u32, errno: i32, now: u64) {
        let ci = conn as usize;
        if self.current(ci, generation, ConnState::Handshaking) {
            self.handshake_lost(ci, now);
        } else if self.current(ci, generation, ConnState::Open) {
            self.fail(ci, ErrorKind::from_errno(errno, ErrorKind::Write), now);
        }
    }

    /// `data` arrived on the slot's socket.
    pub fn on_received(&mut self, conn: u32, generation: u32, data: &[u8], now: u64) {
        let ci = conn as usize;
        if !self.live(ci, generation) {
            return;
        }
        self.stats.bytes_read += data.len() as u64;
        if self.conns[ci].tls.is_some() {
            self.received_tls(ci, data, now);
            return;
        }
        match self.deliver(ci, data, now) {
            Delivered::More => self.fill(ci, now),
            Delivered::ServerClose => self.replace(ci, now),
            Delivered::Error(kind) => self.fail(ci, kind, now),
        }
    }

    /// The server closed its side (a read returned 0).
    pub fn on_eof(&mut self, conn: u32, generation: u32, now: u64) {
        let ci = conn as usize;
        if self.current(ci, generation, ConnState::Handshaking) {
            self.handshake_lost(ci, now);
        } else if self.current(ci, generation, ConnState::Open) {
            self.closed_by_server(ci, now);
        }
    }

    /// The server ended the connection: a response delimited by the close
    /// completes; anything else in flight failed.
    fn closed_by_server(&mut self, ci: usize, now: u64) {
        match self.conns[ci].parser.eof() {
            Ok(Some(r)) => {
                let popped = self.conns[ci].pop_oldest();
                self.complete(r.status, popped, now);
                self.replace(ci, now);
            }
            // An idle keep-alive connection closed by the server: normal.
            Ok(None) if self.conns[ci].inflight == 0 => self.replace(ci, now),
            Ok(None) | Err(_) => self.fail(ci, ErrorKind::Closed, now),
        }
    }

    /// A receive failed with `errno`.
    pub fn on_recv_failed(&mut self, conn: u32, generation: u32, errno: i32, now: u64) {
        let ci = conn as usize;
        if self.current(ci, generation, ConnState::Handshaking) {
            self.handshake_lost(ci, now);
        } else if self.current(ci, generation, ConnState::Open) {
            self.fail(ci, ErrorKind::from_errno(errno, ErrorKind::Read), now);
        }
    }

    // ---- decisions ----------------------------------------------------

    /// Whether an event of `generation` is about the slot's current socket
    /// in `state` (anything else is stale: a socket already replaced).
    /// The core's bookkeeping agrees with its slots (tests call it after
    /// every step).
    #[cfg(test)]
    fn check_invariants(&self) {
        let opening = self.conns.iter().filter(|c| c.state.is_opening()).count();
        assert_eq!(self.opening as usize, opening, "slots opening");
        let held: u64 = self
            .conns
            .iter()
            .map(|c| (c.inflight + c.queued) as u64)
            .sum();
        assert!(
            held <= self.outstanding,
            "{held} held, {} outstanding",
            self.outstanding
        );
    }

    /// Moves slot `ci` to `state`, keeping count of the slots opening.
    fn set_state(&mut self, ci: usize, state: ConnState) {
        let c = &mut self.conns[ci];
        let was = c.state.is_opening();
        c.state = state;
        match (was, state.is_opening()) {
            (false, true) => self.opening += 1,
            (true, false) => self.opening -= 1,
            _ => {}
        }
    }

    #[inline]
    fn current(&self, ci: usize, generation: u32, state: ConnState) -> bool {
        self.conns
            .get(ci)
            .is_some_and(|c| c.is(generation) && c.state == state)
    }

    /// Whether the slot's socket of `generation` is connected (open, or
    /// in its TLS handshake).
    #[inline]
    fn live(&self, ci: usize, generation: u32) -> bool {
        self.conns.get(ci).is_some_and(|c| {
            c.is(generation) && matches!(c.state, ConnState::Open | ConnState::Handshaking)
        })
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough to spread reconnects.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn open(&mut self, ci: usize, now: u64) {
        if self.stopping {
            return;
        }
        self.set_state(ci, ConnState::Connecting);
        let c = &mut self.conns[ci];
        c.connect_started = now;
        self.actions.push(Action::Connect {
            conn: ci as u32,
            generation: c.generation,
            source: c.source,
        });
    }

    /// Drops the slot's socket (if it has one) and everything on it;
    /// returns how many requests were in flight or queued.
    fn close_socket(&mut self, ci: usize) -> u32 {
        let c = &mut self.conns[ci];
        if c.state.has_socket() {
            self.actions.push(Action::Close {
                conn: ci as u32,
                generation: c.generation,
            });
        }
        c.reset()
    }

    fn backoff(&mut self, ci: usize, now: u64) {
        let r = self.next_random();
        self.close_socket(ci);
        let c = &mut self.conns[ci];
        c.failures = c.failures.saturating_add(1);
        let base = (BACKOFF_MIN_NS << (c.failures - 1).min(7)).min(BACKOFF_MAX_NS);
        // Full jitter in [base/2, base): connections that failed together do
        // not retry together.
        let delay = base / 2 + r % (base / 2).max(1);
        c.retry_at = now + delay;
        self.set_state(ci, ConnState::Backoff);
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
    fn fill(&mut self, ci: usize, now: u64) {
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
            self.send(ci, now);
        }
    }

    /// Hands the slot's queued requests to the engine as one send.
    fn send(&mut self, ci: usize, now: u64) {
        let c = &mut self.conns[ci];
        let n = c.queued;
        let (first, depth) = (c.head + c.inflight, c.depth());
        if let (Some(sg), Some(cg)) = (&mut self.generator, &mut c.generator) {
            // With TLS `out` holds plaintext, which rustls copies at once;
            // without, see `send_bytes` for why it is free to rewrite.
            // The previous send from `out` is done: sends without ack happen
            // only with nothing in flight, and otherwise `send_busy` holds
            // this one back until the last is acked.
            let now_ms = self.wall_epoch_ms + now / 1_000_000;
            c.out.clear();
            for k in 0..n {
                let slot = ((first + k) % depth) as usize;
                c.which[slot] = self.scenario.render(sg, cg, now_ms, &mut c.out);
            }
            c.send_len = c.out.len();
        } else {
            c.send_len = n as usize * self.req_len;
        }
        if c.unstamped == 0 {
            self.stamp_list.push(ci as u32);
        }
        c.mark_sent();
        if let Some(s) = &mut c.tls {
            let plain = if c.generator.is_some() {
                &c.out[..]
            } else {
                &self.reqs[..c.send_len]
            };
            s.write_plain(plain);
            self.flush_tls(ci);
            return;
        }
        let ack = !self.silent_sends;
        c.send_busy = ack;
        self.stats.bytes_written += c.send_len as u64;
        self.actions.push(Action::Send {
            conn: ci as u32,
            generation: c.generation,
            ack,
        });
    }

    /// Parses what arrived, completing responses in order.
    fn deliver(&mut self, ci: usize, data: &[u8], now: u64) -> Delivered {
        let mut off = 0;
        while off < data.len() {
            let c = &mut self.conns[ci];
            if c.inflight == 0 {
                // Bytes nobody asked for.
                return Delivered::Error(ErrorKind::Parse);
            }
            if c.parser.is_idle()
                && let Some(sent) = c.oldest_sent_at()
            {
                // The first byte of the oldest request's response.
                self.stats
                    .ttfb
                    .saturating_record((now.saturating_sub(sent) / 1000).max(1));
            }
            let head = self.scenario.is_head(c.oldest_which());
            match c.parser.parse(&data[off..], head) {
                Ok((n, resp)) => {
                    off += n;
                    match resp {
                        Some(r) => {
                            let popped = c.pop_oldest();
                            self.complete(r.status, popped, now);
                            if r.close {
                                return Delivered::ServerClose;
                            }
                        }
                        None if n == 0 => return Delivered::Error(ErrorKind::Parse),
                        None => {}
                    }
                }
                Err(_) => return Delivered::Error(ErrorKind::Parse),
            }
        }
        Delivered::More
    }

    /// Books a response to a request popped off its connection.
    #[inline]
    fn complete(&mut self, status: u16, popped: (u64, u64, u16), now: u64) {
        self.outstanding -= 1;
        self.last_completion = now;
        let open_loop = self.open_loop.is_some();
        self.stats.record_completion(open_loop, now, status, popped);
    }

    /// The oldest in-flight request failed with `kind`; the connection is
    /// replaced and the requests behind it are sent again on the new one.
    fn fail(&mut self, ci: usize, kind: ErrorKind, now: u64) {
        self.stats.errors.add(kind);
        if self.conns[ci].inflight > 0 {
            let (_, _, which) = self.conns[ci].pop_oldest();
            self.stats.request_failed(which, kind);
            self.outstanding -= 1;
            self.last_completion = now;
            self.stats.note_error();
        }
        self.replace(ci, now);
    }

    /// Closes the connection and opens a new one. Its unanswered requests
    /// are sent again: in closed loop they go back to the quota; in open
    /// loop they keep their intended send times (so their delay counts).
    fn replace(&mut self, ci: usize, now: u64) {
        let sent = self.conns[ci].inflight as u64;
        if let Some(ol) = self.open_loop.as_mut() {
            ol.requeue(self.conns[ci].pending_intended());
            self.close_socket(ci);
        } else {
            let lost = self.close_socket(ci) as u64;
            self.outstanding -= lost;
            if let Some(q) = &mut self.quota {
                *q += lost;
            }
        }
        self.stats.reissued += sent;
        let retries = self.open_loop.as_ref().is_some_and(|ol| ol.has_retries());
        let depth = self.conns[ci].depth() as u64;
        if let Some(q) = self.quota
            && q <= self.opening as u64 * depth
            && !retries
        {
            // `-n` has handed out every request but those the connections
            // already opening will carry: another would carry nothing
            // (with --no-keepalive, it would only add a handshake).
            self.set_state(ci, ConnState::Closed);
            return;
        }
        self.open(ci, now);
    }

    /// Request timeouts, connect timeouts, and reconnects after backoff.
    fn check_timers(&mut self, now: u64) {
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            match c.state {
                ConnState::Open => {
                    if c.oldest_sent_at()
                        .is_some_and(|t| now.saturating_sub(t) > self.timeout_ns)
                    {
                        self.fail(ci, ErrorKind::Timeout, now);
                    }
                }
                ConnState::Connecting => {
                    if now.saturating_sub(c.connect_started) > self.timeout_ns {
                        self.stats.errors.connect += 1;
                        self.backoff(ci, now);
                    }
                }
                ConnState::Handshaking => {
                    if now.saturating_sub(c.handshake_started) > self.timeout_ns {
                        if let Some(t) = &mut self.stats.tls {
                            t.errors.timeout += 1;
                        }
                        self.backoff(ci, now);
                    }
                }
                ConnState::Backoff => {
                    if now >= c.retry_at {
                        self.open(ci, now);
                    }
                }
                ConnState::Closed => {}
            }
        }
    }
}
