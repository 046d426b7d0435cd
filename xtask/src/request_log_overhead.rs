//! What `--request-log` costs the client: loadgen's CPU time (user+sys,
//! from `wait4`) per completed request against nginx (one worker on CPU
//! 0, loadgen on CPU 1), at pipeline depths 1 and 16, with the log off and
//! on (every line, to a file on disk), alternating within each round.

use std::process::Command;

use anyhow::bail;
use loadgen_tests::nginx::Nginx;

use crate::metrics_overhead::run_measured;

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut rounds = 5usize;
    let mut duration = 5u64;
    let mut connections = 16u64;
    let mut depths = vec![1usize, 16];
    let mut a = crate::args::Args::new(args);
    while let Some(flag) = a.flag() {
        match flag {
            "--rounds" => rounds = a.value(flag)?,
            "--duration" => duration = a.value(flag)?,
            "--connections" => connections = a.value(flag)?,
            "--depths" => depths = a.list(flag)?,
            other => return Err(crate::args::unknown(other)),
        }
    }
    let bin = crate::build_loadgen()?;
    let nginx = Nginx::start(0).map_err(anyhow::Error::msg)?;
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let log = loadgen_tests::target_dir().join("request-log-overhead.tsv");
    println!(
        "# nginx (1 worker) on CPU 0; loadgen -t1 -c{connections} -d{duration}s on CPU 1; {url}; log: {}",
        log.display()
    );
    println!(
        "{:<6} {:>6} {:>5} {:>12} {:>12} {:>10}",
        "round", "depth", "log", "req/s", "CPU µs/req", "lines"
    );
    // [depth][off, on]: CPU µs per request, one per round.
    let mut per_req = vec![[Vec::new(), Vec::new()]; depths.len()];
    for round in 1..=rounds {
        for (d, &depth) in depths.iter().enumerate() {
            for k in 0..2 {
                // Alternate which goes first, so drift favours neither.
                let on = (k + round) % 2 == 1;
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", "1"])
                    .arg(&bin)
                    .args(["-t1", "-d"])
                    .arg(format!("{duration}s"))
                    .arg("-c")
                    .arg(connections.to_string())
                    .arg("--pipeline")
                    .arg(depth.to_string())
                    .args(["--json", "-"]);
                if on {
                    cmd.arg("--request-log").arg(&log);
                }
                let (json, cpu) = run_measured(cmd.arg(&url))?;
                let requests = json["requests"].as_f64().unwrap_or(0.0);
                let us = cpu.as_secs_f64() * 1e6 / requests.max(1.0);
                per_req[d][usize::from(on)].push(us);
                let lines = if on {
                    let n = std::fs::read_to_string(&log)?.lines().count() - 1;
                    if n as f64 != requests {
                        bail!("{n} lines for {requests} requests");
                    }
                    n.to_string()
                } else {
                    "-".into()
                };
                println!(
                    "{:<6} {:>6} {:>5} {:>12.0} {:>12.3} {:>10}",
                    round,
                    depth,
                    if on { "on" } else { "off" },
                    json["rps"].as_f64().unwrap_or(0.0),
                    us,
                    lines
                );
            }
        }
    }
    let _ = std::fs::remove_file(&log);
    let median = crate::args::median;
    println!();
    for (d, depth) in depths.iter().enumerate() {
        let [off, on] = &per_req[d];
        let ratios: Vec<f64> = on.iter().zip(off).map(|(a, b)| a / b).collect();
        println!(
            "# depth {depth}: median CPU µs/request off {:.3}, on {:.3}; on/off per round: {} (median {:.3})",
            median(off),
            median(on),
            ratios
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
            median(&ratios)
        );
    }
    drop(nginx);
    Ok(())
}
