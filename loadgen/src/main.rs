//! The `loadgen` binary: parse, run, report. Exit codes: 0 the run
//! completed, 1 a runtime failure (no connection could be made, I/O setup
//! failed, the report could not be written), 2 bad usage.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loadgen::cli::{Cli, Command, RunArgs, TargetArgs};
use loadgen::config::allowed_cpus;
use loadgen::engine::ShardProgress;
use loadgen::report::{self, RunReport};
use loadgen::target::{Server, TargetConfig};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first line says what is wrong; the usage block is noise.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            eprintln!("loadgen: {first} (see loadgen --help)");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Some(Command::Target(args)) => target(args),
        None => run(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn target(args: &TargetArgs) -> anyhow::Result<ExitCode> {
    let cfg = TargetConfig {
        listen: args.listen,
        threads: args.threads.unwrap_or_else(|| allowed_cpus().len().max(1)),
        stall: args.stall_every.zip(args.stall_for),
    };
    if let Some((every, stall_for)) = cfg.stall
        && (stall_for >= every || every.is_zero())
    {
        eprintln!("loadgen: --stall-for must be shorter than --stall-every");
        return Ok(ExitCode::from(2));
    }
    let stop = loadgen::signal::install();
    let server = Server::start(&cfg)?;
    println!(
        "loadgen target listening on http://{} ({} threads)",
        server.addr(),
        cfg.threads
    );
    let _ = std::io::stdout().flush();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("loadgen target: {} responses sent", server.responses());
    Ok(ExitCode::SUCCESS)
}

fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = match args.to_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let json_to_stdout = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let mut text_out: Box<dyn Write> = if json_to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let stop = loadgen::signal::install();
    write!(text_out, "{}", report::header(&cfg))?;
    text_out.flush()?;
    let progress: Vec<ShardProgress> = (0..cfg.shards).map(|_| ShardProgress::default()).collect();
    let running = AtomicBool::new(true);
    let out = std::thread::scope(|s| {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(2) } == 1 {
            s.spawn(|| progress_line(&progress, &running));
        }
        let out = loadgen::engine::run_observed(&cfg, stop, &progress);
        running.store(false, Ordering::Relaxed);
        out
    })?;
    let rep = RunReport::new(&cfg, &out, "io_uring", loadgen::signal::interrupted());
    write!(text_out, "{}", report::summary(&rep, args.latency))?;
    text_out.flush()?;
    if let Some(path) = &args.json {
        let mut doc = serde_json::to_string_pretty(&report::to_json(&rep))?;
        doc.push('\n');
        if json_to_stdout {
            std::io::stdout().write_all(doc.as_bytes())?;
        } else {
            std::fs::write(path, doc)
                .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
        }
    }
    if let Some(path) = &args.hdr_log {
        write_file(path, |f| {
            report::write_interval_log(f, &rep.series, out.started_at, out.total.elapsed)
        })?;
    }
    if let Some(path) = &args.percentiles {
        write_file(path, |f| report::write_percentiles(f, &out.total.latency))?;
    }
    let t = &out.total;
    if t.responses == 0 && t.errors.connect > 0 {
        eprintln!(
            "loadgen: could not connect to {} ({} connect errors): is the server running?",
            cfg.addr, t.errors.connect
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    write(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("cannot write {}", path.display()))
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
