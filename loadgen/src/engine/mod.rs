//! The load engines: one pinned thread per shard, each running the shard
//! core (`crate::shard`) over its own I/O. The io_uring engine is the
//! default; glommio is the portable fallback and an independent
//! cross-check. Both start the same way, here: threads spawned, pinned,
//! set up, then released together through one gate.

mod gate;
pub mod glommio;
mod log_file;
mod uring;

use std::io;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use gate::Gate;

use crate::config::{Config, Engine, Validated};
use crate::shard::{ShardPlan, ShardProgress, plan};
use crate::stats::{RunOutput, ShardStats};
use crate::sys;
use crate::sys::uring::RingMode;

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
    #[error("cannot start a shard thread ({0}); lower -t/--threads or raise the process limit")]
    Spawn(io::Error),
    #[error("shard thread panicked; this is a bug, please report it")]
    Panic,
    /// Another shard failed to start; its error is the one reported.
    #[error("the run was stopped before it started because another shard failed")]
    Aborted,
    #[error(
        "the glommio engine needs at least 512 KiB of locked memory, but `ulimit -l` is {0} KiB: raise it (ulimit -l 1024, or LimitMEMLOCK= in systemd) or use --engine uring"
    )]
    Memlock(u64),
    #[error("the glommio engine could not start: {0}")]
    Glommio(String),
    #[error("cannot open --request-log {}: {error}", path.display())]
    RequestLog {
        path: std::path::PathBuf,
        error: io::Error,
    },
    #[error(
        "the --unix-socket path is not a socket address ({0}): give a path of at most 107 bytes"
    )]
    UnixPath(io::Error),
}

/// Environment switch for tests: pretend the kernel lacks
/// `DEFER_TASKRUN`, so `--engine auto` must fall back.
pub const FORCE_NO_DEFER_TASKRUN: &str = "LOADGEN_FORCE_NO_DEFER_TASKRUN";

/// `--engine auto`: the io_uring engine when the kernel has the ring
/// features it is built for (`SINGLE_ISSUER | DEFER_TASKRUN`, Linux ≥ 6.1,
/// plus provided-buffer rings), else glommio (Linux ≥ 5.8). Probes the
/// kernel; returns the choice and why.
pub fn auto_engine(force_no_defer_taskrun: bool) -> (Engine, String) {
    if force_no_defer_taskrun {
        return (
            Engine::Glommio,
            format!("io_uring DEFER_TASKRUN disabled by {FORCE_NO_DEFER_TASKRUN}=1"),
        );
    }
    match sys::uring::Uring::new(8, RingMode::DeferTaskrun, 8, 64, 1) {
        Ok(r) if r.mode == RingMode::DeferTaskrun => (
            Engine::Uring,
            "the kernel supports DEFER_TASKRUN and buffer rings".into(),
        ),
        Ok(_) => (
            Engine::Glommio,
            "the kernel lacks io_uring DEFER_TASKRUN (Linux < 6.1)".into(),
        ),
        Err(sys::uring::SetupError::BufRing(e)) => {
            (Engine::Glommio, format!("no io_uring buffer rings ({e})"))
        }
        Err(sys::uring::SetupError::Ring(e)) => {
            (Engine::Glommio, format!("io_uring unavailable ({e})"))
        }
    }
}

/// What a shard thread is given.
pub struct Shard<'a> {
    pub cfg: &'a Config,
    pub plan: ShardPlan,
    pub stop: &'a AtomicBool,
    pub progress: &'a ShardProgress,
}

/// Runs the load described by `cfg` until it is done or `stop` is set.
pub fn run(cfg: &Validated, stop: &AtomicBool) -> Result<RunOutput, EngineError> {
    run_observed(cfg, stop, &[])
}

/// Like [`run`], publishing each shard's progress once per second into
/// `progress` (one slot per shard; with fewer, nothing is published).
pub fn run_observed(
    cfg: &Validated,
    stop: &AtomicBool,
    progress: &[ShardProgress],
) -> Result<RunOutput, EngineError> {
    if cfg.engine == Engine::Glommio {
        glommio::check_memlock()?;
    }
    let unobserved: Vec<ShardProgress>;
    let progress = if progress.len() >= cfg.shards {
        progress
    } else {
        unobserved = (0..cfg.shards).map(|_| ShardProgress::default()).collect();
        &unobserved
    };
    let plans = plan(cfg);
    if let Some(at) = cfg.start_at {
        wait_for_start(at.checked_sub(cfg.warmup).unwrap_or(at), stop);
    }
    let gate = Gate::new(plans.len());
    let results = std::thread::scope(|s| {
        gate::start_threads(&gate, plans.len(), |i| {
            let shard = Shard {
                cfg,
                plan: plans[i].clone(),
                stop,
                progress: &progress[i],
            };
            let gate = &gate;
            std::thread::Builder::new()
                .name(format!("loadgen-shard-{i}"))
                .spawn_scoped(s, move || shard_main(shard, gate))
        })
    });
    let mut shards = Vec::with_capacity(results.len());
    let mut ring_mode: Option<RingMode> = None;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok((stats, mode)) => {
                ring_mode = match (ring_mode, mode) {
                    (Some(a), Some(b)) => Some(a.weakest(b)),
                    (a, b) => a.or(b),
                };
                shards.push(stats);
            }
            Err(e) => errors.push(e),
        }
    }
    if let Some(e) = gate::root_cause(errors) {
        return Err(e);
    }
    // Each shard notes when its measurement started; this is for a run
    // whose shards never got there (stopped in the warm-up).
    let planned = match cfg.start_at {
        Some(at) => at,
        None => gate.opened_at().unwrap_or_else(SystemTime::now) + cfg.warmup,
    };
    Ok(RunOutput::new(shards, ring_mode, planned))
}

/// `--start-at`: sleeps until `until` (the warm-up's start), or until the
/// run is stopped. The shards are not started yet: nothing connects early.
fn wait_for_start(until: SystemTime, stop: &AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok(left) = until.duration_since(SystemTime::now()) else {
            return;
        };
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// A shard's clock starts: its epoch (and the epoch on the wall clock, in
/// Unix µs), and its plan with the warm-up the core is to run. With `--start-at` that is the time left until the start
/// on this host's clock, so the measured window opens at that wall-clock
/// instant (both clocks are read together; the core reads neither).
fn start_clock(shard: &Shard<'_>) -> (ShardPlan, Instant, u64) {
    let mut plan = shard.plan.clone();
    let (epoch, wall) = (Instant::now(), SystemTime::now());
    if let Some(at) = shard.cfg.start_at {
        plan.warmup = at.duration_since(wall).unwrap_or(Duration::ZERO);
    }
    (plan, epoch, unix_us(wall))
}

/// One shard thread, either engine: pin, set up, pass the gate, run.
fn shard_main(
    shard: Shard<'_>,
    gate: &Gate,
) -> Result<(ShardStats, Option<RingMode>), EngineError> {
    // Leaving without passing the gate (an error or a panic) releases the
    // other shards instead of leaving them waiting.
    let pass = gate.pass();
    prepare_thread(&shard.plan);
    let log = log_file::LogFile::open(shard.cfg)?;
    match shard.cfg.engine {
        Engine::Uring => {
            let ring = uring::setup(&shard)?;
            let mode = ring.mode;
            pass.wait()?;
            Ok((uring::run(&shard, ring, log)?, Some(mode)))
        }
        Engine::Glommio => Ok((glommio::run(&shard, pass, log)?, None)),
    }
}

/// What every shard thread gets before its engine starts: its CPU, and no
/// timer slack (io_uring's timed waits and glommio's timers alike wake on
/// time only without it; glommio's threads once kept the default 50 µs).
fn prepare_thread(plan: &ShardPlan) {
    if let Some(cpu) = plan.cpu {
        sys::pin_current_thread(cpu);
    }
    sys::no_timer_slack();
}

/// The shard thread's time on a CPU, and runnable but waiting for one,
/// over the measured window: started when the core's warm-up ends, read
/// when the run does. It also notes the wall-clock time the measurement
/// started (what `started_at` reports, and how close parts started).
#[derive(Default)]
struct CpuMeter {
    from: Option<(u64, u64)>,
    started_at: Option<SystemTime>,
}

impl CpuMeter {
    /// Call after each turn; cheap until the measurement starts.
    #[inline]
    fn watch(&mut self, core: &crate::shard::Core<'_>) {
        if self.from.is_none() && core.is_measuring() {
            self.started_at = Some(SystemTime::now());
            self.from = Some(sys::thread_sched_ns());
        }
    }

    /// Stores the window's CPU and run-queue time, and its start, in
    /// `stats`.
    fn finish(&self, stats: &mut ShardStats) {
        if let Some((cpu0, wait0)) = self.from {
            let (cpu, wait) = sys::thread_sched_ns();
            stats.cpu = Duration::from_nanos(cpu.saturating_sub(cpu0));
            stats.runq = Duration::from_nanos(wait.saturating_sub(wait0));
        }
        stats.started_at = self.started_at;
    }
}

/// `t` in Unix µs: the shard clock's 0 on the wall clock, the epoch of
/// `{{now_ms}}`, token lifetimes and the request log's times.
fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_threads_of_either_engine_have_no_timer_slack() {
        let plan = ShardPlan {
            index: 0,
            cpu: None,
            connections: 1,
            requests: None,
            warmup: Duration::ZERO,
        };
        let slack = std::thread::spawn(move || {
            prepare_thread(&plan);
            sys::timer_slack_ns()
        })
        .join()
        .unwrap();
        assert_eq!(slack, 1);
    }
}
