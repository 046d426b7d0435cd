//! Profiling the *target* while loading it: an eBPF program samples the
//! target's stacks on every CPU over exactly the measured window. Stacks
//! are unwound with frame pointers in the kernel, or, for targets built
//! without them (Debian's nginx, glibc, distro C and C++), in user space
//! with the binaries' DWARF CFI from registers and a copy of the stack the
//! kernel side sends through a ring buffer. User space symbolizes them and
//! renders folded stacks, a flamegraph and a top-functions table.
//!
//! With `--off-cpu`, scheduler tracepoint programs also follow the
//! target's threads off the CPU: where they waited (stacks, state), for
//! how long, what woke them, and how long they queued for a CPU after.
//!
//! The lifecycle follows the run: [`Session::start`] loads and verifies
//! the programs before the load begins (so privilege problems show at
//! once), [`Session::attach`] starts sampling after the warm-up, and
//! [`Session::finish`] stops it when the load stops, then symbolizes while
//! the target is still alive.

pub mod bpf;
pub mod btf;
pub mod copy_size;
pub mod diff;
mod find;
pub mod folded;
pub mod maps;
pub mod objects;
pub mod offcpu;
pub mod plan;
pub mod python;
pub mod report;
pub mod ringbuf;
pub mod sched;
mod session;
pub mod symbolize;
pub mod unwind;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use loadgen_ebpf_common::{DEFAULT_STACK_BYTES, stat};

pub use find::{comm, is_alive, pids_listening_at, pids_listening_on, pids_serving_udp};
pub use folded::{Folded, FunctionShare};
pub use offcpu::OffCpu;
pub use plan::{UnwindMode, parse_stack_bytes};
pub use report::{Cost, LostDetail, ProfileReport, StackDepth};
pub use sched::TargetSecond;
pub use session::{Session, fold_unwound};

#[derive(Debug, Clone)]
pub struct ProfileConfig {
    pub pids: Vec<u32>,
    /// Sampling frequency per CPU, Hz.
    pub freq: u64,
    pub unwind: UnwindMode,
    /// User stack copied per DWARF sample (`--stack-bytes`); None: start
    /// at [`DEFAULT_STACK_BYTES`] and raise it for a process whose stacks
    /// are deeper (`copy_size`).
    pub stack_bytes: Option<u32>,
    /// Python functions in place of CPython's eval frames (off with
    /// `--no-interpreter-frames`).
    pub interpreter_frames: bool,
    /// `--off-cpu`.
    pub off_cpu: Option<OffCpuConfig>,
}

/// `--off-cpu` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffCpuConfig {
    /// Waits shorter than this are dropped (`--off-cpu-min`).
    pub min: Duration,
    /// Stacks taken per second at most; switch-outs beyond it are
    /// sampled 1 in N and the time scaled by N. None: the default for the
    /// targets' unwinding.
    pub stacks_per_s: Option<f64>,
}

impl Default for OffCpuConfig {
    fn default() -> Self {
        OffCpuConfig {
            min: Duration::from_micros(1),
            stacks_per_s: None,
        }
    }
}

impl ProfileConfig {
    /// `--unwind auto` with the default stack copy, on-CPU only.
    pub fn new(pids: Vec<u32>, freq: u64) -> ProfileConfig {
        ProfileConfig {
            pids,
            freq,
            unwind: UnwindMode::Auto,
            stack_bytes: None,
            interpreter_frames: true,
            off_cpu: None,
        }
    }

    /// The copy every DWARF target starts with.
    pub fn start_stack_bytes(&self) -> u32 {
        self.stack_bytes.unwrap_or(DEFAULT_STACK_BYTES)
    }
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
    #[error(
        "no process has a UDP socket bound to port {0} on this host (an HTTP/3 server's): start the server first, or name it with --profile-pid"
    )]
    NoUdpServer(u16),
    #[error(
        "no process is listening on the Unix socket {} on this host: start the server first, or name it with --profile-pid", .0.display()
    )]
    NoUnixListener(std::path::PathBuf),
    #[error("process {0} does not exist: check --profile-pid")]
    NoProcess(u32),
    #[error("no off-CPU profile: {0}")]
    OffCpu(String),
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

/// Resolves `--profile` (no PID): the process listening on `port`, or
/// with `--http3` (`udp`) the one whose UDP socket is bound to it.
pub fn target_for_port(port: u16, udp: bool) -> Result<Vec<u32>, ProfileError> {
    let pids = if udp {
        pids_serving_udp(port)
    } else {
        pids_listening_on(port)
    };
    if pids.is_empty() {
        return Err(if udp {
            ProfileError::NoUdpServer(port)
        } else {
            ProfileError::NoListener(port)
        });
    }
    Ok(pids)
}

/// Resolves `--profile` (no PID) with `--unix-socket`: the process
/// listening at `path`.
pub fn target_for_unix_socket(path: &std::path::Path) -> Result<Vec<u32>, ProfileError> {
    let pids = pids_listening_at(path);
    if pids.is_empty() {
        return Err(ProfileError::NoUnixListener(path.to_path_buf()));
    }
    Ok(pids)
}

/// A finished, symbolized profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub folded: Folded,
    /// Samples with a stack (counted in the maps, or unwound from the ring).
    pub samples: u64,
    pub raw_stats: [u64; stat::LEN as usize],
    /// Samples whose stacks were lost (bucket collisions, full map, full
    /// ring).
    pub lost: u64,
    pub lost_detail: LostDetail,
    pub window: Duration,
    pub freq: u64,
    pub pids: Vec<u32>,
    pub comms: HashMap<u32, String>,
    pub warnings: Vec<String>,
    pub top: Vec<FunctionShare>,
    /// From the end of sampling to a symbolized profile.
    pub symbolize_time: Duration,
    /// `dwarf`, `fp` or `dwarf+fp`.
    pub unwind: String,
    pub unwind_requested: UnwindMode,
    /// The stack copy DWARF targets started with, and the largest any
    /// was raised to.
    pub stack_bytes: u32,
    pub stack_bytes_max: u32,
    pub cost: Cost,
    /// `--off-cpu`: where the target waited.
    pub off_cpu: Option<OffCpu>,
    /// What the target did each second of the window (from its start).
    pub seconds: Vec<TargetSecond>,
    /// When sampling started (the first second's start).
    pub attached_at: Option<std::time::SystemTime>,
}

impl Profile {
    /// Folds a later run's profile of the same target into this one.
    pub fn merge(&mut self, other: &Profile) {
        self.folded.merge(&other.folded);
        self.samples += other.samples;
        self.lost += other.lost;
        self.lost_detail.add(&other.lost_detail);
        if self.unwind != other.unwind {
            self.unwind = "dwarf+fp".to_string();
        }
        self.stack_bytes_max = self.stack_bytes_max.max(other.stack_bytes_max);
        for (a, b) in self.raw_stats.iter_mut().zip(other.raw_stats.iter()) {
            *a += b;
        }
        self.window += other.window;
        self.symbolize_time += other.symbolize_time;
        self.cost.add(&other.cost, self.window.as_secs_f64());
        match (&mut self.off_cpu, &other.off_cpu) {
            (Some(a), Some(b)) => a.merge(b),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
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

    /// How the stacks were unwound, for the header line.
    fn unwind_text(&self) -> String {
        let dwarf = if self.stack_bytes_max > self.stack_bytes {
            format!(
                "DWARF CFI ({} KiB of stack, raised to {} KiB for deep stacks)",
                self.stack_bytes / 1024,
                self.stack_bytes_max / 1024
            )
        } else {
            format!("DWARF CFI ({} KiB of stack)", self.stack_bytes / 1024)
        };
        match self.unwind.as_str() {
            "dwarf" => format!("unwound with {dwarf}"),
            "fp" => "unwound with frame pointers".to_string(),
            _ => format!("unwound with {dwarf} and frame pointers"),
        }
    }

    /// The text block printed under the load summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "Profile of {} at {} Hz over {:.2}s, {} (--unwind {}): {} samples, {} with lost stacks, {} truncated\n",
            self.target_name(),
            self.freq,
            self.window.as_secs_f64(),
            self.unwind_text(),
            self.unwind_requested,
            self.samples,
            self.lost,
            self.lost_detail.stack_truncated
        );
        s.push_str(&self.cost.line());
        if !self.top.is_empty() {
            s.push_str("    Self    Total  Function\n");
            for f in &self.top {
                s.push_str(&format!(
                    "  {:>5.1}%  {:>5.1}%  {}\n",
                    f.self_pct, f.total_pct, f.name
                ));
            }
        }
        if let Some(o) = &self.off_cpu {
            s.push_str(&o.summary(self.window));
        }
        for w in &self.warnings {
            s.push_str(&format!("WARNING: {w}\n"));
        }
        s
    }

    /// The JSON `"profile"` section.
    pub fn report(&self) -> ProfileReport {
        let (mean, p90) = self.folded.depth_stats();
        ProfileReport {
            pids: self.pids.clone(),
            target: self.target_name(),
            freq_hz: self.freq,
            window_s: self.window.as_secs_f64(),
            samples: self.samples,
            lost: self.lost,
            lost_detail: self.lost_detail.clone(),
            stack_depth: StackDepth { mean, p90 },
            functions: self.top.clone(),
            warnings: self.warnings.clone(),
            symbolize_s: self.symbolize_time.as_secs_f64(),
            unwind: self.unwind.clone(),
            unwind_requested: self.unwind_requested.to_string(),
            stack_bytes: self.stack_bytes,
            stack_bytes_max: self.stack_bytes_max,
            cost: self.cost.clone(),
            folded: self.folded.lines(),
            off_cpu: self.off_cpu.as_ref().map(OffCpu::report),
            sched: self.off_cpu.as_ref().map(OffCpu::sched_report),
        }
    }

    /// `--off-cpu-folded`: folded stacks in µs, the state as the leaf.
    pub fn write_off_cpu_folded(&self, path: &Path) -> std::io::Result<()> {
        let Some(o) = &self.off_cpu else {
            return Err(std::io::Error::other("no off-CPU profile"));
        };
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        o.folded().write(&mut w)?;
        w.flush()
    }

    /// `--off-cpu-flamegraph`: inferno's blue palette, counts in µs.
    pub fn write_off_cpu_flamegraph(&self, path: &Path, what: &str) -> std::io::Result<()> {
        let Some(o) = &self.off_cpu else {
            return Err(std::io::Error::other("no off-CPU profile"));
        };
        let title = format!(
            "Off-CPU time of {} under {what}: {:.1}s, counts in µs",
            self.target_name(),
            self.window.as_secs_f64(),
        );
        let w = std::io::BufWriter::new(std::fs::File::create(path)?);
        render_off_cpu_flamegraph(&o.folded(), &title, w)
    }

    /// Whether the off-CPU profile has any stack to draw.
    pub fn has_off_cpu_stacks(&self) -> bool {
        self.off_cpu
            .as_ref()
            .is_some_and(|o| o.folded().total() > 0)
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
    use inferno::flamegraph::color::{MultiPalette, Palette};
    render(
        folded,
        title,
        "samples",
        Palette::Multi(MultiPalette::Java),
        w,
    )
    .ok_or_else(|| std::io::Error::other("no samples to draw"))?
}

/// An off-CPU flamegraph: blue (as Brendan Gregg's off-CPU flamegraphs
/// are), widths in µs.
pub fn render_off_cpu_flamegraph<W: Write>(
    folded: &Folded,
    title: &str,
    w: W,
) -> std::io::Result<()> {
    use inferno::flamegraph::color::{BasicPalette, Palette};
    render(folded, title, "µs", Palette::Basic(BasicPalette::Blue), w)
        .ok_or_else(|| std::io::Error::other("no off-CPU time to draw"))?
}

/// A flamegraph of `folded` whose widths count `count_name` (None: there
/// is nothing to draw).
fn render<W: Write>(
    folded: &Folded,
    title: &str,
    count_name: &str,
    colors: inferno::flamegraph::color::Palette,
    w: W,
) -> Option<std::io::Result<()>> {
    let lines = folded.lines();
    if lines.is_empty() {
        return None;
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = count_name.to_string();
    opts.colors = colors;
    Some(inferno::flamegraph::from_lines(
        &mut opts,
        lines.iter().map(String::as_str),
        w,
    ))
}
