//! What Python frames cost, against the same profile without them and
//! against py-spy at the same rate: a CPython HTTP service with known hot
//! functions (`loadgen_tests::cpython::SERVICE`, Debian's python3) on CPU
//! 0, a light load on CPU 1, and in turn: loadgen's profile with Python
//! frames, with `--no-interpreter-frames`, `py-spy record` (Python frames
//! only, not pausing the target) and `py-spy record --native` (native and
//! Python, as loadgen gives; py-spy pauses the target for these). For
//! each: samples, the profiler's CPU per sample (loadgen: BPF time +
//! the reader thread + symbolizing; py-spy: its whole process), and
//! loadgen's BPF time per sample. Needs root and py-spy.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

#[derive(Clone, Copy)]
enum Mode {
    Loadgen(&'static str, &'static [&'static str]),
    PySpy(&'static str, &'static [&'static str]),
}

const MODES: [Mode; 4] = [
    Mode::Loadgen("loadgen", &[]),
    Mode::Loadgen("loadgen-native", &["--no-interpreter-frames"]),
    Mode::PySpy("py-spy", &["--nonblocking"]),
    Mode::PySpy("py-spy-native", &["--native"]),
];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Loadgen(n, _) | Mode::PySpy(n, _) => n,
        }
    }
}

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut rounds = 3usize;
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
    let py_spy =
        loadgen_tests::cpython::py_spy().context("py-spy is needed: pip install py-spy")?;
    let bin = crate::build_loadgen()?;
    let mut service = Command::new("taskset")
        .args(["-c", "0", "/usr/bin/python3", "-c"])
        .arg(loadgen_tests::cpython::SERVICE)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start /usr/bin/python3")?;
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(service.stdout.take().context("stdout")?),
        &mut port,
    )?;
    let pid = service.id();
    let url = format!("http://127.0.0.1:{}/", port.trim());
    let out_file = std::env::temp_dir().join("loadgen-python-cost.folded");
    println!(
        "# Debian python3 service on CPU 0; loadgen -t1 -c2 -d{duration}s on CPU 1; {freq} Hz; kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{:<6} {:<15} {:>8} {:>12} {:>14} {:>10}",
        "round", "profiler", "samples", "BPF µs/smp", "CPU µs/sample", "CPU s"
    );
    let mut rows: Vec<(&str, f64, f64, f64)> = Vec::new();
    for round in 1..=rounds {
        for k in 0..MODES.len() {
            let mode = MODES[(k + round) % MODES.len()];
            let mut load = Command::new("taskset");
            load.args(["-c", "1"])
                .arg(&bin)
                .args(["-t1", "-c2", "-d"])
                .arg(format!("{duration}s"))
                .args(["--json", "-"])
                .stderr(Stdio::null());
            let (samples, bpf_us, cpu_s) = match mode {
                Mode::Loadgen(_, flags) => {
                    let out = load
                        .arg("--profile-pid")
                        .arg(pid.to_string())
                        .arg("--profile-freq")
                        .arg(freq.to_string())
                        .args(flags)
                        .arg("--folded")
                        .arg(&out_file)
                        .arg(&url)
                        .output()?;
                    let json: serde_json::Value =
                        serde_json::from_slice(&out.stdout).unwrap_or_default();
                    let p = &json["profile"];
                    let c = &p["cost"];
                    let samples = p["samples"].as_f64().unwrap_or(f64::NAN);
                    let bpf_ns = c["bpf_ns_per_sample"].as_f64().unwrap_or(f64::NAN);
                    let cpu = bpf_ns * samples / 1e9
                        + c["user_unwind_s"].as_f64().unwrap_or(f64::NAN)
                        + c["user_symbolize_s"].as_f64().unwrap_or(f64::NAN);
                    (samples, bpf_ns / 1000.0, cpu)
                }
                Mode::PySpy(_, flags) => {
                    let mut load = load.arg(&url).stdout(Stdio::null()).spawn()?;
                    let spy = Command::new("taskset")
                        .args(["-c", "1"])
                        .arg(&py_spy)
                        .args(["record", "--format", "raw", "-r"])
                        .arg(freq.to_string())
                        .arg("-d")
                        .arg(duration.to_string())
                        .arg("-p")
                        .arg(pid.to_string())
                        .args(flags)
                        .arg("-o")
                        .arg(&out_file)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()?;
                    let cpu = wait_cpu(spy.id())?;
                    load.wait()?;
                    let samples = loadgen_tests::profiling::folded(&out_file).total() as f64;
                    (samples, f64::NAN, cpu)
                }
            };
            let _ = std::fs::remove_file(&out_file);
            let per = cpu_s * 1e6 / samples;
            println!(
                "{:<6} {:<15} {:>8.0} {:>12.2} {:>14.1} {:>10.3}",
                round,
                mode.name(),
                samples,
                bpf_us,
                per,
                cpu_s
            );
            rows.push((mode.name(), bpf_us, per, cpu_s));
        }
    }
    let _ = service.kill();
    let _ = service.wait();
    println!(
        "\n# median over rounds: BPF µs per sample / profiler CPU µs per sample / profiler CPU s per run"
    );
    for m in MODES {
        let pick = |i: usize| {
            crate::args::median(
                &rows
                    .iter()
                    .filter(|r| r.0 == m.name())
                    .map(|r| [r.1, r.2, r.3][i])
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "{:<15} {:.2} / {:.1} / {:.3}",
            m.name(),
            pick(0),
            pick(1),
            pick(2)
        );
    }
    Ok(())
}

/// Waits for child `pid` and returns the CPU (user + system) it used.
fn wait_cpu(pid: u32) -> anyhow::Result<f64> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; both pointers are
    // valid for the call.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(tv(usage.ru_utime) + tv(usage.ru_stime))
}
