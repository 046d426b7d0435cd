//! What the profiler's tests (`profile.rs`, `unwind.rs`, `offcpu.rs`)
//! share: the privilege check and one-at-a-time guard, a C program with a
//! known call chain, children reaped however a test ends, and a run
//! without the capabilities profiling needs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use loadgen::profile::Folded;

use crate::{build_c, can_profile, loadgen_bin, privileged_ran, skip};

static SERIAL: Mutex<()> = Mutex::new(());

/// The machine for one profiling test at a time (their sample counts and
/// rates need the CPUs), or None after a loud SKIP without CAP_BPF and
/// CAP_PERFMON.
pub fn serial() -> Option<MutexGuard<'static, ()>> {
    if !can_profile() {
        skip("profiling tests need CAP_BPF and CAP_PERFMON (run as root)");
        return None;
    }
    privileged_ran();
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Build loadgen now, before a test starts a short-lived program to
    // profile: a build in the middle would outlast it.
    let _ = loadgen_bin();
    Some(guard)
}

/// A C program whose `main` calls `level1`, `level2` and `level3`, which
/// burns CPU, until `argv[1]` seconds (5 without) have passed.
pub const CALL_CHAIN_C: &str = r#"
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void level3(void) { for (unsigned long i = 0; i < 300000; i++) sink += i * i; }
__attribute__((noinline)) void level2(void) { level3(); sink++; }
__attribute__((noinline)) void level1(void) { level2(); sink++; }
int main(int argc, char **argv) {
    time_t end = time(0) + (argc > 1 ? atoi(argv[1]) : 5);
    while (time(0) < end) level1();
    return 0;
}
"#;

/// [`CALL_CHAIN_C`]'s functions, outermost first.
pub const CALL_CHAIN: [&str; 4] = ["main", "level1", "level2", "level3"];

/// Builds [`CALL_CHAIN_C`] with `flags` (None without a C compiler, after
/// a SKIP) and starts it burning CPU until the returned [`Reap`] goes (60 s
/// at most): a program that ends on its own clock once exited before a
/// busy machine's loadgen had symbolized it. It runs at nice -10, so that
/// the load a test runs beside it, and whatever else the machine is doing,
/// leave it the CPU time its sample counts are checked against (a busy
/// 2-core machine once gave it 0.3 s of a 2 s window: 28 samples at 99 Hz).
pub fn start_call_chain(name: &str, flags: &[&str]) -> Option<(Reap, PathBuf)> {
    start_c(name, CALL_CHAIN_C, flags, &[])
}

/// A C program whose `main` calls `deep(argv[2])`, which recurses that
/// many times, each frame `PAD` bytes of locals (`-DPAD=N`) above what
/// the compiler adds, and burns CPU in `burn` at the bottom, until
/// `argv[1]` seconds have passed: a stack as deep as a framework's.
pub const DEEP_C: &str = r#"
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void burn(void) { for (unsigned long i = 0; i < 300000; i++) sink += i * i; }
__attribute__((noinline)) int deep(int n) {
    volatile char pad[PAD];
    pad[0] = (char)n;
    if (n == 0) burn();
    else deep(n - 1);
    return pad[0];
}
int main(int argc, char **argv) {
    time_t end = time(0) + atoi(argv[1]);
    int depth = atoi(argv[2]);
    while (time(0) < end) deep(depth);
    return 0;
}
"#;

/// Builds [`DEEP_C`] with `flags` and starts it `depth` frames deep, as
/// [`start_call_chain`] does.
pub fn start_deep(name: &str, flags: &[&str], depth: u32) -> Option<(Reap, PathBuf)> {
    start_c(name, DEEP_C, flags, &[&depth.to_string()])
}

/// Builds `src` and runs it at nice -10 with `60` and `args`.
fn start_c(name: &str, src: &str, flags: &[&str], args: &[&str]) -> Option<(Reap, PathBuf)> {
    let bin = build_c(name, src, flags)?;
    let child = Command::new("nice")
        .args(["-n", "-10"])
        .arg(&bin)
        .arg("60")
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("nice (coreutils)");
    Some((Reap(child), bin))
}

/// Whether process `pid` holds BPF links (loadgen has attached its
/// sampler to the CPUs' clocks: it does at the start of the measured
/// window; before, its programs are only loaded).
pub fn sampling(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|l| l.to_string_lossy() == "anon_inode:bpf_link")
}

/// Runs loadgen with `args` plus `--json -`, and kills `victim` a second
/// into the measured window (waiting for loadgen to attach, however long
/// a busy machine makes its start), without reaping it: a zombie, as a
/// crashed server is until its supervisor reaps it. Returns the report,
/// the text and the exit code.
pub fn run_json_killing(args: &[&str], victim: &Reap) -> (serde_json::Value, String, i32) {
    let loadgen = Command::new(loadgen_bin())
        .args(args)
        .args(["--json", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run loadgen");
    let started = Instant::now();
    while !sampling(loadgen.id()) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill only sends a signal, to our own child.
    unsafe { libc::kill(victim.id() as libc::pid_t, libc::SIGKILL) };
    let out = loadgen.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (json, text, out.status.code().unwrap_or(-1))
}

/// A child that is killed and reaped however the test ends (a failed
/// assertion must not leave a CPU hog or a blocked program behind).
pub struct Reap(pub Child);

impl Reap {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin` with `args` and waits for its "ready" line.
pub fn start_ready(bin: &Path, args: &[&str]) -> Reap {
    let mut c = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(c.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let c = Reap(c);
    assert_eq!(line, "ready\n");
    c
}

/// A scratch path for this test process.
pub fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadgen-prof-{}-{name}", std::process::id()))
}

/// The folded stacks loadgen wrote to `path`.
pub fn folded(path: &Path) -> Folded {
    Folded::read(std::fs::read(path).unwrap().as_slice()).unwrap()
}

/// Runs a 1 s load of `url` with `flag` (`--profile`, `--off-cpu`) and
/// without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: the load runs and is
/// reported, one line says what profiling needs and how to grant it, and
/// the report has no profile. Returns the report.
pub fn run_unprivileged(flag: &str, url: &str) -> serde_json::Value {
    let out = Command::new("setpriv")
        .args([
            "--bounding-set=-bpf,-perfmon,-sys_admin",
            "--inh-caps=-bpf,-perfmon,-sys_admin",
            "--",
        ])
        .arg(loadgen_bin())
        .args(["-t1", "-c2", "-d", "1s", flag, "--json", "-", url])
        .output()
        .expect("setpriv (util-linux)");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let reason: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("profiling needs"))
        .collect();
    assert_eq!(reason.len(), 1, "{err}");
    assert!(
        reason[0].contains("CAP_BPF") && reason[0].contains("setcap"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["requests"].as_u64().unwrap() > 100,
        "the load ran and reported"
    );
    assert!(json["profile"].is_null());
    json
}
