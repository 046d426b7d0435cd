//! Profiling the *target* while loading it: an eBPF program samples the
//! target's stacks on every CPU (kernel side, counts aggregated in BPF
//! maps), over exactly the measured window; user space symbolizes them and
//! renders folded stacks, a flamegraph and a top-functions table.
//!
//! The lifecycle follows the run: [`Session::start`] loads and verifies
//! the program before the load begins (so privilege problems show at
//! once), [`Session::attach`] starts sampling after the warm-up, and
//! [`Session::finish`] stops it when the load stops, then symbolizes while
//! the target is still alive.

pub mod bpf;
mod find;
pub mod folded;
mod symbolize;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use loadgen_ebpf_common::stat;

pub use find::{comm, is_alive, pids_listening_on};
pub use folded::{Folded, FunctionShare};

#[derive(Debug, Clone)]
pub struct ProfileConfig {
    pub pids: Vec<u32>,
    /// Sampling frequency per CPU, Hz.
    pub freq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "profiling needs {0} (missing); run as root, or: sudo setcap cap_bpf,cap_perfmon,cap_syslog+ep {1}"
    )]
    Capability(String, String),
    #[error("cannot load the eBPF sampler: {0}")]
    Load(String),
    #[error("the embedded eBPF object has no {0}: rebuild it with `cargo xtask ebpf`")]
    Object(&'static str),
    #[error("cannot attach the sampler to the cpu-clock event: {0}")]
    Attach(String),
    #[error("cannot read the sampler's maps: {0}")]
    Read(String),
    #[error(
        "no process is listening on port {0} on this host: start the server first, or name it with --profile-pid"
    )]
    NoListener(u16),
    #[error("process {0} does not exist: check --profile-pid")]
    NoProcess(u32),
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// This process's effective capability set.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// The capabilities a profile needs that this process lacks, if any.
pub fn missing_capabilities() -> Option<String> {
    let caps = effective_caps();
    if has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON)) {
        return None;
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .iter()
        .filter(|(c, _)| !has(caps, *c))
        .map(|(_, n)| *n)
        .collect();
    Some(missing.join(" and "))
}

/// Resolves `--profile` (no PID): the process listening on `port`.
pub fn target_for_port(port: u16) -> Result<Vec<u32>, ProfileError> {
    let pids = pids_listening_on(port);
    if pids.is_empty() {
        return Err(ProfileError::NoListener(port));
    }
    Ok(pids)
}

pub struct Session {
    sampler: bpf::Sampler,
    cfg: ProfileConfig,
    comms: HashMap<u32, String>,
    attached_at: Option<Instant>,
}

impl Session {
    pub fn start(cfg: &ProfileConfig) -> Result<Session, ProfileError> {
        if let Some(missing) = missing_capabilities() {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "loadgen".into());
            return Err(ProfileError::Capability(missing, exe));
        }
        let mut comms = HashMap::new();
        for &pid in &cfg.pids {
            let name = comm(pid).ok_or(ProfileError::NoProcess(pid))?;
            comms.insert(pid, name);
        }
        Ok(Session {
            sampler: bpf::Sampler::load(&cfg.pids)?,
            cfg: cfg.clone(),
            comms,
            attached_at: None,
        })
    }

    /// Starts sampling (call when the measured window starts).
    pub fn attach(&mut self) -> Result<(), ProfileError> {
        self.sampler.attach(self.cfg.freq)?;
        self.attached_at = Some(Instant::now());
        Ok(())
    }

    /// Stops sampling and turns the counts into a symbolized profile.
    pub fn finish(mut self) -> Result<Profile, ProfileError> {
        let window = self.attached_at.map_or(Duration::ZERO, |t| t.elapsed());
        self.sampler.detach();
        let stopped = Instant::now();
        let raw = self.sampler.read()?;
        let kernel_visible = symbolize::kernel_symbols_visible();
        let folded = symbolize::fold(&raw, &self.comms, kernel_visible);
        let mut warnings = Vec::new();
        let samples: u64 = raw.counts.iter().map(|(_, n)| n).sum();
        if samples == 0 {
            warnings
                .push("no samples: the target used no CPU during the measured window".to_string());
        }
        let has_kernel = raw.counts.iter().any(|(k, _)| k.kernel_stack_id >= 0);
        if has_kernel && !kernel_visible {
            warnings.push(
                "kernel frames are [unknown]: reading /proc/kallsyms addresses needs CAP_SYSLOG (and kernel.kptr_restrict ≤ 1)".to_string(),
            );
        }
        if samples >= 20 && symbolize::shallow_user_share(&raw) > 0.5 {
            warnings.push(
                "most user stacks are one frame deep: the target lacks frame pointers. Rebuild it with \
                 Rust `-C force-frame-pointers=yes`, C/C++ `-fno-omit-frame-pointer \
                 -mno-omit-leaf-frame-pointer`, Java \
                 `-XX:+PreserveFramePointer` plus a perf map agent, Node `--perf-basic-prof`, Python 3.12+ \
                 `-X perf` (distro C libraries usually lack frame pointers too)"
                    .to_string(),
            );
        }
        for pid in &self.cfg.pids {
            if !is_alive(*pid) {
                warnings.push(format!(
                    "process {pid} exited during the run: its frames could not be symbolized ([unknown])"
                ));
            }
        }
        let lost = raw.stats[stat::USER_COLLISION as usize]
            + raw.stats[stat::KERNEL_COLLISION as usize]
            + raw.stats[stat::MAP_FULL as usize];
        let top = folded.top_functions(15, true);
        Ok(Profile {
            folded,
            samples,
            raw_stats: raw.stats,
            lost,
            window,
            freq: self.cfg.freq,
            pids: self.cfg.pids.clone(),
            comms: self.comms,
            warnings,
            top,
            symbolize_time: stopped.elapsed(),
        })
    }
}

/// A finished, symbolized profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub folded: Folded,
    /// Samples counted in the maps.
    pub samples: u64,
    pub raw_stats: [u64; stat::LEN as usize],
    /// Samples whose stacks were lost (bucket collisions, full map).
    pub lost: u64,
    pub window: Duration,
    pub freq: u64,
    pub pids: Vec<u32>,
    pub comms: HashMap<u32, String>,
    pub warnings: Vec<String>,
    pub top: Vec<FunctionShare>,
    /// From the end of sampling to a symbolized profile.
    pub symbolize_time: Duration,
}

impl Profile {
    /// Folds a later run's profile of the same target into this one.
    pub fn merge(&mut self, other: &Profile) {
        self.folded.merge(&other.folded);
        self.samples += other.samples;
        self.lost += other.lost;
        for (a, b) in self.raw_stats.iter_mut().zip(other.raw_stats.iter()) {
            *a += b;
        }
        self.window += other.window;
        self.symbolize_time += other.symbolize_time;
        for w in &other.warnings {
            if !self.warnings.contains(w) {
                self.warnings.push(w.clone());
            }
        }
        self.top = self.folded.top_functions(15, true);
    }

    pub fn target_name(&self) -> String {
        self.pids
            .iter()
            .map(|p| format!("{} ({p})", self.comms.get(p).map_or("?", String::as_str)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The text block printed under the load summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "Profile of {} at {} Hz over {:.2}s: {} samples, {} with lost stacks\n",
            self.target_name(),
            self.freq,
            self.window.as_secs_f64(),
            self.samples,
            self.lost
        );
        if !self.top.is_empty() {
            s.push_str("    Self    Total  Function\n");
            for f in &self.top {
                s.push_str(&format!(
                    "  {:>5.1}%  {:>5.1}%  {}\n",
                    f.self_pct, f.total_pct, f.name
                ));
            }
        }
        for w in &self.warnings {
            s.push_str(&format!("WARNING: {w}\n"));
        }
        s
    }

    pub fn to_json(&self) -> Value {
        let (mean_depth, p90_depth) = self.folded.depth_stats();
        json!({
            "pids": self.pids,
            "target": self.target_name(),
            "freq_hz": self.freq,
            "window_s": self.window.as_secs_f64(),
            "samples": self.samples,
            "lost": self.lost,
            "lost_detail": {
                "user_stack_collisions": self.raw_stats[stat::USER_COLLISION as usize],
                "kernel_stack_collisions": self.raw_stats[stat::KERNEL_COLLISION as usize],
                "user_stack_missing": self.raw_stats[stat::USER_MISSING as usize],
                "map_full": self.raw_stats[stat::MAP_FULL as usize],
            },
            "stack_depth": { "mean": mean_depth, "p90": p90_depth },
            "functions": self.top,
            "warnings": self.warnings,
            "symbolize_s": self.symbolize_time.as_secs_f64(),
            // The stacks themselves, so a later run can draw a differential
            // flamegraph against this report (--baseline).
            "folded": self.folded.lines(),
        })
    }

    pub fn write_folded(&self, path: &Path) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        self.folded.write(&mut w)?;
        w.flush()
    }

    /// Renders the flamegraph; `what` names the load (rate, URL).
    pub fn write_flamegraph(&self, path: &Path, what: &str) -> std::io::Result<()> {
        let title = format!(
            "{} under {what}: {:.1}s, {} samples at {} Hz",
            self.target_name(),
            self.window.as_secs_f64(),
            self.samples,
            self.freq
        );
        let w = std::io::BufWriter::new(std::fs::File::create(path)?);
        render_flamegraph(&self.folded, &title, w)
    }
}

/// inferno, with the palette that colours `_[k]` kernel and `_[j]` JIT
/// frames.
pub fn render_flamegraph<W: Write>(folded: &Folded, title: &str, w: W) -> std::io::Result<()> {
    let lines = folded.lines();
    if lines.is_empty() {
        return Err(std::io::Error::other("no samples to draw"));
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "samples".to_string();
    opts.colors =
        inferno::flamegraph::color::Palette::Multi(inferno::flamegraph::color::MultiPalette::Java);
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), w)
}
