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
use loadgen::metrics::{ClientCount, ServerCheck};
use loadgen::profile::{ProfileConfig, Session};
use loadgen::report::{self, RunReport};
use loadgen::url::Url;

use super::run::{Hooks, load_name, run_load, write_profile_files};

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
    let target_cpu = cpus.first().copied();
    let client_cpu = cpus.last().copied().filter(|_| cpus.len() > 1);
    let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["target", "--listen", "127.0.0.1:0", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let (Some(cpu), Some(_)) = (target_cpu, client_cpu) {
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
    let url = Url::parse(&format!("http://{addr}{}", args.path))?;
    let sockaddr = url.resolve()?;
    let mut cfg = Config::for_url(url, sockaddr);
    cfg.shards = 1;
    cfg.connections = 8;
    cfg.duration = Some(args.duration);
    cfg.cpus = client_cpu.into_iter().collect();
    let cfg = cfg.validated()?;

    let pid = child.0.id();
    let session = match Session::start(&ProfileConfig {
        pids: vec![pid],
        freq: args.profile_freq,
        unwind: args.unwind,
        stack_bytes: args.stack_bytes,
        off_cpu: None,
    }) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("loadgen: {e}; the demo continues without a profile");
            None
        }
    };
    let stop = loadgen::signal::install();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "loadgen demo: the built-in target (pid {pid}) burns CPU in cpu_burn → cpu_burn_round on {}",
        args.path
    )?;
    write!(out, "{}", report::header(&cfg))?;
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
    let (run, profile, window) = run_load(&cfg, stop, session, &hooks)?;
    let rep = RunReport::new(
        &cfg,
        &run,
        cfg.engine.name(),
        loadgen::signal::interrupted(),
    );
    write!(out, "{}", report::summary(&rep, true))?;
    let (m, warnings) = check.evaluate(
        &window.into_iter().collect::<Vec<_>>(),
        ClientCount {
            requests: run.total.responses,
            duration_s: rep.elapsed_s(),
        },
    );
    write!(out, "{}", m.text())?;
    for w in warnings {
        writeln!(out, "{w}")?;
    }
    if let Some(p) = &profile {
        write!(out, "{}", p.summary())?;
        write_profile_files(p, Some(&args.flamegraph), None, &load_name(&cfg))?;
        if p.samples > 0 {
            writeln!(out, "Flamegraph written to {}", args.flamegraph.display())?;
        }
    }
    drop(child);
    Ok(ExitCode::SUCCESS)
}
