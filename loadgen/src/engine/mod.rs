//! The load engine: one pinned thread per shard, each with its own
//! io_uring, connections as state machines, stats merged at the end.

mod conn;
mod ring;
mod shard;
mod sock;

use std::io;
use std::sync::Barrier;
use std::sync::atomic::AtomicBool;

pub use ring::RingMode;
pub use sock::SockAddr;

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

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// All shards merged.
    pub total: ShardStats,
    pub shards: Vec<ShardStats>,
    /// The weakest ring mode any shard got.
    pub ring_mode: RingMode,
}

/// Runs the load described by `cfg` until it is done or `stop` is set.
pub fn run(cfg: &Config, stop: &AtomicBool) -> Result<RunOutput, EngineError> {
    let plans = plan(cfg);
    let start = Barrier::new(plans.len());
    let results: Vec<Result<(ShardStats, RingMode), EngineError>> = std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| {
                let start = &start;
                std::thread::Builder::new()
                    .name(format!("loadgen-shard-{}", p.index))
                    .spawn_scoped(s, move || run_shard(cfg, p, stop, start))
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
    })
}

fn run_shard(
    cfg: &Config,
    plan: &ShardPlan,
    stop: &AtomicBool,
    start: &Barrier,
) -> Result<(ShardStats, RingMode), EngineError> {
    if let Some(cpu) = plan.cpu {
        // Pinning is best effort: a CPU removed by cgroups since start-up
        // just leaves the shard floating.
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    let mut shard = match shard::Shard::new(cfg, plan) {
        Ok(s) => s,
        Err(e) => {
            // Release the others and stop them: the run cannot be whole.
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            start.wait();
            return Err(e);
        }
    };
    shard.run(stop, start)?;
    let mode = shard.mode;
    Ok((std::mem::take(&mut shard.stats), mode))
}
