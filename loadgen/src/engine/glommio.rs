//! The second engine: glommio, over the same sans-IO HTTP core and the
//! same per-shard stats. It needs only Linux ≥ 5.8, and as an independent
//! I/O path it cross-checks the default engine's counts. Measured here, it
//! costs about 1.6× wrk's client CPU per request (glommio's rings take no
//! setup flags), so it is the fallback, not the default.
//!
//! Shape: one `LocalExecutor` per shard, one task per connection. A
//! connection sends a batch of up to `depth` requests in one write and
//! reads until all are answered (the default engine's closed-loop batch
//! semantics, so counts agree request for request). Open loop: a pacing
//! task sleeps on glommio timers until each intended send time and hands
//! the request to an idle connection; a connection takes every request
//! already due (up to `depth`) in one write. A ticker task ends the run,
//! samples rates, closes the per-second series and ends the warm-up.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::timer::{sleep, timeout};
use glommio::{LocalExecutorBuilder, Placement};

use super::clocks::Clocks;
use super::{EngineError, ShardPlan, ShardProgress};
use crate::config::Config;
use crate::http::ResponseParser;
use crate::scenario::{ConnGen, ShardGen};
use crate::schedule::ShardSchedule;
use crate::stats::{ErrorKind, ShardStats};

/// glommio refuses to start below this much locked memory.
pub const MIN_MEMLOCK: u64 = 512 * 1024;

/// Checks the memlock limit glommio needs, before any thread starts.
pub fn check_memlock() -> Result<(), EngineError> {
    // SAFETY: getrlimit fills the struct we pass.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if lim.rlim_cur != libc::RLIM_INFINITY && (lim.rlim_cur as u64) < MIN_MEMLOCK {
        return Err(EngineError::Memlock(lim.rlim_cur as u64 / 1024));
    }
    Ok(())
}

struct Shared {
    stats: ShardStats,
    quota: Option<u64>,
    outstanding: u64,
    stopping: bool,
    /// Open loop: intended send times that are due, oldest first, and
    /// whether no connection was idle when each came due.
    due: VecDeque<(u64, bool)>,
    idle: u32,
    last_completion: u64,
    /// Templated requests: `{{seq}}` and feed cursors of this shard.
    generator: Option<ShardGen>,
}

struct Ctx {
    cfg: Arc<Config>,
    epoch: Instant,
    /// Unix ms at `epoch`.
    wall_epoch_ms: u64,
    shard: usize,
    /// A fixed request repeated `depth` times (empty when templated).
    reqs: Vec<u8>,
    req_len: usize,
    depth: usize,
    open_loop: bool,
    measure_from: u64,
}

impl Ctx {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

type State = Rc<RefCell<Shared>>;

pub fn run(
    cfg: &Config,
    stop: &AtomicBool,
    progress: &[ShardProgress],
) -> Result<Vec<ShardStats>, EngineError> {
    check_memlock()?;
    let cfg = Arc::new(cfg.clone());
    let plans = super::plan(&cfg);
    let start = Arc::new(Barrier::new(plans.len()));
    std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|plan| {
                let (cfg, start, plan) = (cfg.clone(), start.clone(), plan.clone());
                let progress = &progress[plan.index];
                s.spawn(move || {
                    let placement = match plan.cpu {
                        Some(cpu) => Placement::Fixed(cpu),
                        None => Placement::Unbound,
                    };
                    let ex = LocalExecutorBuilder::new(placement)
                        .name(&format!("loadgen-glommio-{}", plan.index))
                        // We do no file I/O: keep the registered buffer small.
                        .io_memory(64 << 10)
                        .make()
                        .map_err(|e| EngineError::Glommio(e.to_string()));
                    let ex = match ex {
                        Ok(ex) => ex,
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            start.wait();
                            return Err(e);
                        }
                    };
                    Ok(ex.run(shard(cfg, plan, stop, start, progress)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(EngineError::Panic)))
            .collect()
    })
}

async fn shard(
    cfg: Arc<Config>,
    plan: ShardPlan,
    stop: &AtomicBool,
    start: Arc<Barrier>,
    progress: &ShardProgress,
) -> ShardStats {
    let depth = cfg.pipeline.max(1);
    let open_loop = cfg.schedule.is_some();
    start.wait();
    let fixed = cfg.scenario.fixed_bytes();
    let ctx = Rc::new(Ctx {
        epoch: Instant::now(),
        wall_epoch_ms: super::clocks::unix_ms(),
        shard: plan.index,
        reqs: fixed.unwrap_or_default().repeat(depth),
        req_len: fixed.map_or(cfg.scenario.max_request_len(), <[u8]>::len),
        depth,
        open_loop,
        measure_from: cfg.warmup.as_nanos() as u64,
        cfg: cfg.clone(),
    });
    let st: State = Rc::new(RefCell::new(Shared {
        stats: ShardStats::with_requests(cfg.scenario.named_count()),
        generator: fixed
            .is_none()
            .then(|| ShardGen::new(&cfg.scenario, plan.index, cfg.shards)),
        quota: plan.quota_at_start(&cfg),
        outstanding: 0,
        stopping: false,
        due: VecDeque::with_capacity(plan.connections * depth),
        idle: 0,
        last_completion: 0,
    }));
    let wake = Rc::new(Semaphore::new(0));
    let mut tasks = Vec::new();
    for i in 0..plan.connections {
        tasks.push(
            glommio::spawn_local(connection(st.clone(), ctx.clone(), wake.clone(), i)).detach(),
        );
    }
    if let Some(s) = &cfg.schedule {
        let sched = s.with_warmup(cfg.warmup).for_shard(plan.index, cfg.shards);
        tasks.push(
            glommio::spawn_local(pace(st.clone(), ctx.clone(), wake.clone(), sched)).detach(),
        );
    }
    ticker(&st, &ctx, &plan, stop, progress).await;
    st.borrow_mut().stopping = true;
    wake.signal(u32::MAX as u64);
    drop(tasks);
    let mut shared = st.borrow_mut();
    std::mem::take(&mut shared.stats)
}

/// Ends the run and keeps the clocks: rate samples every 100 ms, the
/// per-second series, the end of the warm-up.
async fn ticker(
    st: &State,
    ctx: &Ctx,
    plan: &ShardPlan,
    stop: &AtomicBool,
    progress: &ShardProgress,
) {
    let deadline = ctx
        .cfg
        .duration
        .map(|d| ctx.measure_from + d.as_nanos() as u64);
    let mut warming = ctx.measure_from > 0;
    let mut clocks = Clocks::new(ctx.measure_from);
    loop {
        sleep(Duration::from_millis(1)).await;
        let now = ctx.now();
        let mut s = st.borrow_mut();
        if warming && now >= ctx.measure_from {
            warming = false;
            s.stats.reset_measurements();
            let outstanding = s.outstanding;
            s.quota = plan.requests.map(|n| n.saturating_sub(outstanding));
            clocks.restart(now);
        }
        let done = match (deadline, s.quota) {
            (Some(d), _) if now >= d => true,
            (_, Some(0)) => s.outstanding == 0,
            _ => false,
        };
        let unreachable = ctx.cfg.requests.is_some()
            && now >= ctx.cfg.timeout.as_nanos() as u64
            && s.stats.errors.connect > 0
            && s.stats.responses == 0
            && s.stats.errors.requests() == 0;
        let stopped = done || stop.load(Ordering::Relaxed) || unreachable;
        clocks.tick(&mut s.stats, now, warming, stopped, progress);
        if stopped {
            // `-n` ends when the last response arrived, not at this tick.
            let end = match (deadline, ctx.cfg.requests) {
                (Some(d), _) => now.min(d),
                (None, Some(_)) if s.last_completion > 0 => s.last_completion,
                _ => now,
            };
            s.stats.elapsed = Duration::from_nanos(end.saturating_sub(ctx.measure_from));
            return;
        }
    }
}

/// Open loop: releases each request at its intended send time.
async fn pace(st: State, ctx: Rc<Ctx>, wake: Rc<Semaphore>, mut sched: ShardSchedule) {
    let mut k = 0u64;
    while let Some(due) = sched.intended_ns(k) {
        let now = ctx.now();
        if due > now {
            sleep(Duration::from_nanos(due - now)).await;
        }
        {
            let mut s = st.borrow_mut();
            if s.stopping {
                return;
            }
            match &mut s.quota {
                Some(0) => return,
                Some(q) => *q -= 1,
                None => {}
            }
            s.outstanding += 1;
            let waited = s.idle == 0;
            if waited && due >= ctx.measure_from {
                s.stats.conn_waits += 1;
            }
            s.due.push_back((due, waited));
        }
        wake.signal(1);
        k += 1;
    }
}

/// Takes the next batch: closed loop from the quota, open loop from the
/// due queue (waiting for one if none is due). `None` ends the task.
async fn next_batch(
    st: &State,
    ctx: &Ctx,
    wake: &Semaphore,
    batch: &mut Vec<(u64, bool)>,
) -> Option<()> {
    batch.clear();
    if ctx.open_loop {
        st.borrow_mut().idle += 1;
        let woke = wake.acquire(1).await;
        let mut s = st.borrow_mut();
        s.idle -= 1;
        if woke.is_err() || s.stopping {
            return None;
        }
        // This permit is for one due request; take the others already due
        // (and their permits) into the same write.
        while batch.len() < ctx.depth {
            match s.due.pop_front() {
                Some(t) => batch.push(t),
                None => break,
            }
            if batch.len() > 1 && !wake.try_acquire(1).unwrap_or(false) {
                break;
            }
        }
        (!batch.is_empty()).then_some(())
    } else {
        let mut s = st.borrow_mut();
        if s.stopping {
            return None;
        }
        while batch.len() < ctx.depth {
            match &mut s.quota {
                Some(0) => break,
                Some(q) => *q -= 1,
                None => {}
            }
            s.outstanding += 1;
            batch.push((0, false));
        }
        (!batch.is_empty()).then_some(())
    }
}

enum Outcome {
    /// Every request of the batch was answered; the connection lives on.
    Done,
    /// The connection must be replaced; `answered` were counted.
    Replace {
        answered: usize,
        error: Option<ErrorKind>,
    },
}

fn io_kind(e: &std::io::Error, otherwise: ErrorKind) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => ErrorKind::Reset,
        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        _ => otherwise,
    }
}

/// A connection's rendering state: templated requests only.
struct Sender {
    generator: Option<ConnGen>,
    out: Vec<u8>,
    /// Which scenario request each request of the batch is.
    which: Vec<u16>,
}

async fn connection(st: State, ctx: Rc<Ctx>, wake: Rc<Semaphore>, index: usize) {
    let mut parser = ResponseParser::new(ctx.cfg.max_header_bytes);
    let templated = ctx.cfg.scenario.fixed_bytes().is_none();
    let mut snd = Sender {
        generator: templated.then(|| ConnGen::new(&ctx.cfg.scenario, ctx.shard, index)),
        out: Vec::with_capacity(if templated {
            ctx.depth * ctx.req_len
        } else {
            0
        }),
        which: vec![0; ctx.depth],
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut batch: Vec<(u64, bool)> = Vec::with_capacity(ctx.depth);
    let mut failures = 0u32;
    let mut ever = false;
    let mut carry: Vec<(u64, bool)> = Vec::with_capacity(ctx.depth);
    loop {
        if st.borrow().stopping {
            return;
        }
        let stream = match timeout(ctx.cfg.timeout, async {
            TcpStream::connect(ctx.cfg.addr)
                .await
                .map_err(|e| glommio::GlommioError::IoError(std::io::Error::other(e.to_string())))
        })
        .await
        {
            Ok(s) => s,
            Err(_) => {
                st.borrow_mut().stats.errors.connect += 1;
                failures = failures.saturating_add(1);
                let ms = (10u64 << (failures - 1).min(7)).min(1000);
                sleep(Duration::from_millis(
                    ms / 2 + (ms / 2) * (failures as u64 % 7) / 7,
                ))
                .await;
                continue;
            }
        };
        failures = 0;
        let _ = stream.set_nodelay(true);
        if ever {
            st.borrow_mut().stats.reconnects += 1;
        }
        ever = true;
        parser.reset();
        let mut stream = stream;
        loop {
            // Requests carried over from a connection that closed first.
            if carry.is_empty() {
                if next_batch(&st, &ctx, &wake, &mut batch).await.is_none() {
                    return;
                }
            } else {
                batch.clear();
                batch.append(&mut carry);
            }
            match exchange(
                &st,
                &ctx,
                &mut stream,
                &mut parser,
                &mut buf,
                &batch,
                &mut snd,
            )
            .await
            {
                Outcome::Done => {}
                Outcome::Replace { answered, error } => {
                    let mut s = st.borrow_mut();
                    let mut rest = answered;
                    if let Some(kind) = error {
                        s.stats.errors.add(kind);
                        if answered < batch.len() {
                            s.stats.request_failed(snd.which[answered], kind);
                        }
                        s.stats.note_error();
                        s.outstanding -= 1;
                        rest += 1;
                    }
                    // The requests behind are sent again on the next
                    // connection: as new ones (closed loop) or with their
                    // intended times (open loop).
                    let lost = batch.len().saturating_sub(rest);
                    s.stats.reissued += lost as u64;
                    if ctx.open_loop {
                        carry.extend_from_slice(&batch[rest..]);
                    } else {
                        s.outstanding -= lost as u64;
                        if let Some(q) = &mut s.quota {
                            *q += lost as u64;
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// Sends one batch and reads its responses.
async fn exchange(
    st: &State,
    ctx: &Ctx,
    stream: &mut TcpStream,
    parser: &mut ResponseParser,
    buf: &mut [u8],
    batch: &[(u64, bool)],
    snd: &mut Sender,
) -> Outcome {
    let n = batch.len();
    let sent = ctx.now();
    let bytes: &[u8] = match &mut snd.generator {
        Some(cg) => {
            let now_ms = ctx.wall_epoch_ms + sent / 1_000_000;
            let mut s = st.borrow_mut();
            // A shard without a generator is not templated; `None` here
            // cannot happen, and would send nothing.
            if let Some(sg) = s.generator.as_mut() {
                snd.out.clear();
                for w in &mut snd.which[..n] {
                    *w = ctx.cfg.scenario.render(sg, cg, now_ms, &mut snd.out);
                }
            }
            &snd.out
        }
        None => &ctx.reqs[..n * ctx.req_len],
    };
    if ctx.open_loop {
        let mut s = st.borrow_mut();
        for &(t, waited) in batch {
            // Requests that waited for a connection waited for the server.
            if t >= ctx.measure_from && !waited {
                s.stats
                    .lag
                    .saturating_record(sent.saturating_sub(t) / 1000 + 1);
            }
        }
    }
    if let Err(e) = stream.write_all(bytes).await {
        return Outcome::Replace {
            answered: 0,
            error: Some(io_kind(&e, ErrorKind::Write)),
        };
    }
    st.borrow_mut().stats.bytes_written += bytes.len() as u64;
    let mut answered = 0;
    while answered < n {
        let left = (sent + ctx.cfg.timeout.as_nanos() as u64).saturating_sub(ctx.now());
        let read = timeout(Duration::from_nanos(left.max(1)), async {
            stream
                .read(buf)
                .await
                .map_err(glommio::GlommioError::IoError)
        })
        .await;
        let k = match read {
            Ok(0) => {
                let now = ctx.now();
                return match parser.eof() {
                    Ok(Some(r)) => {
                        let which = snd.which[answered];
                        record(st, ctx, now, r.status, sent, batch[answered].0, which);
                        Outcome::Replace {
                            answered: answered + 1,
                            error: None,
                        }
                    }
                    Ok(None) | Err(_) => Outcome::Replace {
                        answered,
                        error: Some(ErrorKind::Closed),
                    },
                };
            }
            Ok(k) => k,
            Err(glommio::GlommioError::IoError(e)) => {
                return Outcome::Replace {
                    answered,
                    error: Some(io_kind(&e, ErrorKind::Read)),
                };
            }
            Err(_) => {
                return Outcome::Replace {
                    answered,
                    error: Some(ErrorKind::Timeout),
                };
            }
        };
        st.borrow_mut().stats.bytes_read += k as u64;
        let now = ctx.now();
        let mut off = 0;
        while off < k {
            if answered == n {
                return Outcome::Replace {
                    answered,
                    error: Some(ErrorKind::Parse),
                };
            }
            let which = snd.which[answered];
            match parser.parse(&buf[off..k], ctx.cfg.scenario.is_head(which)) {
                Ok((used, resp)) => {
                    off += used;
                    if let Some(r) = resp {
                        record(st, ctx, now, r.status, sent, batch[answered].0, which);
                        answered += 1;
                        if r.close {
                            return Outcome::Replace {
                                answered,
                                error: None,
                            };
                        }
                    } else if used == 0 {
                        return Outcome::Replace {
                            answered,
                            error: Some(ErrorKind::Parse),
                        };
                    }
                }
                Err(_) => {
                    return Outcome::Replace {
                        answered,
                        error: Some(ErrorKind::Parse),
                    };
                }
            }
        }
    }
    Outcome::Done
}

fn record(st: &State, ctx: &Ctx, now: u64, status: u16, sent: u64, intended: u64, which: u16) {
    let mut s = st.borrow_mut();
    s.outstanding -= 1;
    s.last_completion = now;
    s.stats
        .record_completion(ctx.open_loop, now, status, (sent, intended, which));
}
