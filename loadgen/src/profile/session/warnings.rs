//! What a profile lacks or got wrong, one line each, with what to do.

use loadgen_ebpf_common::mode;

use super::Session;
use super::collect::Collection;
use crate::profile::is_alive;
use crate::profile::offcpu::OffCpu;
use crate::profile::report::LostDetail;
use crate::profile::ringbuf::Collected;

impl Session {
    /// What the profile lacks or got wrong, one line each.
    pub(super) fn warnings(
        &self,
        c: &Collection,
        samples: u64,
        reader_failed: bool,
        lost: &LostDetail,
    ) -> Vec<String> {
        let mut warnings = Vec::new();
        if samples == 0 {
            warnings
                .push("no samples: the target used no CPU during the measured window".to_string());
        }
        let has_kernel = c.raw.counts.iter().any(|(k, _)| k.kernel_stack_id >= 0);
        if has_kernel && !c.kernel_visible {
            warnings.push(
                "kernel frames are [unknown]: reading /proc/kallsyms addresses needs CAP_SYSLOG (and kernel.kptr_restrict ≤ 1)".to_string(),
            );
        }
        if c.fp_samples >= 20 && c.fp_shallow > 0.5 {
            warnings.push(
                "most user stacks are one frame deep: the target lacks frame pointers. Use --unwind dwarf, or rebuild it with \
                 Rust `-C force-frame-pointers=yes`, C/C++ `-fno-omit-frame-pointer \
                 -mno-omit-leaf-frame-pointer`, Java \
                 `-XX:+PreserveFramePointer` plus a perf map agent, Node `--perf-basic-prof`, Python 3.12+ \
                 `-X perf` (distro C libraries usually lack frame pointers too)"
                    .to_string(),
            );
        }
        if reader_failed {
            warnings.push(
                "the unwinder thread failed: the DWARF samples are missing from this profile (please report it)"
                    .to_string(),
            );
        }
        warnings.extend(self.dwarf_warnings(&c.reader, lost));
        if let Some(note) = &self.off_cpu_note {
            warnings.push(format!(
                "{note}; the on-CPU profile is complete, and --off-cpu needs kernel BTF and the tp_btf scheduler tracepoints (Linux ≥ 5.5)"
            ));
        }
        if let Some(o) = &c.off_cpu {
            warnings.extend(off_cpu_warnings(o));
        }
        for pid in &self.cfg.pids {
            if !is_alive(*pid) {
                warnings.push(format!(
                    "process {pid} exited during the run: its frames could not be symbolized ([unknown])"
                ));
            }
        }
        warnings
    }

    fn dwarf_warnings(&self, c: &Collected, lost: &LostDetail) -> Vec<String> {
        let mut w = Vec::new();
        for p in &self.plans {
            if p.mode == mode::FP && p.why.contains("budget") {
                w.push(format!(
                    "process {}: frame pointers, not DWARF: {} at {} Hz; lower --profile-freq or --stack-bytes, or force --unwind dwarf",
                    p.pid, p.why, self.cfg.freq
                ));
            }
        }
        if let Some((after, dropped)) = c.switched_to_fp {
            w.push(format!(
                "the ring buffer could not keep up ({dropped} samples dropped): switched to frame pointers {:.1}s into the window; lower --profile-freq or --stack-bytes, or force --unwind dwarf",
                after.as_secs_f64()
            ));
        } else if lost.ring_full > 0 {
            w.push(format!(
                "{} samples lost: the ring buffer was full; lower --profile-freq or --stack-bytes",
                lost.ring_full
            ));
        }
        let n = c.counts.samples.max(1);
        if c.counts.truncated * 20 > n {
            w.push(format!(
                "{:.0}% of stacks were deeper than --stack-bytes {}: raise it (up to 64k) to see their outer frames",
                100.0 * c.counts.truncated as f64 / n as f64,
                self.cfg.stack_bytes
            ));
        }
        if let Some(first) = c.object_failures.first() {
            w.push(format!(
                "{} object(s) could not be read for unwinding (their code unwinds with frame pointers), e.g. {first}",
                c.object_failures.len()
            ));
        }
        w
    }
}

/// What the off-CPU profile lacks, in one line each.
fn off_cpu_warnings(o: &OffCpu) -> Vec<String> {
    let mut w = Vec::new();
    if o.switch_outs == 0 && o.totals.runq.is_empty() {
        w.push(
            "no off-CPU waits: no thread of the target left or got a CPU during the window (idle and blocked throughout, or exited); load it, or check --profile-pid"
                .to_string(),
        );
    }
    let l = &o.lost;
    if l.ring_full > 0 {
        w.push(format!(
            "{} scheduler events lost: the ring was full (the reader fell behind); the off-CPU totals are low by about that many waits",
            l.ring_full
        ));
    }
    if l.threads_full > 0 || l.map_full > 0 {
        w.push(format!(
            "off-CPU maps full ({} thread inserts, {} waits lost): the target has more threads or distinct stacks than loadgen follows",
            l.threads_full, l.map_full
        ));
    }
    if l.copies_missing > 0 {
        w.push(format!(
            "{} off-CPU waits lost their user stack (its copy did not fit the ring)",
            l.copies_missing
        ));
    }
    w
}
