//! What profiling costs the target: its throughput under the same
//! closed-loop load with profiling off, with loadgen's frame-pointer and
//! DWARF unwinding, and with `perf record --call-graph dwarf,16384` at the
//! same frequency, alternating in each round (the order rotates). For
//! loadgen's runs it also prints the cost the profile reports (BPF time
//! per sample and share of a CPU, unwinding CPU time) and the time from
//! the end of the load to a finished flamegraph. Needs root.
//!
//! `--off-cpu` compares instead: profiling off, loadgen's on-CPU profile
//! with frame pointers, and the same with `--off-cpu` (frame pointers,
//! then DWARF), on a context-switch-heavy load (`--connections 1` by
//! default: the target blocks once per request). For the off-CPU runs it
//! prints the target's switch-outs per second and the scheduler programs'
//! own cost (BPF ns per target event, share of a CPU).

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    Fp,
    Dwarf,
    Perf,
    /// `--off-cpu --unwind fp`.
    OffCpuFp,
    /// `--off-cpu --unwind dwarf`.
    OffCpuDwarf,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Fp => "lg-fp",
            Mode::Dwarf => "lg-dwarf",
            Mode::Perf => "perf-dwarf",
            Mode::OffCpuFp => "fp+offcpu",
            Mode::OffCpuDwarf => "dwarf+offcpu",
        }
    }

    fn unwind(self) -> Option<&'static str> {
        match self {
            Mode::Fp | Mode::OffCpuFp => Some("fp"),
            Mode::Dwarf | Mode::OffCpuDwarf => Some("dwarf"),
            Mode::Off | Mode::Perf => None,
        }
    }

    fn off_cpu(self) -> bool {
        matches!(self, Mode::OffCpuFp | Mode::OffCpuDwarf)
    }
}

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut rounds = 3usize;
    let mut duration = 5u64;
    let mut freq = 99u64;
    let mut path = "/".to_string();
    let mut nginx = false;
    let mut off_cpu = false;
    let mut connections: Option<u32> = None;
    let mut a = crate::args::Args::new(args);
    while let Some(flag) = a.flag() {
        match flag {
            "--rounds" => rounds = a.value(flag)?,
            "--duration" => duration = a.value(flag)?,
            "--freq" => freq = a.value(flag)?,
            "--path" => path = a.string(flag)?.to_string(),
            "--nginx" => nginx = true,
            "--off-cpu" => off_cpu = true,
            "--connections" => connections = Some(a.value(flag)?),
            other => return Err(crate::args::unknown(other)),
        }
    }
    // Off-CPU: one connection by default, so the target blocks and wakes
    // once per request (the most switches a request can cost it).
    let connections = connections.unwrap_or(if off_cpu { 1 } else { 32 });
    let bin = crate::build_loadgen()?;
    // The target on CPU 0: the built-in one, or Debian's nginx (one worker).
    let mut builtin = None;
    let mut server = None;
    let (port, pid, what) = if nginx {
        let n = loadgen_tests::nginx::Nginx::start(0).map_err(anyhow::Error::msg)?;
        let w = *n.workers().first().context("nginx has no worker")?;
        let port = n.port;
        server = Some(n);
        (port, w, "nginx (1 worker)")
    } else {
        let (child, port) = crate::start_pinned_target(&bin, 0)?;
        let pid = child.id();
        builtin = Some(child);
        (port, pid, "built-in target (1 thread)")
    };
    let url = format!("http://127.0.0.1:{port}{path}");
    let svg = std::env::temp_dir().join("loadgen-overhead.svg");
    let off_svg = std::env::temp_dir().join("loadgen-overhead-offcpu.svg");
    let perf_data = std::env::temp_dir().join("loadgen-overhead.perf.data");
    println!(
        "# {what} on CPU 0; loadgen -t1 -c{connections} -d{duration}s on CPU 1; {url}; {freq} Hz; kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    if off_cpu {
        println!(
            "{:<6} {:>12} {:>12} {:>10} {:>10} {:>11} {:>10} {:>9} {:>9} {:>14}",
            "round",
            "profiler",
            "target req/s",
            "tgt µs/req",
            "switch/s",
            "stacks 1:N",
            "BPF µs/ev",
            "BPF ns/run",
            "BPF %cpu",
            "end→flamegraph"
        );
    } else {
        println!(
            "{:<6} {:>10} {:>12} {:>8} {:>10} {:>9} {:>10} {:>14}",
            "round",
            "profiler",
            "target req/s",
            "samples",
            "BPF µs/smp",
            "BPF %cpu",
            "user cpu s",
            "end→flamegraph"
        );
    }
    let modes: &[Mode] = if off_cpu {
        &[Mode::Off, Mode::Fp, Mode::OffCpuFp, Mode::OffCpuDwarf]
    } else {
        &[Mode::Off, Mode::Fp, Mode::Dwarf, Mode::Perf]
    };
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    // The target's own CPU time per request (user + system, from
    // /proc/PID/stat): what the scheduler programs add on its CPU, less
    // sensitive to the host's noise than its throughput.
    let mut cpu_results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 1..=rounds {
        for k in 0..modes.len() {
            let m = (k + round) % modes.len();
            let mode = modes[m];
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", "1"])
                .arg(&bin)
                .args(["-t1", &format!("-c{connections}"), "-d"])
                .arg(format!("{duration}s"))
                .args(["--json", "-"]);
            if let Some(unwind) = mode.unwind() {
                cmd.arg("--profile-pid")
                    .arg(pid.to_string())
                    .arg("--profile-freq")
                    .arg(freq.to_string())
                    .arg("--unwind")
                    .arg(unwind)
                    .arg("--flamegraph")
                    .arg(&svg);
            }
            if mode.off_cpu() {
                cmd.arg("--off-cpu-flamegraph").arg(&off_svg);
            }
            let perf = if mode == Mode::Perf {
                Some(
                    Command::new("taskset")
                        .args(["-c", "1", "perf", "record", "-q", "-F"])
                        .arg(freq.to_string())
                        .args(["--call-graph", "dwarf,16384", "-p"])
                        .arg(pid.to_string())
                        .arg("-o")
                        .arg(&perf_data)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .context("perf record (apt-get install linux-perf)")?,
                )
            } else {
                None
            };
            let cpu_before = loadgen_tests::process_cpu(pid);
            let started = Instant::now();
            let out = cmd.arg(&url).stderr(Stdio::null()).output()?;
            let target_cpu = loadgen_tests::process_cpu(pid).saturating_sub(cpu_before);
            let tail = started.elapsed().as_secs_f64() - duration as f64;
            let mut perf_cpu = f64::NAN;
            if let Some(mut p) = perf {
                perf_cpu = loadgen_tests::process_cpu(p.id()).as_secs_f64();
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(p.id() as libc::pid_t, libc::SIGINT) };
                let _ = p.wait();
                let _ = std::fs::remove_file(&perf_data);
            }
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let rps = json["rps"].as_f64().unwrap_or(f64::NAN);
            results[m].push(rps);
            let requests = json["requests"].as_f64().unwrap_or(f64::NAN);
            let cpu_per_req = target_cpu.as_secs_f64() * 1e6 / requests;
            cpu_results[m].push(cpu_per_req);
            let p = &json["profile"];
            let num = |v: &serde_json::Value, scale: f64, digits: usize| {
                v.as_f64()
                    .map_or("-".to_string(), |x| format!("{:.*}", digits, x * scale))
            };
            if off_cpu {
                let window = p["window_s"].as_f64().unwrap_or(f64::NAN);
                let c = &p["cost"]["sched"];
                let (switches, every, ev, run, pct, flame) = if mode.off_cpu() {
                    (
                        format!(
                            "{:.0}",
                            p["sched"]["switch_outs"].as_f64().unwrap_or(f64::NAN) / window
                        ),
                        num(&p["off_cpu"]["sample_every_max"], 1.0, 0),
                        num(&c["bpf_ns_per_event"], 1e-3, 2),
                        num(&c["bpf_ns_per_run"], 1.0, 0),
                        num(&c["bpf_cpu_pct"], 1.0, 3),
                        format!("{tail:.3}s"),
                    )
                } else {
                    let flame = if mode == Mode::Off {
                        "-".into()
                    } else {
                        format!("{tail:.3}s")
                    };
                    (
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        flame,
                    )
                };
                println!(
                    "{:<6} {:>12} {:>12.0} {:>10.2} {:>10} {:>11} {:>10} {:>9} {:>9} {:>14}",
                    round,
                    mode.name(),
                    rps,
                    cpu_per_req,
                    switches,
                    every,
                    ev,
                    run,
                    pct,
                    flame
                );
                continue;
            }
            let (samples, ns, pct, user, flame) = match mode {
                Mode::Off => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
                Mode::Perf => (
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("{perf_cpu:.3}"),
                    "-".into(),
                ),
                _ => (
                    num(&p["samples"], 1.0, 0),
                    num(&p["cost"]["bpf_ns_per_sample"], 1e-3, 2),
                    num(&p["cost"]["bpf_cpu_pct"], 1.0, 3),
                    num(&p["cost"]["user_unwind_s"], 1.0, 3),
                    format!("{tail:.3}s"),
                ),
            };
            println!(
                "{:<6} {:>10} {:>12.0} {:>8} {:>10} {:>9} {:>10} {:>14}",
                round,
                mode.name(),
                rps,
                samples,
                ns,
                pct,
                user,
                flame
            );
        }
    }
    if let Some(mut c) = builtin {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(server);
    // Rounds move ±15 % here (host noise), so compare within a round:
    // each profiled run against the unprofiled run of the same round.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let blocks: &[(&str, &Vec<Vec<f64>>)] = if off_cpu {
        &[
            ("target throughput", &results),
            ("target CPU per request", &cpu_results),
        ]
    } else {
        &[("target throughput", &results)]
    };
    for (what, results) in blocks {
        println!(
            "\n# {what}: per-round change vs the unprofiled run of the same round (median over rounds)"
        );
        let off = &results[0];
        for (m, r) in results.iter().enumerate().skip(1) {
            let ratios: Vec<f64> = r
                .iter()
                .zip(off)
                .map(|(p, o)| 100.0 * (p - o) / o)
                .collect();
            let shown: Vec<String> = ratios.iter().map(|x| format!("{x:+.1}%")).collect();
            println!(
                "{:>12}: median {:+.2}%   rounds: {}",
                modes[m].name(),
                median(ratios.clone()),
                shown.join(" ")
            );
        }
    }
    Ok(())
}
