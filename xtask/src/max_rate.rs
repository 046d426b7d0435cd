//! The highest open-loop rate one loadgen shard holds against the built-in
//! target with schedule lag p99 under 1 ms: a rate sweep, target pinned to
//! one CPU and loadgen (`-t1`) to the other.

use std::process::{Command, Stdio};

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut rates: Vec<u64> = vec![5_000, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000];
    let mut duration = 5u64;
    let mut a = crate::args::Args::new(args);
    while let Some(flag) = a.flag() {
        match flag {
            "--rates" => rates = a.list(flag)?,
            "--duration" => duration = a.value(flag)?,
            other => return Err(crate::args::unknown(other)),
        }
    }
    let bin = crate::build_loadgen()?;
    let (mut target, port) = crate::start_pinned_target(&bin, 0)?;
    let url = format!("http://127.0.0.1:{port}/");
    println!(
        "# built-in target (1 thread) on CPU 0, loadgen -t1 -c64 on CPU 1, {duration} s per rate"
    );
    println!(
        "{:>8} {:>10} {:>9} {:>10} {:>10} {:>10} {:>12}",
        "target", "achieved", "%", "lag p50", "lag p99", "lag max", "corr. p99"
    );
    let mut best = None;
    for r in rates {
        let out = Command::new("taskset")
            .args(["-c", "1"])
            .arg(&bin)
            .args(["-t1", "-c64", "-d"])
            .arg(format!("{duration}s"))
            .arg("-R")
            .arg(r.to_string())
            .args(["--json", "-"])
            .arg(&url)
            .stderr(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let num = |path: &[&str]| -> f64 {
            // Find "key": value after each successive key (the JSON is
            // pretty-printed by loadgen, nested keys are unique enough).
            let mut rest: &str = &text;
            for key in path {
                let k = format!("\"{key}\":");
                match rest.find(&k) {
                    Some(i) => rest = &rest[i + k.len()..],
                    None => return f64::NAN,
                }
            }
            let rest = rest.trim_start();
            let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
            rest[..end].trim().parse().unwrap_or(f64::NAN)
        };
        let achieved = num(&["rps"]);
        let (p50, p99, max) = (
            num(&["lag_us", "p50"]),
            num(&["lag_us", "p99"]),
            num(&["lag_us", "max"]),
        );
        let corr = num(&["latency_us", "p99"]);
        println!(
            "{:>8} {:>10.0} {:>8.2}% {:>8.0}us {:>8.0}us {:>8.0}us {:>10.0}us",
            r,
            achieved,
            100.0 * achieved / r as f64,
            p50,
            p99,
            max,
            corr
        );
        if p99 < 1000.0 && achieved >= 0.99 * r as f64 {
            best = Some(r);
        }
    }
    let _ = target.kill();
    let _ = target.wait();
    match best {
        Some(r) => println!("\nhighest rate held (lag p99 < 1 ms, ≥ 99 % achieved): {r} req/s"),
        None => println!("\nno rate held with lag p99 < 1 ms"),
    }
    Ok(())
}
