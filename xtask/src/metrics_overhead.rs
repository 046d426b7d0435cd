//! What `--metrics-listen` costs the client: loadgen's CPU time (user+sys,
//! from `wait4`) per completed request against the built-in target, with
//! the endpoint off, and on with a scraper reading `/metrics` every second
//! (as Prometheus would), alternating within each round.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut rounds = 5usize;
    let mut duration = 5u64;
    let mut connections = 32u64;
    let mut a = crate::args::Args::new(args);
    while let Some(flag) = a.flag() {
        match flag {
            "--rounds" => rounds = a.value(flag)?,
            "--duration" => duration = a.value(flag)?,
            "--connections" => connections = a.value(flag)?,
            other => return Err(crate::args::unknown(other)),
        }
    }
    let bin = crate::build_loadgen()?;
    let (mut target, port) = crate::start_pinned_target(&bin, 0)?;
    let url = format!("http://127.0.0.1:{port}/");
    println!(
        "# built-in target (1 thread) on CPU 0; loadgen -t1 -c{connections} -d{duration}s on CPU 1; {url}"
    );
    println!(
        "{:<6} {:>8} {:>12} {:>14} {:>9}",
        "round", "metrics", "req/s", "CPU µs/req", "scrapes"
    );
    let mut per_req: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for k in 0..2 {
            // Alternate which goes first, so drift favours neither.
            let on = (k + round) % 2 == 1;
            let metrics_port = loadgen_tests::nginx::free_port()?;
            let stop = Arc::new(AtomicBool::new(false));
            let scrapes = Arc::new(AtomicU64::new(0));
            let scraper = on.then(|| {
                let (stop, scrapes) = (stop.clone(), scrapes.clone());
                std::thread::spawn(move || scrape_every_second(metrics_port, &stop, &scrapes))
            });
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", "1"])
                .arg(&bin)
                .args(["-t1", "-d"])
                .arg(format!("{duration}s"))
                .arg("-c")
                .arg(connections.to_string())
                .args(["--json", "-"]);
            if on {
                cmd.arg("--metrics-listen")
                    .arg(format!("127.0.0.1:{metrics_port}"));
            }
            let (json, cpu) = run_measured(cmd.arg(&url))?;
            stop.store(true, Ordering::Relaxed);
            if let Some(s) = scraper {
                let _ = s.join();
            }
            let requests = json["requests"].as_f64().unwrap_or(0.0);
            let us = cpu.as_secs_f64() * 1e6 / requests.max(1.0);
            per_req[usize::from(on)].push(us);
            println!(
                "{:<6} {:>8} {:>12.0} {:>14.3} {:>9}",
                round,
                if on { "on" } else { "off" },
                json["rps"].as_f64().unwrap_or(0.0),
                us,
                if on {
                    scrapes.load(Ordering::Relaxed).to_string()
                } else {
                    "-".into()
                }
            );
        }
    }
    let _ = target.kill();
    let _ = target.wait();
    let median = crate::args::median;
    let ratios: Vec<f64> = per_req[1]
        .iter()
        .zip(&per_req[0])
        .map(|(on, off)| on / off)
        .collect();
    println!(
        "\n# median CPU µs/request: off {:.3}, on {:.3}; on/off per round: {} (median {:.3})",
        median(&per_req[0]),
        median(&per_req[1]),
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" "),
        median(&ratios)
    );
    Ok(())
}

/// GETs `/metrics` once a second until `stop`, counting the answers.
fn scrape_every_second(port: u16, stop: &AtomicBool, scrapes: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .is_ok()
        {
            let mut body = String::new();
            if s.read_to_string(&mut body).is_ok() && body.contains("loadgen_requests_total") {
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs `cmd` (stdout: the JSON report), reaping it with `wait4` for its
/// own CPU time.
pub(crate) fn run_measured(cmd: &mut Command) -> anyhow::Result<(serde_json::Value, Duration)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_end(&mut out)?;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which `child` will not reap again.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    if pid <= 0 {
        bail!("wait4 failed");
    }
    std::mem::forget(child);
    let tv =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    let json = serde_json::from_slice(&out).context("loadgen printed no JSON")?;
    Ok((json, tv(ru.ru_utime) + tv(ru.ru_stime)))
}
