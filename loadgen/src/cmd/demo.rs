//! `loadgen demo`: the whole chain on one machine with nothing installed.
//! Starts the built-in target as a child process, loads it on an endpoint
//! that burns CPU in named functions, profiles it, prints the summary and
//! writes a flamegraph.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};

use super::cli::DemoArgs;
use anyhow::{Context, bail};
use loadgen::config::Config;
use loadgen::metrics::ServerCheck;
use loadgen::profile::{ProfileConfig, Session};
use loadgen::report;
use loadgen::url::Url;

use super::run::{self, Hooks, load_name, run_load, write_profile_files};

/// Starts the built-in target (on `cpu`, if given) and reads the address
/// it listens on from its first line.
fn start_target(cpu: Option<usize>) -> anyhow::Result<(TargetChild, String)> {
    let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["target", "--listen", "127.0.0.1:0", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(cpu) = cpu {
        // SAFETY: runs in the forked child before exec; sched_setaffinity
        // is async-signal-safe and only touches the child.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
    }
    let mut child = TargetChild(cmd.spawn().context("cannot start the built-in target")?);
    let stdout = child.0.stdout.take().context("target stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(addr) = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
    else {
        bail!("the built-in target did not start: {line:?}");
    };
    Ok((child, addr.to_string()))
}

/// Kills the target when the demo ends, however it ends.
struct TargetChild(Child);

impl Drop for TargetChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn main(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let cpus = loadgen::sys::allowed_cpus();
    // Target on the first CPU, loadgen on the last: each gets a core and
    // the profile shows the target's work, not contention.
    let client_cpu = cpus.last().copied().filter(|_| cpus.len() > 1);
    let target_cpu = cpus.first().copied().filter(|_| client_cpu.is_some());
    let (child, addr) = start_target(target_cpu)?;
    let url = Url::parse(&format!("http://{addr}{}", args.path))?;
    let sockaddr = url.resolve()?;
    let mut cfg = Config::for_url(url, sockaddr);
    cfg.shards = 1;
    cfg.connections = 8;
    cfg.duration = Some(args.duration);
    cfg.cpus = client_cpu.into_iter().collect();
    let cfg = cfg.validated()?;
    let pid = child.0.id();
    let session = profile_target(pid, args);
    let stop = loadgen::signal::install();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "loadgen demo: the built-in target (pid {pid}) burns CPU in cpu_burn → cpu_burn_round on {}",
        args.path
    )?;
    let header = report::header(&cfg);
    write!(out, "{header}")?;
    out.flush()?;
    // The target counts what it answers at /metrics: set its count beside
    // ours, as --server-metrics does.
    let check = ServerCheck::new(
        &format!("http://{addr}/metrics"),
        "http_requests_total",
        Some("http_request_duration_seconds"),
    )?;
    let hooks = Hooks {
        live: None,
        server: Some(&check),
    };
    let load = run_load(&cfg, stop, session, &hooks)?;
    let rep = run::run_report(&cfg, &load.out, &[]);
    let mut doc = run::document(&rep, &header, true, &mut out)?;
    let windows: Vec<_> = load.window.into_iter().collect();
    run::server_metrics(&mut doc, &check, &windows, &mut out)?;
    if let Some(p) = &load.profile {
        write!(out, "{}", p.summary())?;
        write_profile_files(p, Some(&args.flamegraph), None, &load_name(&cfg))?;
        if p.samples > 0 {
            writeln!(out, "Flamegraph written to {}", args.flamegraph.display())?;
        }
    }
    drop(child);
    Ok(ExitCode::SUCCESS)
}

/// The target's profile; without one (no privileges, say) the demo
/// goes on and says why.
fn profile_target(pid: u32, args: &DemoArgs) -> Option<Session> {
    let pcfg = ProfileConfig {
        pids: vec![pid],
        freq: args.profile_freq,
        unwind: args.unwind,
        stack_bytes: args.stack_bytes,
        interpreter_frames: true,
        off_cpu: None,
    };
    match Session::start(&pcfg) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("loadgen: {e}; the demo continues without a profile");
            None
        }
    }
}
