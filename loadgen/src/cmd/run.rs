//! A load run: config → engine (with the profiler around the measured
//! window) → reports.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::cli::RunArgs;
use anyhow::Context;
use loadgen::config::{Config, Engine, RingMode, Validated};
use loadgen::metrics::{ClientCount, Endpoint, Info, Live, ServerCheck, Window};
use loadgen::profile::{self, Profile, ProfileConfig, Session};
use loadgen::report::{self, Baseline, Distribution, Report, RunEntry, RunReport};
use loadgen::shard::ShardProgress;
use loadgen::stats::RunOutput;

use super::write_file;

pub fn main(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let code = run_and_report(args)?;
    if let (Some(addr), Some(linger)) = (args.metrics_listen, args.metrics_linger) {
        linger_metrics(addr, linger);
    }
    Ok(code)
}

/// `--metrics-linger`: the endpoint thread keeps serving the final
/// numbers while the process lives, so live on until a scraper has had its
/// chance, or Ctrl-C.
fn linger_metrics(addr: std::net::SocketAddr, linger: std::time::Duration) {
    if loadgen::signal::interrupted() {
        return;
    }
    eprintln!(
        "loadgen: serving the final metrics at http://{addr}/metrics for {} (Ctrl-C ends it)",
        loadgen::units::format_time_us(linger.as_micros() as f64)
    );
    loadgen::signal::sleep(linger);
}

fn run_and_report(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = match super::setup::run_config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    // Everything that can be wrong with the flags is found before the run.
    if let Err(e) = super::setup::raise_file_limit(&cfg) {
        eprintln!("loadgen: {e}");
        return Ok(ExitCode::from(2));
    }
    for t in &args.thresholds {
        if let Err(e) = t.check_inputs(!cfg.expect_status.is_empty()) {
            eprintln!("loadgen: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    let server = match &args.server_metrics {
        Some(url) => {
            match ServerCheck::new(url, &args.server_counter, args.server_histogram.as_deref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("loadgen: --server-metrics: {e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        None => None,
    };
    let endpoint = match args.metrics_listen {
        Some(addr) => match Endpoint::bind(addr) {
            Ok(ep) => Some(ep),
            Err(e) => {
                eprintln!("loadgen: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    let json_to_stdout = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let mut text_out: Box<dyn Write> = if json_to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let stop = loadgen::signal::install();
    let mut header = report::header(&cfg);
    if args.runs > 1 {
        header.push_str(&format!("  {} runs\n", args.runs));
    }
    let live = match endpoint {
        Some(ep) => {
            let live = Arc::new(Live::new(Info {
                requests: if cfg.scenario.named {
                    cfg.scenario
                        .requests
                        .iter()
                        .map(|r| r.name.clone())
                        .collect()
                } else {
                    Vec::new()
                },
                // A part is asked for its share of the fleet's rate.
                schedule: cfg
                    .schedule
                    .as_ref()
                    .map(|s| s.with_warmup(cfg.warmup).scaled(1.0 / cfg.part.of as f64)),
            }));
            let addr = ep.addr;
            ep.spawn(live.clone())
                .context("cannot start the --metrics-listen thread")?;
            header.push_str(&format!("  live metrics: http://{addr}/metrics\n"));
            Some(live)
        }
        None => None,
    };
    write!(text_out, "{header}")?;
    text_out.flush()?;
    let hooks = Hooks {
        live: live.as_deref(),
        server: server.as_ref(),
    };
    let mut outs: Vec<RunOutput> = Vec::new();
    let mut windows: Vec<Window> = Vec::new();
    let mut profile: Option<Profile> = None;
    // Each run's per-second target figures, joined to its own seconds.
    let mut targets: Vec<Option<TargetRun>> = Vec::new();
    let mut run_profiles: Vec<Option<loadgen::profile::ProfileReport>> = Vec::new();
    for run in 0..args.runs {
        // The first run always happens: a stop that came before it ends
        // it at once, and the report says so. A stop in a pause ends the
        // pause and the runs; the finished ones are reported.
        if run > 0 && !loadgen::signal::sleep(args.pause) {
            break;
        }
        let session = if args.wants_profile() {
            start_profiler(args, &cfg)
        } else {
            None
        };
        let (out, p, window) = run_load(&cfg, stop, session, &hooks)?;
        windows.extend(window);
        if args.runs > 1 {
            let t = &out.total;
            let q = |q: f64| loadgen::histogram::quantile(&t.latency, q);
            writeln!(
                text_out,
                "  run {}/{}: {:.2} req/s, p50 {}, p99 {}, errors {}",
                run + 1,
                args.runs,
                t.responses as f64 / t.elapsed.as_secs_f64().max(1e-9),
                loadgen::units::format_time_us(q(0.5) as f64),
                loadgen::units::format_time_us(q(0.99) as f64),
                t.errors.total()
            )?;
            text_out.flush()?;
        }
        targets.push(p.as_ref().map(|p| TargetRun::of(p, out.started_at)));
        if args.runs > 1 {
            // Each run's own figures, for `compare` run by run; the stacks
            // are left to the merged profile.
            run_profiles.push(p.as_ref().map(|p| {
                let mut r = p.report();
                r.folded.clear();
                if let Some(o) = &mut r.off_cpu {
                    o.folded.clear();
                }
                r
            }));
        }
        match (&mut profile, p) {
            (Some(all), Some(p)) => all.merge(&p),
            (slot @ None, Some(p)) => *slot = Some(p),
            _ => {}
        }
        outs.push(out);
    }
    let Some(out) = RunOutput::combine(&outs) else {
        anyhow::bail!("no run was made");
    };
    if cfg.engine == Engine::Uring
        && let Some(mode) = out.ring_mode
        && mode != RingMode::DeferTaskrun
    {
        eprintln!(
            "loadgen: notice: io_uring ran with {} (the kernel refused SINGLE_ISSUER|DEFER_TASKRUN): more client CPU per request",
            mode.describe()
        );
    }
    let engine = cfg.engine.name();
    let interrupted = loadgen::signal::interrupted();
    // With several runs, each run's report is built once: its seconds make
    // the combined series, and it is the run's entry in the JSON.
    let per_run: Vec<RunReport> = if outs.len() > 1 {
        outs.iter()
            .map(|o| RunReport::new(&cfg, o, engine, false))
            .collect()
    } else {
        Vec::new()
    };
    let rep = if per_run.is_empty() {
        RunReport::new(&cfg, &out, engine, interrupted)
    } else {
        RunReport::from_runs(&cfg, &out, engine, interrupted, &per_run)
    };
    let summary = report::summary(&rep, args.latency);
    write!(text_out, "{summary}")?;
    let mut doc = Report::new(&rep);
    doc.summary_text = format!("{header}{summary}");
    doc.host = loadgen::sys::host_name();
    if let Some(check) = &server {
        let (m, warnings) = check.evaluate(
            &windows,
            ClientCount {
                requests: doc.requests,
                duration_s: doc.duration_s,
            },
        );
        write!(text_out, "{}", m.text())?;
        for w in &warnings {
            writeln!(text_out, "{w}")?;
        }
        doc.warnings.extend(warnings);
        doc.server_metrics = Some(m);
    }
    if let Some(p) = &profile {
        write!(text_out, "{}", p.summary())?;
    }
    text_out.flush()?;
    doc.profile = profile.as_ref().map(Profile::report);
    doc.runs = per_run
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut report = Report::new(r);
            report.profile = run_profiles.get(i).cloned().flatten();
            RunEntry { run: i + 1, report }
        })
        .collect();
    join_targets(&mut doc, &targets);
    let mut slower = false;
    if let Some(base_path) = &args.baseline {
        let (b, s) = baseline(args, base_path, &doc, profile.as_ref(), &mut text_out)?;
        doc.baseline = Some(b);
        slower = s;
    }
    if !args.thresholds.is_empty() {
        let Some(outcomes) = super::report::judge(&args.thresholds, &doc) else {
            return Ok(ExitCode::from(2));
        };
        write!(text_out, "{}", loadgen::threshold::table(&outcomes))?;
        text_out.flush()?;
        doc.thresholds = outcomes;
    }
    if let Some(path) = &args.json {
        super::report::write_json(path, &doc)?;
    }
    if let Some(path) = &args.html {
        super::report::write_html(path, &doc)?;
    }
    if let Some(path) = &args.hdr_log {
        write_file(path, |f| {
            report::write_interval_log(f, &rep.series, out.started_at, out.total.elapsed)
        })?;
    }
    if let Some(path) = &args.percentiles {
        write_file(path, |f| report::write_percentiles(f, &out.total.latency))?;
    }
    if let Some(p) = &profile {
        write_profile_files(
            p,
            args.flamegraph.as_deref(),
            args.folded.as_deref(),
            &load_name(&cfg),
        )?;
        write_off_cpu_files(
            p,
            args.off_cpu_flamegraph.as_deref(),
            args.off_cpu_folded.as_deref(),
            &load_name(&cfg),
        )?;
    }
    // Precedence: 1 (nothing connected), then 3, 4, 5; every cause says so.
    let mut codes: Vec<u8> = Vec::new();
    if slower && let Some(pct) = args.fail_if_slower {
        eprintln!("loadgen: significantly slower than the baseline by {pct}% or more");
        codes.push(3);
    }
    if let Some(n) = rep.unexpected().filter(|&n| n > 0) {
        eprintln!(
            "loadgen: {n} responses had a status outside --expect-status {}",
            rep.expected_text()
        );
        codes.push(4);
    }
    let failed = doc.thresholds.iter().filter(|o| !o.ok).count();
    if failed > 0 {
        let names: Vec<&str> = doc
            .thresholds
            .iter()
            .filter(|o| !o.ok)
            .map(|o| o.expr.as_str())
            .collect();
        eprintln!(
            "loadgen: {failed} of {} thresholds failed: {}",
            doc.thresholds.len(),
            names.join(", ")
        );
        codes.push(5);
    }
    let t = &out.total;
    if let Some(why) = t.tls.as_ref().and_then(|t| t.cert_error.as_ref()) {
        eprintln!(
            "loadgen: TLS certificate verification failed for {}: {why}; trust its CA with --cacert FILE, or skip verification with -k",
            cfg.url.host
        );
        return Ok(ExitCode::from(1));
    }
    let tls_failed = t.tls.as_ref().map_or(0, |t| t.errors.total());
    if t.responses == 0 && tls_failed > 0 && t.errors.connect == 0 {
        eprintln!(
            "loadgen: no TLS handshake with {} succeeded ({tls_failed} failed; see the TLS errors line): is it an https server, and does it accept this client (--tls-version, --ciphers, --cert)?",
            cfg.addr
        );
        return Ok(ExitCode::from(1));
    }
    if t.responses == 0 && t.errors.connect > 0 {
        eprintln!(
            "loadgen: could not connect to {} ({} connect errors): is the server running?",
            cfg.addr, t.errors.connect
        );
        return Ok(ExitCode::from(1));
    }
    Ok(codes
        .into_iter()
        .min()
        .map_or(ExitCode::SUCCESS, ExitCode::from))
}

/// `--baseline`: the statistical comparison, and with a profile on both
/// sides the differential flamegraph. Returns what the HTML page shows and
/// whether `--fail-if-slower` is tripped.
fn baseline(
    args: &RunArgs,
    base_path: &std::path::Path,
    doc: &Report,
    profile: Option<&Profile>,
    out: &mut Box<dyn Write>,
) -> anyhow::Result<(Baseline, bool)> {
    let base = super::compare::read_report(base_path)?;
    writeln!(out, "Compared with {}:", base_path.display())?;
    out.flush()?;
    let c = loadgen::compare::runs::compare(&base, doc, 0.05)?;
    write!(out, "{}", c.text())?;
    let typed = serde_json::to_value(c.report())?;
    let mut b = Baseline {
        path: base_path.display().to_string(),
        samples: typed["samples"].as_str().unwrap_or("").to_string(),
        alpha: c.alpha,
        metrics: serde_json::from_value(typed["metrics"].clone())?,
        warnings: c.warnings.clone(),
        distributions: loadgen::compare::runs::distributions(&base, doc)
            .into_iter()
            .map(|(metric, unit, a, n)| Distribution {
                metric: metric.to_string(),
                unit: serde_json::to_value(unit)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                base: a,
                new: n,
            })
            .collect(),
        flame_diff: None,
        base_folded: Vec::new(),
    };
    if let (Some(p), Some(lines)) = (profile, base.folded()) {
        let base_f = loadgen::profile::Folded::read(lines.join("\n").as_bytes())?;
        let requests = Some((base.requests, doc.requests)).filter(|&(b, n)| b > 0 && n > 0);
        let d = loadgen::compare::diff::diff(&base_f, &p.folded, requests);
        write!(out, "{}", d.text())?;
        b.flame_diff = Some(d.to_json());
        b.base_folded = lines.to_vec();
        if let Some(path) = &args.diff_flamegraph {
            let title = format!("{} → this run", base_path.display());
            let f = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            loadgen::compare::diff::render(&base_f, &p.folded, &title, std::io::BufWriter::new(f))?;
            writeln!(out, "Differential flamegraph written to {}", path.display())?;
        }
    }
    // Off-CPU on both sides: the wait per request, by blocking site.
    if let (Some(o), Some(lines)) = (
        profile.and_then(|p| p.off_cpu.as_ref()),
        base.off_cpu_folded(),
    ) {
        let base_f = loadgen::profile::Folded::read(lines.join("\n").as_bytes())?;
        let requests = Some((base.requests, doc.requests)).filter(|&(b, n)| b > 0 && n > 0);
        let d = loadgen::compare::diff::diff(&base_f, &o.folded(), requests);
        writeln!(out, "Off-CPU, compared with the baseline's:")?;
        write!(out, "{}", d.text())?;
    }
    let slower = args.fail_if_slower.is_some_and(|pct| c.slower_than(pct));
    Ok((b, slower))
}

/// "1000 req/s on http://…" or "closed loop, 64 connections on http://…".
pub fn load_name(cfg: &Config) -> String {
    match &cfg.schedule {
        Some(s) if s.stages.len() == 1 => {
            format!("{:.0} req/s on {}", s.stages[0].from, cfg.url.raw)
        }
        Some(_) => format!("staged load on {}", cfg.url.raw),
        None => format!("{} connections on {}", cfg.connections, cfg.url.raw),
    }
}

pub fn write_profile_files(
    p: &Profile,
    flamegraph: Option<&std::path::Path>,
    folded: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<()> {
    if let Some(path) = folded {
        p.write_folded(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = flamegraph {
        if p.samples == 0 {
            eprintln!(
                "loadgen: no samples, so no flamegraph written to {}",
                path.display()
            );
        } else {
            p.write_flamegraph(path, what)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// `--off-cpu-folded` and `--off-cpu-flamegraph`.
pub fn write_off_cpu_files(
    p: &Profile,
    flamegraph: Option<&std::path::Path>,
    folded: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<()> {
    for path in [folded, flamegraph].into_iter().flatten() {
        if p.off_cpu.is_none() {
            eprintln!(
                "loadgen: no off-CPU profile (see the warning above), so nothing written to {}",
                path.display()
            );
            return Ok(());
        }
    }
    if let Some(path) = folded {
        p.write_off_cpu_folded(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = flamegraph {
        if p.has_off_cpu_stacks() {
            p.write_off_cpu_flamegraph(path, what)
                .with_context(|| format!("cannot write {}", path.display()))?;
        } else {
            eprintln!(
                "loadgen: no off-CPU waits, so no flamegraph written to {}",
                path.display()
            );
        }
    }
    Ok(())
}

/// A run's per-second target figures and where they start relative to
/// the client's measured window.
struct TargetRun {
    seconds: Vec<profile::TargetSecond>,
    /// Client window start − profile window start, in whole seconds.
    shift: i64,
    off_cpu: bool,
}

impl TargetRun {
    fn of(p: &Profile, started_at: std::time::SystemTime) -> TargetRun {
        let gap = p
            .attached_at
            .map_or(0.0, |a| match started_at.duration_since(a) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            });
        TargetRun {
            seconds: p.seconds.clone(),
            shift: gap.round() as i64,
            off_cpu: p.off_cpu.is_some(),
        }
    }
}

/// Joins each run's target seconds to its seconds in the series (and in
/// its own entry of `runs`).
fn join_targets(doc: &mut Report, targets: &[Option<TargetRun>]) {
    if doc.runs.is_empty() {
        if let Some(Some(t)) = targets.first() {
            report::join_target(&mut doc.series, &t.seconds, t.shift, t.off_cpu);
        }
        return;
    }
    let mut at = 0;
    for (entry, t) in doc.runs.iter_mut().zip(targets) {
        let n = entry.report.series.len();
        if let Some(t) = t {
            report::join_target(&mut entry.report.series, &t.seconds, t.shift, t.off_cpu);
            if let Some(slice) = doc.series.get_mut(at..at + n) {
                report::join_target(slice, &t.seconds, t.shift, t.off_cpu);
            }
        }
        at += n;
    }
}

/// Finds the target and loads the sampler; on failure says why in one
/// line and returns None (the load runs anyway).
fn start_profiler(args: &RunArgs, cfg: &Config) -> Option<Session> {
    let pids = if args.profile_pids.is_empty() {
        match profile::target_for_port(cfg.url.port) {
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

/// What a run reports to besides its result: the live metrics endpoint,
/// and the server whose metrics are scraped at the window's edges.
#[derive(Default)]
pub struct Hooks<'a> {
    pub live: Option<&'a Live>,
    pub server: Option<&'a ServerCheck>,
}

/// Runs the engine; the profiler samples from the end of the warm-up until
/// the load stops, and the server's metrics are scraped at those edges.
pub fn run_load(
    cfg: &Validated,
    stop: &'static AtomicBool,
    mut session: Option<Session>,
    hooks: &Hooks<'_>,
) -> anyhow::Result<(RunOutput, Option<Profile>, Option<Window>)> {
    let progress: Arc<[ShardProgress]> = (0..cfg.shards)
        .map(|_| ShardProgress::with_requests(cfg.scenario.named_count()))
        .collect();
    if let Some(live) = hooks.live {
        live.begin_run(progress.clone());
    }
    // With no warm-up the window opens with the load, so the first scrape
    // comes before any request leaves.
    let mut before = match hooks.server {
        Some(check) if cfg.warmup.is_zero() => Some(check.scrape()),
        _ => None,
    };
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
        let at_warmup_end = hooks.server.filter(|_| !cfg.warmup.is_zero());
        if session.is_some() || at_warmup_end.is_some() {
            // With --start-at the warm-up ends at that instant.
            let warmup = match cfg.start_at {
                Some(at) => at
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or(Duration::ZERO),
                None => cfg.warmup,
            };
            let until = Instant::now() + warmup;
            while Instant::now() < until && running.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5).min(until - Instant::now()));
            }
            if let Some(check) = at_warmup_end {
                before = Some(check.scrape());
            }
            if let Some(sess) = session.as_mut()
                && let Err(e) = sess.attach()
            {
                eprintln!("loadgen: {e}; continuing without a profile");
                session = None;
            }
        }
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
    Ok((out, profile, window))
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
        let responses: u64 = progress
            .iter()
            .map(|p| p.responses.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = progress
            .iter()
            .map(|p| p.errors.load(Ordering::Relaxed))
            .sum();
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
