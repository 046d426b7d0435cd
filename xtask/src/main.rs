//! Build and benchmark helpers: `cargo xtask <command>`.
//!
//! - `ebpf [--check]`: builds the eBPF program into `loadgen/bpf/` (object
//!   and manifest); `--check` rebuilds it in a scratch directory and
//!   compares the bytes with the committed object (CI runs it).
//! - `compare`: loadgen vs wrk on nginx, client CPU per request, in
//!   alternating runs (see BENCHMARKS.md for the method).
//! - `profile-overhead`: the target's throughput with profiling off, at
//!   99 Hz and at 999 Hz, and the time from the end of the load to the
//!   flamegraph.
//! - `profile-depth`: how whole the stacks of deep and shallow C programs
//!   are, and the cost per sample, by unwinding mode and against perf.
//! - `python-cost`: what Python frames cost per sample, against
//!   `--no-interpreter-frames` and py-spy at the same rate.
//! - `metrics-overhead`: client CPU per request with `--metrics-listen`
//!   off, and on with a scrape every second, alternating.
//! - `request-log-overhead`: client CPU per request with `--request-log`
//!   off and on, at depths 1 and 16 against nginx, alternating.
//! - `max-rate`: an open-loop rate sweep of one shard against the built-in
//!   target: schedule lag and achieved rate.

mod args;
mod compare;
mod ebpf;
mod max_rate;
mod metrics_overhead;
mod profile_depth;
mod profile_overhead;
mod python_cost;
mod request_log_overhead;

use std::process::ExitCode;

/// Builds the release `loadgen` binary and returns its path.
pub fn build_loadgen() -> anyhow::Result<std::path::PathBuf> {
    let root = loadgen_tests::workspace_root();
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "loadgen", "--bin", "loadgen"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        anyhow::bail!("building loadgen failed");
    }
    Ok(root.join("target/release/loadgen"))
}

/// Starts the built-in target with one thread pinned to CPU 0 on a free
/// loopback port; returns it and its port.
pub fn start_pinned_target(
    bin: &std::path::Path,
    cpu: usize,
) -> anyhow::Result<(std::process::Child, u16)> {
    let port = loadgen_tests::nginx::free_port()?;
    let mut child = std::process::Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(bin)
        .args(["target", "--threads", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    // It says so once it listens.
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    }
    if !line.contains("listening on") {
        let _ = child.kill();
        anyhow::bail!("the built-in target did not start: {line:?}");
    }
    Ok((child, port))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("compare") => compare::main(&args[1..]),
        Some("max-rate") => max_rate::main(&args[1..]),
        Some("ebpf") => ebpf::main(&args[1..]),
        Some("profile-overhead") => profile_overhead::main(&args[1..]),
        Some("profile-depth") => profile_depth::main(&args[1..]),
        Some("python-cost") => python_cost::main(&args[1..]),
        Some("metrics-overhead") => metrics_overhead::main(&args[1..]),
        Some("request-log-overhead") => request_log_overhead::main(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ebpf [--check]
      build the eBPF program into loadgen/bpf/ (object + manifest); --check rebuilds and compares bytes
  compare [--rounds N] [--duration SECS] [--connections C] [--depths 1,16] [--server-cpu 0] [--client-cpu 1] [--tls] [--h2 | --h3 | --templated] [--also NAME=BINARY]
      nginx (1 worker) vs loadgen and wrk, alternating, client CPU µs per request; --tls over https with h2load too;
      --also adds another loadgen build (before/after a change, another crypto provider);
      --h3: Caddy instead, loadgen --http3 and --http2 (TLS) and oha over HTTP/3 and HTTP/2 if installed
  profile-overhead [--rounds N] [--duration SECS] [--freq HZ] [--path /] [--nginx] [--off-cpu] [--connections N]
      target throughput with profiling off / loadgen --unwind fp / --unwind dwarf / perf --call-graph dwarf,16384,
      the profile's own cost figures, and end-of-load to flamegraph time; --off-cpu: off / fp / fp+off-cpu /
      dwarf+off-cpu on a context-switch-heavy load (-c1 unless --connections), switches/s and the scheduler programs' cost
  profile-depth [--rounds N] [--duration SECS] [--freq HZ]
      share of samples reaching main and cost per sample for a shallow C program and 100-frame recursions with
      and without frame pointers: loadgen auto / fp / dwarf 16k / dwarf 64k, perf --call-graph dwarf (8k, 65528)
  python-cost [--rounds N] [--duration SECS] [--freq HZ]
      a CPython service's profile: BPF and total profiler CPU per sample with Python frames, with
      --no-interpreter-frames, and py-spy record (Python only; --native) at the same rate
  metrics-overhead [--rounds N] [--duration SECS] [--connections C]
      loadgen's CPU µs per request with --metrics-listen off / on and scraped every second
  request-log-overhead [--rounds N] [--duration SECS] [--connections C] [--depths 1,16]
      loadgen's CPU µs per request against nginx with --request-log off / on, per pipeline depth
  max-rate [--rates 5000,10000,...] [--duration SECS]
      open-loop rate sweep of one shard against the built-in target: lag and achieved rate";
