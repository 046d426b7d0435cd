//! How whole the stacks are, and what that costs, by unwinding mode: C
//! programs burning CPU at the bottom of a shallow call chain (no frame
//! pointers), of a 100-frame recursion with frame pointers (~38 KiB of
//! stack) and of one without (~48 KiB), each profiled by loadgen's
//! default (`auto`, the copy sized per process), `--unwind fp`,
//! `--unwind dwarf` with fixed 16 KiB and 64 KiB copies, and `perf record
//! --call-graph dwarf` with its default 8 KiB copy and its largest
//! (65528). For each: the share of samples that reach `main`, the BPF
//! time per sample, ring bytes per sample, and the user-side CPU (our
//! unwinding thread, or perf's whole process). The program runs on CPU 0
//! at nice -10, the light load that opens loadgen's window on CPU 1.
//! Needs root.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use loadgen_tests::perf::PerfRecord;
use loadgen_tests::profiling::{CALL_CHAIN_C, DEEP_C};

struct Program {
    name: &'static str,
    bin: PathBuf,
    args: Vec<String>,
}

#[derive(Clone, Copy)]
enum Mode {
    Loadgen(&'static str, &'static [&'static str]),
    Perf(&'static str, u32),
}

const MODES: [Mode; 6] = [
    Mode::Loadgen("auto", &[]),
    Mode::Loadgen("fp", &["--unwind", "fp"]),
    Mode::Loadgen("dwarf-16k", &["--unwind", "dwarf", "--stack-bytes", "16k"]),
    Mode::Loadgen("dwarf-64k", &["--unwind", "dwarf", "--stack-bytes", "64k"]),
    Mode::Perf("perf-8k", 8192),
    Mode::Perf("perf-64k", 65528),
];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Loadgen(n, _) | Mode::Perf(n, _) => n,
        }
    }
}

fn build(name: &'static str, src: &str, flags: &[&str], args: &[&str]) -> anyhow::Result<Program> {
    let bin = loadgen_tests::build_c(name, src, flags).context("cc failed")?;
    Ok(Program {
        name,
        bin,
        args: args.iter().map(|s| s.to_string()).collect(),
    })
}

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut rounds = 2usize;
    let mut duration = 5u64;
    let mut freq = 99u64;
    let mut a = crate::args::Args::new(args);
    while let Some(flag) = a.flag() {
        match flag {
            "--rounds" => rounds = a.value(flag)?,
            "--duration" => duration = a.value(flag)?,
            "--freq" => freq = a.value(flag)?,
            other => return Err(crate::args::unknown(other)),
        }
    }
    let bin = crate::build_loadgen()?;
    let programs = [
        build(
            "shallow-nofp",
            CALL_CHAIN_C,
            &["-O2", "-fomit-frame-pointer"],
            &[],
        )?,
        build(
            "deep100-fp",
            DEEP_C,
            &["-O2", "-fno-omit-frame-pointer", "-DPAD=360"],
            &["100"],
        )?,
        build(
            "deep100-nofp",
            DEEP_C,
            &["-O2", "-fomit-frame-pointer", "-DPAD=460"],
            &["100"],
        )?,
    ];
    // The built-in target on CPU 1, beside the load: the profiled program
    // has CPU 0 to itself.
    let (mut target, port) = crate::start_pinned_target(&bin, 1)?;
    let url = format!("http://127.0.0.1:{port}/");
    let folded = std::env::temp_dir().join("loadgen-depth.folded");
    println!(
        "# program on CPU 0; loadgen -t1 -c1 -d{duration}s on CPU 1 against the built-in target (CPU 1); {freq} Hz; kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{:<6} {:<13} {:<10} {:>8} {:>7} {:>11} {:>11} {:>11} {:>9}",
        "round",
        "program",
        "mode",
        "samples",
        "main %",
        "BPF µs/smp",
        "ring B/smp",
        "user cpu s",
        "copy KiB"
    );
    let mut rows: Vec<(String, &str, f64, f64, f64)> = Vec::new();
    for round in 1..=rounds {
        for prog in &programs {
            // At nice -10, so that whatever else the machine runs leaves it
            // CPU 0 (the per-sample figures divide by its samples).
            let mut child = Command::new("taskset")
                .args(["-c", "0", "nice", "-n", "-10"])
                .arg(&prog.bin)
                .arg((duration * MODES.len() as u64 + 30).to_string())
                .args(&prog.args)
                .stdout(Stdio::null())
                .spawn()?;
            let pid = child.id();
            std::thread::sleep(std::time::Duration::from_millis(300));
            for k in 0..MODES.len() {
                let mode = MODES[(k + round) % MODES.len()];
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", "1"])
                    .arg(&bin)
                    .args(["-t1", "-c1", "-d"])
                    .arg(format!("{duration}s"))
                    .args(["--json", "-"]);
                let perf = match mode {
                    Mode::Loadgen(_, flags) => {
                        cmd.arg("--profile-pid")
                            .arg(pid.to_string())
                            .arg("--profile-freq")
                            .arg(freq.to_string())
                            .args(flags)
                            .arg("--folded")
                            .arg(&folded);
                        None
                    }
                    Mode::Perf(_, bytes) => Some(PerfRecord::start(pid, freq as u32, bytes)?),
                };
                let out = cmd.arg(&url).stderr(Stdio::null()).output()?;
                let json: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
                let (samples, main, bpf, ring, user, copy) = match perf {
                    Some(rec) => {
                        let cpu = loadgen_tests::process_cpu(rec.pid()).as_secs_f64();
                        let stacks = rec.finish();
                        let main = stacks
                            .iter()
                            .filter(|s| s.iter().any(|f| f == "main"))
                            .count();
                        let n = stacks.len();
                        (
                            n as f64,
                            100.0 * main as f64 / n.max(1) as f64,
                            f64::NAN,
                            f64::NAN,
                            cpu,
                            f64::NAN,
                        )
                    }
                    None => {
                        let p = &json["profile"];
                        if !folded.exists() {
                            bail!("{} {}: no profile written", prog.name, mode.name());
                        }
                        let f = loadgen_tests::profiling::folded(&folded);
                        let _ = std::fs::remove_file(&folded);
                        let main: u64 = f
                            .stacks
                            .iter()
                            .filter(|(s, _)| s.iter().any(|x| x == "main"))
                            .map(|(_, n)| n)
                            .sum();
                        let n = p["samples"].as_f64().unwrap_or(f64::NAN);
                        let c = &p["cost"];
                        let bytes = c["ringbuf_bytes"].as_f64().unwrap_or(f64::NAN);
                        (
                            n,
                            100.0 * main as f64 / f.total().max(1) as f64,
                            c["bpf_ns_per_sample"].as_f64().unwrap_or(f64::NAN) / 1000.0,
                            bytes / n,
                            c["user_unwind_s"].as_f64().unwrap_or(f64::NAN),
                            p["stack_bytes_max"].as_f64().unwrap_or(f64::NAN) / 1024.0,
                        )
                    }
                };
                println!(
                    "{:<6} {:<13} {:<10} {:>8.0} {:>7.1} {:>11.2} {:>11.0} {:>11.3} {:>9.0}",
                    round,
                    prog.name,
                    mode.name(),
                    samples,
                    main,
                    bpf,
                    ring,
                    user,
                    copy
                );
                rows.push((prog.name.to_string(), mode.name(), main, bpf, ring));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let _ = target.kill();
    let _ = target.wait();
    println!("\n# median over rounds: main % / BPF µs per sample / ring bytes per sample");
    for p in &programs {
        let line: Vec<String> = MODES
            .iter()
            .map(|m| {
                let pick = |i: usize| {
                    crate::args::median(
                        &rows
                            .iter()
                            .filter(|r| r.0 == p.name && r.1 == m.name())
                            .map(|r| [r.2, r.3, r.4][i])
                            .collect::<Vec<_>>(),
                    )
                };
                format!("{} {:.0}%/{:.1}/{:.0}", m.name(), pick(0), pick(1), pick(2))
            })
            .collect();
        println!("{:<13} {}", p.name, line.join("  "));
    }
    for p in programs {
        let _ = std::fs::remove_file(p.bin);
    }
    Ok(())
}
