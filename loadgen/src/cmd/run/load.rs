//! One load: the engine on its threads, the profiler attached for the
//! measured window, the server's metrics scraped at the window's edges,
//! and a progress line on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use loadgen::config::{Config, Validated};
use loadgen::metrics::server::Scrape;
use loadgen::metrics::{Live, ServerCheck, Window};
use loadgen::profile::{self, Profile, ProfileConfig, Session};
use loadgen::shard::ShardProgress;
use loadgen::stats::RunOutput;

use crate::cmd::cli::RunArgs;

/// What a run reports to besides its result: the live metrics endpoint,
/// and the server whose metrics are scraped at the window's edges.
#[derive(Default)]
pub struct Hooks<'a> {
    pub live: Option<&'a Live>,
    pub server: Option<&'a ServerCheck>,
}

/// What one load gives: the client's figures, the target's profile, and
/// the server's metrics at the window's edges.
pub struct Load {
    pub out: RunOutput,
    pub profile: Option<Profile>,
    pub window: Option<Window>,
}

/// Runs the engine; the profiler samples from the end of the warm-up until
/// the load stops, and the server's metrics are scraped at those edges.
pub fn run_load(
    cfg: &Validated,
    stop: &'static AtomicBool,
    mut session: Option<Session>,
    hooks: &Hooks<'_>,
) -> anyhow::Result<Load> {
    let progress: Arc<[ShardProgress]> = (0..cfg.shards)
        .map(|_| ShardProgress::with_requests(cfg.scenario.named_count()))
        .collect();
    if let Some(live) = hooks.live {
        live.begin_run(progress.clone());
    }
    // With no warm-up the window opens with the load, so the first scrape
    // comes before any request leaves.
    let mut before = hooks
        .server
        .filter(|_| cfg.warmup.is_zero())
        .map(ServerCheck::scrape);
    let running = AtomicBool::new(true);
    let out = std::thread::scope(|s| {
        if std::io::stderr().is_terminal() {
            s.spawn(|| progress_line(&progress, &running));
        }
        let engine = s.spawn(|| {
            let out = loadgen::engine::run_observed(cfg, stop, &progress);
            running.store(false, Ordering::Relaxed);
            out
        });
        open_window(cfg, hooks.server, &running, &mut before, &mut session);
        engine
            .join()
            .unwrap_or(Err(loadgen::engine::EngineError::Panic))
    });
    // Every connection is closed by now: what the server answered is all
    // it will count.
    let window = hooks.server.zip(before).map(|(check, before)| Window {
        before,
        after: check.scrape(),
        // Requests in flight at each edge inside the load: the end, and
        // the start when a warm-up runs into it.
        in_flight: (cfg.connections * cfg.pipeline.max(1)) as u64
            * if cfg.warmup.is_zero() { 1 } else { 2 },
    });
    if let Some(live) = hooks.live {
        live.end_run();
    }
    let out = out?;
    let profile = match session.map(Session::finish) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            eprintln!("loadgen: {e}; no profile");
            None
        }
        None => None,
    };
    Ok(Load {
        out,
        profile,
        window,
    })
}

/// Waits, while the load runs, for the end of the warm-up (with
/// `--start-at`, that instant), where the measured window opens: the
/// server's first scrape, and the profiler attaches.
fn open_window(
    cfg: &Config,
    server: Option<&ServerCheck>,
    running: &AtomicBool,
    before: &mut Option<Scrape>,
    session: &mut Option<Session>,
) {
    let at_warmup_end = server.filter(|_| !cfg.warmup.is_zero());
    if session.is_none() && at_warmup_end.is_none() {
        return;
    }
    let warmup = match cfg.start_at {
        Some(at) => at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
        None => cfg.warmup,
    };
    let until = Instant::now() + warmup;
    while running.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(5)));
    }
    if let Some(check) = at_warmup_end {
        *before = Some(check.scrape());
    }
    if let Some(sess) = session.as_mut()
        && let Err(e) = sess.attach()
    {
        eprintln!("loadgen: {e}; continuing without a profile");
        *session = None;
    }
}

/// Finds the target and loads the sampler; on failure says why in one
/// line and returns None (the load runs anyway).
pub fn start_profiler(args: &RunArgs, cfg: &Config) -> Option<Session> {
    let pids = if args.profile_pids.is_empty() {
        let found = match cfg.peer.unix() {
            Some(path) => profile::target_for_unix_socket(path),
            None => profile::target_for_port(cfg.url.port, cfg.http3.is_some()),
        };
        match found {
            Ok(p) => p,
            Err(e) => {
                eprintln!("loadgen: {e}; continuing without a profile");
                return None;
            }
        }
    } else {
        args.profile_pids.clone()
    };
    let pcfg = ProfileConfig {
        pids,
        freq: args.profile_freq,
        unwind: args.unwind,
        stack_bytes: args.stack_bytes,
        interpreter_frames: !args.no_interpreter_frames,
        off_cpu: args.wants_off_cpu().then_some(profile::OffCpuConfig {
            min: args.off_cpu_min,
            stacks_per_s: args.off_cpu_stacks.map(f64::from),
        }),
    };
    match Session::start(&pcfg) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("loadgen: {e}; continuing without a profile");
            None
        }
    }
}

/// One line on stderr, redrawn every second: elapsed, rate over the last
/// second, p99 of the last second (worst shard), errors. Erased at the end.
fn progress_line(progress: &[ShardProgress], running: &AtomicBool) {
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    let mut drawn = false;
    while running.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if last.1.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let sum = |f: fn(&ShardProgress) -> u64| progress.iter().map(f).sum::<u64>();
        let responses = sum(|p| p.responses.load(Ordering::Relaxed));
        let errors = sum(|p| p.errors.load(Ordering::Relaxed));
        let p99 = progress
            .iter()
            .map(|p| p.last_p99_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let rate = responses.saturating_sub(last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (responses, Instant::now());
        eprint!(
            "\r\x1b[K[{:>4.0}s] {} req/s, p99 {}, errors {}",
            start.elapsed().as_secs_f64(),
            loadgen::units::format_metric(rate),
            loadgen::units::format_time_us(p99 as f64),
            errors
        );
        drawn = true;
    }
    if drawn {
        eprint!("\r\x1b[K");
    }
}
