//! The load engine: one pinned thread per shard, each with its own
//! io_uring, connections as state machines, stats merged at the end.

mod clocks;
mod conn;
mod events;
pub mod glommio;
mod ring;
mod shard;
mod sock;

use std::io;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use ring::RingMode;
pub use sock::{SockAddr, stream_socket};

use crate::config::Config;
use crate::stats::ShardStats;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot create an io_uring ({0}); check that io_uring is enabled (sysctl kernel.io_uring_disabled=0) and not blocked by seccomp"
    )]
    Ring(io::Error),
    #[error("cannot register the receive buffer ring ({0}); loadgen needs Linux 5.19 or newer")]
    BufRing(io::Error),
    #[error("io_uring_enter failed: {0}")]
    Enter(io::Error),
    #[error("shard thread panicked; this is a bug, please report it")]
    Panic,
    #[error(
        "the glommio engine needs at least 512 KiB of locked memory, but `ulimit -l` is {0} KiB: raise it (ulimit -l 1024, or LimitMEMLOCK= in systemd) or use --engine uring"
    )]
    Memlock(u64),
    #[error("the glommio engine could not start: {0}")]
    Glommio(String),
}

/// Which I/O engine drives the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Our io_uring loop (the default).
    Uring,
    /// glommio, over the same HTTP core (portable fallback, cross-check).
    Glommio,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Uring => "io_uring",
            Engine::Glommio => "glommio",
        }
    }
}

/// Environment switch for tests: pretend the kernel lacks
/// `DEFER_TASKRUN`, so `--engine auto` must fall back.
pub const FORCE_NO_DEFER_TASKRUN: &str = "LOADGEN_FORCE_NO_DEFER_TASKRUN";

/// `--engine auto`: the io_uring engine when the kernel has the ring
/// features it is built for (`SINGLE_ISSUER | DEFER_TASKRUN`, Linux ≥ 6.1,
/// plus provided-buffer rings), else glommio (Linux ≥ 5.8). Returns the
/// choice and why.
pub fn auto_engine() -> (Engine, String) {
    if std::env::var_os(FORCE_NO_DEFER_TASKRUN).is_some_and(|v| v == "1") {
        return (
            Engine::Glommio,
            format!("io_uring DEFER_TASKRUN disabled by {FORCE_NO_DEFER_TASKRUN}=1"),
        );
    }
    match ring::build_ring(8, RingMode::DeferTaskrun) {
        Ok((r, RingMode::DeferTaskrun)) => match ring::BufRing::new(&r, 8, 64, 1) {
            Ok(_) => (
                Engine::Uring,
                "the kernel supports DEFER_TASKRUN and buffer rings".into(),
            ),
            Err(e) => (Engine::Glommio, format!("no io_uring buffer rings ({e})")),
        },
        Ok(_) => (
            Engine::Glommio,
            "the kernel lacks io_uring DEFER_TASKRUN (Linux < 6.1)".into(),
        ),
        Err(e) => (Engine::Glommio, format!("io_uring unavailable ({e})")),
    }
}

/// What one shard is asked to do.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub index: usize,
    /// CPU to pin to, if any.
    pub cpu: Option<usize>,
    pub connections: usize,
    /// Requests to complete (`-n`), or `None` to run until the deadline.
    pub requests: Option<u64>,
}

impl ShardPlan {
    /// The `-n` quota when the shard starts: with a warm-up, none (the
    /// warm-up is unlimited and `-n` counts from its end).
    pub fn quota_at_start(&self, cfg: &Config) -> Option<u64> {
        if cfg.warmup.is_zero() {
            self.requests
        } else {
            None
        }
    }
}

/// Splits connections (and `-n` requests) evenly, the remainder going to
/// the first shards.
pub fn plan(cfg: &Config) -> Vec<ShardPlan> {
    let t = cfg.shards;
    (0..t)
        .map(|i| ShardPlan {
            index: i,
            cpu: (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]),
            connections: cfg.connections / t + usize::from(i < cfg.connections % t),
            requests: cfg
                .requests
                .map(|n| n / t as u64 + u64::from((i as u64) < n % t as u64)),
        })
        .collect()
}

/// Live numbers one shard publishes once per second (for the progress
/// line); padded so shards never share a cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct ShardProgress {
    pub responses: AtomicU64,
    pub errors: AtomicU64,
    /// p99 latency (µs) of the last completed second.
    pub last_p99_us: AtomicU64,
    pub seconds: AtomicU64,
}

impl ShardProgress {
    pub(crate) fn publish(&self, stats: &ShardStats) {
        self.responses.store(stats.responses, Ordering::Relaxed);
        self.errors.store(stats.errors.total(), Ordering::Relaxed);
        let p99 = stats.seconds.last().map_or(0, |s| s.p99_us);
        self.last_p99_us.store(p99, Ordering::Relaxed);
        self.seconds
            .store(stats.seconds.len() as u64, Ordering::Release);
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// All shards merged.
    pub total: ShardStats,
    pub shards: Vec<ShardStats>,
    /// The weakest ring mode any shard got.
    pub ring_mode: RingMode,
    /// Wall-clock time at which measurement started (after warm-up).
    pub started_at: std::time::SystemTime,
}

/// Runs the load described by `cfg` until it is done or `stop` is set.
pub fn run(cfg: &Config, stop: &AtomicBool) -> Result<RunOutput, EngineError> {
    let progress: Vec<ShardProgress> = (0..cfg.shards).map(|_| ShardProgress::default()).collect();
    run_observed(cfg, stop, &progress)
}

/// Like [`run`], publishing each shard's progress once per second into
/// `progress` (one slot per shard).
pub fn run_observed(
    cfg: &Config,
    stop: &AtomicBool,
    progress: &[ShardProgress],
) -> Result<RunOutput, EngineError> {
    let started_at = std::time::SystemTime::now() + cfg.warmup;
    if cfg.engine == Engine::Glommio {
        let shards = glommio::run(cfg, stop, progress)?;
        let mut total = ShardStats::new();
        for s in &shards {
            total.merge(s);
        }
        return Ok(RunOutput {
            total,
            shards,
            ring_mode: RingMode::Plain,
            started_at,
        });
    }
    let plans = plan(cfg);
    let start = Barrier::new(plans.len());
    let results: Vec<Result<(ShardStats, RingMode), EngineError>> = std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| {
                let start = &start;
                std::thread::Builder::new()
                    .name(format!("loadgen-shard-{}", p.index))
                    .spawn_scoped(s, move || {
                        run_shard(cfg, p, stop, start, &progress[p.index])
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or(Err(EngineError::Panic)),
                Err(e) => Err(EngineError::Ring(e)),
            })
            .collect()
    });
    let mut total = ShardStats::new();
    let mut shards = Vec::with_capacity(results.len());
    let mut ring_mode = RingMode::DeferTaskrun;
    for r in results {
        let (stats, mode) = r?;
        total.merge(&stats);
        if mode as u8 > ring_mode as u8 {
            ring_mode = mode;
        }
        shards.push(stats);
    }
    Ok(RunOutput {
        total,
        shards,
        ring_mode,
        started_at,
    })
}

fn run_shard(
    cfg: &Config,
    plan: &ShardPlan,
    stop: &AtomicBool,
    start: &Barrier,
    progress: &ShardProgress,
) -> Result<(ShardStats, RingMode), EngineError> {
    if let Some(cpu) = plan.cpu {
        // Pinning is best effort: a CPU removed by cgroups since start-up
        // just leaves the shard floating.
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    // The default 50 µs timer slack showed up whole in open-loop schedule
    // lag (p50 65 µs at 2k req/s); 1 ns makes the ring's timed waits wake
    // on time.
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let mut shard = match shard::Shard::new(cfg, plan) {
        Ok(s) => s,
        Err(e) => {
            // Release the others and stop them: the run cannot be whole.
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            start.wait();
            return Err(e);
        }
    };
    shard.run(plan, stop, start, progress)?;
    let mode = shard.mode;
    Ok((std::mem::take(&mut shard.stats), mode))
}
