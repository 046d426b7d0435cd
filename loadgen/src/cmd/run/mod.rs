//! A load run: flags → config → the runs (with the profiler around each
//! measured window) → one report, printed and written → the exit status.

mod assemble;
mod baseline;
mod files;
mod load;
mod repeat;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use loadgen::config::{Config, Engine, RingMode};
use loadgen::metrics::{Endpoint, Info, Live, ServerCheck};
use loadgen::report;
use loadgen::stats::RunOutput;

use super::cli::RunArgs;
use super::exit::{self, Cause, Reach};
use super::setup::Prepared;
use super::usage;

pub use assemble::{document, run_report, server_metrics};
pub use files::{load_name, write_profile_files};
pub use load::{Hooks, run_load};

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
fn linger_metrics(addr: SocketAddr, linger: Duration) {
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
    let Prepared { cfg, mut out } = Prepared::new(args, &args.thresholds)?;
    let server = server_check(args)?;
    let endpoint = match args.metrics_listen {
        Some(addr) => Some(Endpoint::bind(addr).map_err(usage)?),
        None => None,
    };
    let stop = loadgen::signal::install();
    let mut header = report::header(&cfg);
    if args.runs > 1 {
        header.push_str(&format!("  {} runs\n", args.runs));
    }
    let live = endpoint
        .map(|ep| serve_live(ep, &cfg, &mut header))
        .transpose()?;
    write!(out, "{header}")?;
    out.flush()?;
    let hooks = Hooks {
        live: live.as_deref(),
        server: server.as_ref(),
    };
    let runs = repeat::Runs::make(args, &cfg, stop, &hooks, &mut out)?;
    let total = runs.total()?;
    ring_notice(&cfg, &total);
    let per_run = runs.reports(&cfg);
    let rep = assemble::run_report(&cfg, &total, &per_run);
    let mut doc = assemble::document(&rep, &header, args.latency, &mut out)?;
    if let Some(check) = &server {
        assemble::server_metrics(&mut doc, check, &runs.windows, &mut out)?;
    }
    assemble::runs_and_profile(&mut doc, &runs, &per_run, &mut out)?;
    let slower = match &args.baseline {
        Some(path) => baseline::compare(args, path, &mut doc, runs.profile.as_ref(), &mut out)?,
        None => None,
    };
    super::output::judge(&args.thresholds, &mut doc, &mut out)?;
    files::write_outputs(args, &doc, &rep, runs.profile.as_ref())?;
    // Said in this order; the status is the smallest code.
    let causes: Vec<Cause> = [
        slower,
        Cause::of_unexpected(rep.unexpected(), || rep.expected_text()),
        Cause::of_thresholds(&doc.thresholds),
        Cause::of_reach(&Reach::of(&total.total), &cfg.url.host, &cfg.peer),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(exit::finish(&causes))
}

/// `--server-metrics`, checked before the run.
fn server_check(args: &RunArgs) -> anyhow::Result<Option<ServerCheck>> {
    let Some(url) = &args.server_metrics else {
        return Ok(None);
    };
    ServerCheck::new(url, &args.server_counter, args.server_histogram.as_deref())
        .map(Some)
        .map_err(|e| usage(format!("--server-metrics: {e}")))
}

/// `--metrics-listen`: serves the live figures from now on, and says
/// where in the header.
fn serve_live(ep: Endpoint, cfg: &Config, header: &mut String) -> anyhow::Result<Arc<Live>> {
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
        http3: cfg.http3.is_some(),
    }));
    let addr = ep.addr;
    ep.spawn(live.clone())
        .context("cannot start the --metrics-listen thread")?;
    header.push_str(&format!("  live metrics: http://{addr}/metrics\n"));
    Ok(live)
}

/// io_uring without DEFER_TASKRUN costs client CPU: said, as it changes
/// what the run measured.
fn ring_notice(cfg: &Config, total: &RunOutput) {
    if cfg.engine == Engine::Uring
        && let Some(mode) = total.ring_mode
        && mode != RingMode::DeferTaskrun
    {
        eprintln!(
            "loadgen: notice: io_uring ran with {} (the kernel refused SINGLE_ISSUER|DEFER_TASKRUN): more client CPU per request",
            mode.describe()
        );
    }
}
