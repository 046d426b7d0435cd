//! `perf record --call-graph dwarf` as the referee of the profiler tests:
//! recording a process while loadgen profiles it, and its stacks as frame
//! names, root first.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Whether `perf record` works here (installed, and allowed to open
/// events). Returns why not otherwise.
pub fn perf_usable() -> Result<(), String> {
    let out = Command::new("perf")
        .args([
            "record",
            "-q",
            "-o",
            "/dev/null",
            "-e",
            "cpu-clock",
            "--",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("perf is not installed (apt-get install linux-perf): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "perf record does not work here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A `perf record -p PID` running until [`PerfRecord::finish`].
pub struct PerfRecord {
    child: Child,
    data: PathBuf,
}

impl PerfRecord {
    /// Records `pid` at `freq` Hz with DWARF call graphs of `stack_bytes`.
    pub fn start(pid: u32, freq: u32, stack_bytes: u32) -> std::io::Result<PerfRecord> {
        let data =
            std::env::temp_dir().join(format!("loadgen-perf-{}-{pid}.data", std::process::id()));
        let child = Command::new("perf")
            .args(["record", "-q", "-F"])
            .arg(freq.to_string())
            .arg("--call-graph")
            .arg(format!("dwarf,{stack_bytes}"))
            .arg("-p")
            .arg(pid.to_string())
            .arg("-o")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(PerfRecord { child, data })
    }

    /// The perf process (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops recording (SIGINT, as Ctrl-C) and returns the stacks, each
    /// root first, as `perf script` names the frames.
    pub fn finish(mut self) -> Vec<Vec<String>> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
        let out = Command::new("perf")
            .args(["script", "-F", "ip,sym", "-i"])
            .arg(&self.data)
            .stderr(Stdio::null())
            .output();
        let _ = std::fs::remove_file(&self.data);
        out.map(|o| parse_script(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default()
    }
}

/// `perf script -F ip,sym` output: one block per sample, a frame per line
/// (`ADDR SYMBOL`, leaf first), blocks separated by blank lines.
pub fn parse_script(text: &str) -> Vec<Vec<String>> {
    let mut stacks = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            if !cur.is_empty() {
                cur.reverse();
                stacks.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let sym = t
            .split_once(char::is_whitespace)
            .map_or("", |(_, s)| s.trim());
        let sym = sym.strip_suffix(" (inlined)").unwrap_or(sym);
        cur.push(sym.to_string());
    }
    if !cur.is_empty() {
        cur.reverse();
        stacks.push(cur);
    }
    stacks
}
