//! The `"profile"` section of the JSON report, as types: what
//! [`super::Profile::report`] serializes, field for field.

use serde::{Deserialize, Serialize};

use super::folded::FunctionShare;

/// Every field has a default, so profiles of older reports still read
/// (`--baseline`, `loadgen compare`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileReport {
    pub pids: Vec<u32>,
    pub target: String,
    pub freq_hz: u64,
    pub window_s: f64,
    pub samples: u64,
    /// Samples whose stacks were lost: bucket collisions, a full count map,
    /// a full ring buffer.
    pub lost: u64,
    pub lost_detail: LostDetail,
    pub stack_depth: StackDepth,
    pub functions: Vec<FunctionShare>,
    pub warnings: Vec<String>,
    /// From the end of sampling to a symbolized profile.
    pub symbolize_s: f64,
    /// How stacks were unwound: `dwarf`, `fp`, or `dwarf+fp` (targets on
    /// different paths, or auto falling back mid-run).
    pub unwind: String,
    /// What `--unwind` asked for.
    pub unwind_requested: String,
    /// Bytes of user stack copied per DWARF sample at the start
    /// (`--stack-bytes`, 16 KiB without it).
    pub stack_bytes: u32,
    /// The largest copy a target's samples were raised to for deep
    /// stacks (equal to `stack_bytes` when none was).
    #[serde(default)]
    pub stack_bytes_max: u32,
    pub cost: Cost,
    /// The stacks themselves, so a later run can draw a differential
    /// flamegraph against this report (--baseline).
    pub folded: Vec<String>,
    /// With `--off-cpu`: where the target's threads waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_cpu: Option<OffCpuReport>,
    /// With `--off-cpu`: run-queue latency, wakeups, preemptions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sched: Option<SchedReport>,
}

/// p50/p90/p99/max of a distribution (µs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quantiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// Off-CPU time by the state the thread left the CPU in (µs, exact).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ByState {
    /// Interruptible sleep (S): events, timers, sockets, futexes.
    pub sleep_us: f64,
    /// Uninterruptible (D): disk I/O, page faults, some kernel locks.
    pub disk_us: f64,
    /// Runnable but switched out (R): preempted, or yielded.
    pub preempted_us: f64,
}

/// A function's off-CPU time: `self` where a wait is charged to it (its
/// blocking site: the innermost frame below the scheduler), `total`
/// anywhere on the stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OffCpuFunction {
    pub name: String,
    pub self_us: f64,
    pub total_us: f64,
    pub self_pct: f64,
    pub total_pct: f64,
}

/// One row of "where the target waited".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockingRow {
    /// `S`, `D` or `R`.
    pub state: String,
    /// The innermost user frame → the kernel function it waited in.
    pub blocked_in: String,
    /// Estimated time (µs) and its share of the stacks' time.
    pub us: f64,
    pub pct: f64,
    pub waits: u64,
    /// The waker that ended most of this time (`comm: user → kernel`).
    pub woken_by: Option<String>,
}

/// A waker and the waits it ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WakerRow {
    /// `comm: user frame → kernel function` (`[interrupt]: …` for wakeups
    /// from a hardware interrupt).
    pub waker: String,
    /// Its whole stack, root first, `;`-separated.
    pub stack: String,
    /// Time of the waits it ended (µs), and its share of all woken time.
    pub us: f64,
    pub pct: f64,
    pub waits: u64,
    /// The blocking site it ended most of that time at.
    pub woke: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OffCpuLostReport {
    /// Events lost because the scheduler ring was full.
    pub ring_full: u64,
    /// Threads not followed: the thread map was full.
    pub threads_full: u64,
    /// Waits not added: the in-kernel off-CPU map was full.
    pub map_full: u64,
    /// Stack-id collisions of off-CPU and waker stacks.
    pub stack_collisions: u64,
    /// DWARF: waits whose stack copy never arrived.
    pub copies_missing: u64,
}

/// The JSON `profile.off_cpu` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OffCpuReport {
    /// Off-CPU time of the target's threads, waits ≥ `min_us` (exact).
    pub total_us: f64,
    pub by_state: ByState,
    pub waits: u64,
    pub min_us: f64,
    /// The sampled stacks' time, scaled by the sampling (≈ `total_us`).
    pub stacks_us: f64,
    /// Stacks were taken of 1 in up to this many switch-outs.
    pub sample_every_max: u32,
    pub stacks_taken: u64,
    pub functions: Vec<OffCpuFunction>,
    /// Top blocking sites by time, split by state.
    pub blocking: Vec<BlockingRow>,
    pub wakers: Vec<WakerRow>,
    pub lost: OffCpuLostReport,
    /// Folded stacks, counts in µs, the state (`[S]`, `[D]`, `[R]`) as
    /// the leaf.
    pub folded: Vec<String>,
}

/// The JSON `profile.sched` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedReport {
    /// Woken (or preempted) → running, µs.
    pub runq_latency_us: Quantiles,
    pub runq_waits: u64,
    pub wakeups: u64,
    /// Switched out while still runnable.
    pub preemptions: u64,
    pub switch_outs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LostDetail {
    pub user_stack_collisions: u64,
    pub kernel_stack_collisions: u64,
    pub user_stack_missing: u64,
    pub map_full: u64,
    /// DWARF: the ring buffer had no room (the sample is lost).
    pub ring_full: u64,
    /// DWARF: a page of the stack could not be read (the sample keeps the
    /// frames found before it).
    pub stack_read_failed: u64,
    /// DWARF: the walk needed more than `--stack-bytes` of stack (the
    /// sample keeps the inner frames).
    pub stack_truncated: u64,
}

impl LostDetail {
    pub fn add(&mut self, o: &LostDetail) {
        self.user_stack_collisions += o.user_stack_collisions;
        self.kernel_stack_collisions += o.kernel_stack_collisions;
        self.user_stack_missing += o.user_stack_missing;
        self.map_full += o.map_full;
        self.ring_full += o.ring_full;
        self.stack_read_failed += o.stack_read_failed;
        self.stack_truncated += o.stack_truncated;
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StackDepth {
    pub mean: f64,
    pub p90: usize,
}

/// What the profile cost, measured where it happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cost {
    /// BPF run time per sample of the target: all of the program's runs
    /// (every cpu-clock tick on every CPU runs it, and ticks of other
    /// processes return at once) over the target samples it took. Null
    /// without CAP_SYS_ADMIN, which the kernel's BPF statistics need.
    pub bpf_ns_per_sample: Option<f64>,
    /// BPF run time over the window, as a share of one CPU (%).
    pub bpf_cpu_pct: Option<f64>,
    /// Runs of the program (target or not) and their total run time.
    pub bpf_runs: Option<u64>,
    pub bpf_run_ns: Option<u64>,
    /// Target samples the program took (what the per-sample figure
    /// divides by).
    pub bpf_samples: u64,
    /// Bytes sent through the ring buffer (DWARF samples).
    pub ringbuf_bytes: u64,
    /// CPU time of the reader thread: draining the ring and unwinding.
    pub user_unwind_s: f64,
    /// Wall time spent symbolizing and folding at the end.
    pub user_symbolize_s: f64,
    /// Why the BPF figures are missing, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_note: Option<String>,
    /// With `--off-cpu`: what the scheduler programs cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sched: Option<SchedCost>,
    /// CPython targets: what their Python frames took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonCost>,
}

/// The Python frames' share of the work (BPF: the walk runs inside the
/// sampler, so its time is in `bpf_ns_per_sample`; BENCHMARKS.md has it
/// against `--no-interpreter-frames`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PythonCost {
    /// Stack copies that carried Python frames, and the entries they
    /// carried (frames and eval-call boundaries).
    pub stacks: u64,
    pub entries: u64,
    /// Python stacks cut at the walk's limit (128 entries).
    pub truncated: u64,
    /// Samples of a CPython target's thread with no thread state found
    /// (a thread that runs no Python).
    pub no_thread_state: u64,
    /// Code objects read from the target (once each), frames that could
    /// not be named, and the reader thread's time naming and merging.
    pub code_objects: u64,
    pub unreadable: u64,
    pub naming_s: f64,
}

impl PythonCost {
    pub fn add(&mut self, o: &PythonCost) {
        self.stacks += o.stacks;
        self.entries += o.entries;
        self.truncated += o.truncated;
        self.no_thread_state += o.no_thread_state;
        self.code_objects += o.code_objects;
        self.unreadable += o.unreadable;
        self.naming_s += o.naming_s;
    }

    pub fn line(&self) -> String {
        format!(
            "Python frames: {} stacks, {} entries ({} cut at 128), {} without a thread state; {} code objects read, {} unnamed; naming {:.3}s CPU\n",
            self.stacks,
            self.entries,
            self.truncated,
            self.no_thread_state,
            self.code_objects,
            self.unreadable,
            self.naming_s
        )
    }
}

/// The scheduler programs' cost, from the kernel's BPF statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedCost {
    /// Runs of the four programs (every context switch and wakeup on the
    /// host runs one; those of other processes return at once), and their
    /// run time. Null without CAP_SYS_ADMIN.
    pub bpf_runs: Option<u64>,
    pub bpf_run_ns: Option<u64>,
    /// Run time per run (target or not).
    pub bpf_ns_per_run: Option<f64>,
    /// Scheduler events of the target: switch-outs, switch-ins, wakeups.
    pub target_events: u64,
    /// All the run time over the target's events.
    pub bpf_ns_per_event: Option<f64>,
    /// Run time over the window, as a share of one CPU (%).
    pub bpf_cpu_pct: Option<f64>,
    /// Bytes through the scheduler ring (events and DWARF stack copies).
    pub ringbuf_bytes: u64,
    /// Switch-outs whose stacks were taken, and wakers' stacks taken.
    pub stacks_taken: u64,
    pub waker_stacks: u64,
}

impl SchedCost {
    pub fn derive(&mut self, window_s: f64) {
        if let (Some(ns), Some(runs)) = (self.bpf_run_ns, self.bpf_runs) {
            self.bpf_ns_per_run = (runs > 0).then(|| ns as f64 / runs as f64);
            self.bpf_ns_per_event =
                (self.target_events > 0).then(|| ns as f64 / self.target_events as f64);
            self.bpf_cpu_pct = (window_s > 0.0).then(|| 100.0 * ns as f64 / 1e9 / window_s);
        }
    }

    pub fn add(&mut self, o: &SchedCost, window_s: f64) {
        self.bpf_runs = self.bpf_runs.zip(o.bpf_runs).map(|(a, b)| a + b);
        self.bpf_run_ns = self.bpf_run_ns.zip(o.bpf_run_ns).map(|(a, b)| a + b);
        if self.bpf_runs.is_none() {
            self.bpf_ns_per_run = None;
            self.bpf_ns_per_event = None;
            self.bpf_cpu_pct = None;
        }
        self.target_events += o.target_events;
        self.ringbuf_bytes += o.ringbuf_bytes;
        self.stacks_taken += o.stacks_taken;
        self.waker_stacks += o.waker_stacks;
        self.derive(window_s);
    }

    pub fn line(&self) -> String {
        let bpf = match (self.bpf_ns_per_event, self.bpf_cpu_pct, self.bpf_runs) {
            (Some(ns), Some(pct), Some(runs)) => format!(
                "BPF {:.2} µs per target event ({} events; {runs} runs, {:.2} µs each) = {pct:.3}% of a CPU",
                ns / 1e3,
                self.target_events,
                self.bpf_ns_per_run.unwrap_or(0.0) / 1e3
            ),
            _ => "BPF run time not measured".to_string(),
        };
        format!(
            "Off-CPU cost: {bpf}; scheduler ring {:.1} MB; {} stacks taken, {} of wakers\n",
            self.ringbuf_bytes as f64 / 1e6,
            self.stacks_taken,
            self.waker_stacks
        )
    }
}

impl Cost {
    /// Fills the per-sample and CPU-share figures from the run totals.
    pub fn derive(&mut self, window_s: f64) {
        if let Some(ns) = self.bpf_run_ns {
            let n = self.bpf_samples;
            self.bpf_ns_per_sample = (n > 0).then(|| ns as f64 / n as f64);
            self.bpf_cpu_pct = (window_s > 0.0).then(|| 100.0 * ns as f64 / 1e9 / window_s);
        }
    }

    /// Adds a later run's cost (window_s: the merged window).
    pub fn add(&mut self, o: &Cost, window_s: f64) {
        self.bpf_run_ns = self.bpf_run_ns.zip(o.bpf_run_ns).map(|(a, b)| a + b);
        self.bpf_runs = self.bpf_runs.zip(o.bpf_runs).map(|(a, b)| a + b);
        self.bpf_samples += o.bpf_samples;
        if self.bpf_runs.is_none() {
            self.bpf_ns_per_sample = None;
            self.bpf_cpu_pct = None;
            self.bpf_note = self.bpf_note.clone().or_else(|| o.bpf_note.clone());
        }
        self.ringbuf_bytes += o.ringbuf_bytes;
        self.user_unwind_s += o.user_unwind_s;
        self.user_symbolize_s += o.user_symbolize_s;
        self.derive(window_s);
        match (&mut self.sched, &o.sched) {
            (Some(a), Some(b)) => a.add(b, window_s),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
        match (&mut self.python, &o.python) {
            (Some(a), Some(b)) => a.add(b),
            (a @ None, Some(b)) => *a = Some(b.clone()),
            _ => {}
        }
    }

    /// One line for the text summary.
    pub fn line(&self) -> String {
        let bpf = match (self.bpf_ns_per_sample, self.bpf_cpu_pct, self.bpf_runs) {
            (Some(ns), Some(pct), Some(runs)) => format!(
                "BPF {:.2} µs per target sample ({} samples, {runs} runs) = {pct:.3}% of a CPU",
                ns / 1e3,
                self.bpf_samples
            ),
            _ => format!(
                "BPF run time not measured ({})",
                self.bpf_note.as_deref().unwrap_or("no statistics")
            ),
        };
        let mut s = format!(
            "Profiler cost: {bpf}; ring buffer {:.1} MB; unwinding {:.3}s CPU; symbolizing {:.3}s\n",
            self.ringbuf_bytes as f64 / 1e6,
            self.user_unwind_s,
            self.user_symbolize_s
        );
        if let Some(sc) = &self.sched {
            s.push_str(&sc.line());
        }
        if let Some(p) = &self.python {
            s.push_str(&p.line());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_derives_and_merges() {
        let mut a = Cost {
            bpf_run_ns: Some(2_000_000),
            bpf_runs: Some(5000),
            bpf_samples: 1000,
            ringbuf_bytes: 10,
            user_unwind_s: 0.5,
            ..Default::default()
        };
        a.derive(2.0);
        assert_eq!(a.bpf_ns_per_sample, Some(2000.0));
        assert!((a.bpf_cpu_pct.unwrap() - 0.1).abs() < 1e-12);
        let b = a.clone();
        a.add(&b, 4.0);
        assert_eq!(a.bpf_runs, Some(10_000));
        assert_eq!(a.bpf_ns_per_sample, Some(2000.0));
        assert_eq!(a.ringbuf_bytes, 20);
        assert!(
            a.line()
                .contains("2.00 µs per target sample (2000 samples, 10000 runs)"),
            "{}",
            a.line()
        );
        let none = Cost {
            bpf_note: Some("needs CAP_SYS_ADMIN".into()),
            ..Default::default()
        };
        a.add(&none, 6.0);
        assert_eq!(a.bpf_ns_per_sample, None);
        assert!(a.line().contains("needs CAP_SYS_ADMIN"), "{}", a.line());
        let json = serde_json::to_value(&a).unwrap();
        for k in [
            "bpf_ns_per_sample",
            "bpf_cpu_pct",
            "ringbuf_bytes",
            "user_unwind_s",
            "user_symbolize_s",
        ] {
            assert!(json.get(k).is_some(), "{k} missing: {json}");
        }
    }
}
