//! The `"profile"` section of the JSON report, as types: what
//! [`super::Profile::to_json`] serializes, field for field.

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
    /// Bytes of user stack copied per DWARF sample (`--stack-bytes`).
    pub stack_bytes: u32,
    pub cost: Cost,
    /// The stacks themselves, so a later run can draw a differential
    /// flamegraph against this report (--baseline).
    pub folded: Vec<String>,
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
        format!(
            "Profiler cost: {bpf}; ring buffer {:.1} MB; unwinding {:.3}s CPU; symbolizing {:.3}s\n",
            self.ringbuf_bytes as f64 / 1e6,
            self.user_unwind_s,
            self.user_symbolize_s
        )
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
