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
mod decisions;
mod events;
mod h2;
mod h3;
mod open_loop;
mod plan;
mod quic;
mod quic_progress;
mod request_log;
mod slots;
#[cfg(test)]
mod tests;
mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use conn::GENERATION_MASK;
pub use plan::{LIVE_BUCKETS, LIVE_BUCKETS_US, LiveBuckets, ShardPlan, ShardProgress, plan};
pub use quic_progress::QuicProgress;
pub use request_log::{Completed, RequestLog, header as request_log_header};
pub use slots::MAX_SLOTS;

use clocks::Clocks;
use conn::{Conn, ConnState, SendFrom};
use h2::H2Requests;
use h3::H3Requests;
use open_loop::OpenLoop;

use crate::config::Config;
use crate::scenario::{ConnGen, Scenario, ShardGen};
use crate::stats::{ErrorKind, ShardStats};
use crate::sys::uring::BatchWait;

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
    /// HTTP/3 sends always ask an ack but for a socket's last (its
    /// CONNECTION_CLOSE, followed by its `Close`), which may go while
    /// another send of the socket is in flight.
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
    /// A connect or handshake has failed since the last one succeeded:
    /// when the first of those failures came (see [`Core::unreachable`]).
    down_since: Option<u64>,
    /// Slots connecting or in their handshake.
    opening: u32,
    /// Slots open (taking requests).
    open: u32,
    /// When the last request finished (answered or failed).
    last_completion: u64,
    /// `--batch-wait`, µs, and the recent latency it is kept under
    /// ([`Core::batch_wait`]).
    batch_wait_cap_us: u32,
    recent_latency_ns: u64,
    /// When the last turn began (its events' time), and when the wait
    /// before it began.
    last_turn_at: u64,
    wait_began_at: u64,
    /// `https://`: this shard's client config and the server's name.
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Decrypted bytes on their way to the parser (TLS only).
    tls_plain: Box<[u8]>,
    /// `--http2`: what puts requests on streams.
    h2: Option<H2Requests>,
    /// HTTP/3: the shard's QUIC endpoint and what puts requests on streams.
    h3: Option<H3Requests>,
    /// `--request-log`: the lines of this shard not yet written out.
    log: Option<RequestLog>,
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
        // HTTP/2 streams are the slots of an HTTP/1.1 pipeline.
        let depth = match (cfg.http2, cfg.http3) {
            (Some(h), _) => h.streams as usize,
            (None, Some(streams)) => streams as usize,
            (None, None) => cfg.pipeline.max(1),
        };
        let scenario: &Scenario = &cfg.scenario;
        let fixed = scenario.fixed_bytes();
        let req_len = fixed.map_or(scenario.max_request_len(), <[u8]>::len);
        // HTTP/2 renders one request at a time, in the shard's buffer.
        let out_capacity = if fixed.is_some() || cfg.http2.is_some() || cfg.http3.is_some() {
            0
        } else {
            depth * req_len
        };
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
        if cfg.http2.is_some() {
            stats.h2 = Some(Box::default());
        }
        if cfg.http3.is_some() {
            stats.quic = Some(Box::default());
        }
        if cfg.grpc.is_some() {
            stats.grpc = Some(Box::default());
        }
        let h2 = cfg
            .http2
            .map(|_| H2Requests::new(scenario, cfg.url.scheme()));
        // The command layer checks that HTTP/3 has TLS 1.3, its suite and a
        // TCP/UDP address; without them the run ends at once rather than
        // speak another protocol.
        let h3 = cfg.http3.and_then(|_| {
            let t = cfg.tls.as_ref()?;
            let quic = quic::Quic::new(
                t.for_shard_quic().ok()?,
                t.server_name.to_str().into_owned(),
                cfg.peer.tcp()?,
                std::time::Instant::now(),
                conns_n,
            );
            Some(H3Requests::new(scenario, quic, cfg.max_header_bytes))
        });
        let h3_refused = cfg.http3.is_some() && h3.is_none();
        let log = cfg.request_log.as_ref().map(|spec| {
            RequestLog::new(
                plan.index as u32,
                spec.sample,
                cfg.calls_grpc(),
                scenario
                    .named
                    .then(|| scenario.requests.iter().map(|r| r.name.as_str())),
                cfg.schedule.is_some(),
            )
        });
        Core {
            scenario,
            conns: (0..conns_n)
                .map(|i| {
                    let generator = fixed
                        .is_none()
                        .then(|| ConnGen::with_seed(scenario, seed, plan.index, i));
                    let mut c = Conn::new(
                        depth,
                        cfg.max_header_bytes,
                        generator,
                        out_capacity,
                        cfg.http2,
                    );
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
                && h2.is_none()
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
            down_since: None,
            opening: 0,
            open: 0,
            last_completion: 0,
            batch_wait_cap_us: cfg.batch_wait.as_micros().min(u32::MAX as u128) as u32,
            recent_latency_ns: 0,
            last_turn_at: 0,
            wait_began_at: 0,
            tls_plain: if tls.is_some() {
                vec![0; 16 * 1024].into_boxed_slice()
            } else {
                Box::default()
            },
            tls,
            h2,
            h3,
            log,
            fatal: h3_refused,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (stream.offset + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            progress,
            stop,
        }
    }

    /// Time 0 is now, which is `wall_us` in Unix µs: opens every slot.
    pub fn start(&mut self, wall_us: u64) {
        self.wall_epoch_ms = wall_us / 1000;
        if let Some(log) = &mut self.log {
            log.start(wall_us);
        }
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
        match c.send_from {
            SendFrom::Fixed => &self.reqs[..c.send_len],
            SendFrom::Out => &c.out,
            SendFrom::Tls => &c.tls_out,
            SendFrom::H2 => &c.h2_out,
            SendFrom::H3 => &c.h3_out,
        }
    }

    /// The requests handed over since the last call leave now: their
    /// latency starts at `now`.
    #[inline]
    pub fn stamp(&mut self, now: u64) {
        for &ci in &self.stamp_list {
            self.conns[ci as usize].slots.stamp(now);
        }
        self.stamp_list.clear();
    }

    /// How an engine that can should wait for events ([`BatchWait`]).
    /// Handling a busy shard's responses in batches
    /// means fewer wake-ups, fewer receives (segments that arrived
    /// together are read at once) and fewer sends (the requests that
    /// follow leave together). A response that waits in the kernel meanwhile
    /// has its latency read late by up to `min_wait_us`; so the wait is at
    /// most 1/32 of the recent latency (an error under 3 %), and none with
    /// a single request in flight, where no batch can form. Nor when the
    /// last turn, from its events to `now` (this wait's start), took
    /// longer than the wait: the shard is the slower side, and batches
    /// form while it works. Nor when the last wait took over 4 times as
    /// long: the shard was starved of its CPU (a wait then only adds a
    /// sleep to its delay, and hides it from the busy check), or nothing
    /// came back for that long, when there is little to batch. And never
    /// past `wake` ([`Core::next_wake`]): an open-loop send due then
    /// leaves on time.
    pub fn batch_wait(&mut self, now: u64, wake: u64) -> BatchWait {
        let last_wait_us = self.last_turn_at.saturating_sub(self.wait_began_at) / 1000;
        self.wait_began_at = now;
        let want = self.outstanding.min(256) as u32;
        let wait = (self.recent_latency_ns / 32_000)
            .min(self.batch_wait_cap_us as u64)
            .min(wake.saturating_sub(now) / 1000) as u32;
        let turn_us = now.saturating_sub(self.last_turn_at) / 1000;
        let slow = turn_us >= wait as u64 || last_wait_us >= 4 * wait as u64;
        if want < 2 || wait == 0 || slow {
            return BatchWait::NONE;
        }
        BatchWait {
            want,
            min_wait_us: wait,
        }
    }

    /// When the core next needs [`Core::turn`], at the latest.
    pub fn next_wake(&self) -> u64 {
        let mut wake = self.clocks.next_wake().min(self.next_check);
        if let Some(t) = self.h3.as_ref().and_then(|r| r.quic.earliest()) {
            wake = wake.min(t);
        }
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

    /// `--request-log`: the lines not yet written out. The engine writes
    /// them when [`RequestLog::is_full`] (where it would otherwise wait)
    /// and once the run is over, then clears them.
    #[inline]
    pub fn request_log(&mut self) -> Option<&mut RequestLog> {
        self.log.as_mut()
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
        self.last_turn_at = now;
        if self.finished {
            return;
        }
        if self.h3.is_some() {
            self.h3_timers(now);
        }
        if self.open_loop.is_some() {
            self.dispatch(now);
        }
        if self.warming && now >= self.measure_from {
            // Warm-up over: forget it, and start counting `-n` now. The
            // requests still in flight finish inside the measurement and
            // count toward N.
            self.warming = false;
            // QUIC's packet counts so far belong to the warm-up too.
            self.count_quic_packets();
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
        if self.clocks.publishes(now, self.warming, stopped) {
            // quinn-proto keeps packet totals, added when a connection
            // ends: the live figures take them first.
            self.count_quic_packets();
        }
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
    /// timeout ends the run instead of retrying forever; so does one that
    /// was reached but has refused every connect or handshake for a whole
    /// `--timeout` since, with no connection left open (a server that died
    /// or went silent mid-run: the `-n` can no longer be reached, and
    /// waiting would be a hang). A restart shorter than the timeout goes
    /// unnoticed but for the errors it caused.
    fn unreachable(&mut self, now: u64) -> bool {
        if self.planned.is_none() {
            return false;
        }
        let tls_errors = self.stats.tls.as_ref().map_or(0, |t| t.errors.total());
        if now >= self.timeout_ns
            && self.stats.errors.connect + tls_errors > 0
            && !self.ever_connected
        {
            return true;
        }
        let lost = self
            .down_since
            .is_some_and(|t| now >= t.saturating_add(self.timeout_ns))
            && self.open == 0;
        if lost {
            self.stats.lost_target = true;
        }
        lost
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
            self.close_socket(ci, now);
            self.set_state(ci, ConnState::Closed);
        }
    }
}
