//! What profiling costs the target: the built-in target's throughput under
//! the same closed-loop load with profiling off, at 99 Hz and at 999 Hz,
//! alternating in each round; plus the time from the end of the load to a
//! finished flamegraph. Needs root (CAP_BPF + CAP_PERFMON).

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut rounds = 3usize;
    let mut duration = 5u64;
    let mut path = "/".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context(format!("{a} needs a value"));
        match a.as_str() {
            "--rounds" => rounds = val()?.parse()?,
            "--duration" => duration = val()?.parse()?,
            "--path" => path = val()?.clone(),
            other => bail!("unknown option {other:?}"),
        }
    }
    let bin = crate::build_loadgen()?;
    let (mut target, port) = crate::start_pinned_target(&bin)?;
    let url = format!("http://127.0.0.1:{port}{path}");
    let svg = std::env::temp_dir().join("loadgen-overhead.svg");
    println!(
        "# built-in target (1 thread) on CPU 0; loadgen -t1 -c32 -d{duration}s on CPU 1; {url}"
    );
    println!(
        "{:<6} {:>8} {:>12} {:>10} {:>16}",
        "round", "profile", "target req/s", "samples", "end→flamegraph"
    );
    let modes: [Option<u64>; 3] = [None, Some(99), Some(999)];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 1..=rounds {
        // Rotate the order so drift does not favour one mode.
        for k in 0..3 {
            let m = (k + round) % 3;
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", "1"])
                .arg(&bin)
                .args(["-t1", "-c32", "-d"])
                .arg(format!("{duration}s"))
                .args(["--json", "-"]);
            if let Some(hz) = modes[m] {
                cmd.arg("--profile")
                    .arg("--profile-freq")
                    .arg(hz.to_string())
                    .arg("--flamegraph")
                    .arg(&svg);
            }
            let started = Instant::now();
            let out = cmd.arg(&url).stderr(Stdio::null()).output()?;
            let tail = started.elapsed().as_secs_f64() - duration as f64;
            let text = String::from_utf8_lossy(&out.stdout);
            let rps = field(&text, "\"rps\":");
            let samples = field(&text, "\"samples\":");
            results[m].push(rps);
            println!(
                "{:<6} {:>8} {:>12.0} {:>10} {:>14.3}s",
                round,
                modes[m].map_or("off".to_string(), |h| format!("{h} Hz")),
                rps,
                if modes[m].is_some() {
                    format!("{samples:.0}")
                } else {
                    "-".into()
                },
                tail
            );
        }
    }
    let _ = target.kill();
    let _ = target.wait();
    // Rounds move ±20 % here (host noise), so compare within a round:
    // each profiled run against the unprofiled run of the same round.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\n# per-round change vs the unprofiled run of the same round (median over rounds)");
    let off = &results[0];
    for (m, r) in results.iter().enumerate().skip(1) {
        let ratios: Vec<f64> = r
            .iter()
            .zip(off)
            .map(|(p, o)| 100.0 * (p - o) / o)
            .collect();
        let shown: Vec<String> = ratios.iter().map(|x| format!("{x:+.1}%")).collect();
        println!(
            "{:>8}: median {:+.2}%   rounds: {}",
            modes[m].map_or("off".to_string(), |h| format!("{h} Hz")),
            median(ratios.clone()),
            shown.join(" ")
        );
    }
    Ok(())
}

fn field(text: &str, key: &str) -> f64 {
    text.find(key)
        .map(|i| &text[i + key.len()..])
        .and_then(|r| {
            let r = r.trim_start();
            let end = r.find([',', '\n', '}']).unwrap_or(r.len());
            r[..end].trim().parse().ok()
        })
        .unwrap_or(f64::NAN)
}
