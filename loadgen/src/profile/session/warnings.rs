//! What a profile lacks or got wrong, one line each, with what to do.

use loadgen_ebpf_common::{MAX_STACK_BYTES, mode};

use super::Session;
use super::collect::Collection;
use crate::profile::is_alive;
use crate::profile::offcpu::OffCpu;
use crate::profile::report::LostDetail;
use crate::profile::ringbuf::Collected;
use crate::profile::unwind::MAX_FRAMES;

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
        warnings.extend(depth_warnings(
            &c.reader,
            self.cfg.stack_bytes,
            self.cfg.freq,
            c.fp_at_limit,
            c.fp_samples,
        ));
        warnings.extend(self.python_notes.iter().cloned());
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
        if let Some(first) = c.object_failures.first() {
            w.push(format!(
                "{} object(s) could not be read for unwinding (their code unwinds with frame pointers), e.g. {first}",
                c.object_failures.len()
            ));
        }
        w
    }
}

/// Stacks cut by a limit, whatever the limit: never silently. `fixed`
/// is `--stack-bytes` when given.
fn depth_warnings(
    c: &Collected,
    fixed: Option<u32>,
    freq: u64,
    (fp_cut, fp_limit): (u64, usize),
    fp_samples: u64,
) -> Vec<String> {
    let mut w = Vec::new();
    let pct = |part: u64, of: u64| 100.0 * part as f64 / of.max(1) as f64;
    let n = c.counts.samples;
    let cut = c.copy.cut();
    if cut > 0 {
        let why = match fixed {
            Some(b) => format!(
                "deeper than --stack-bytes {}k: their outer frames are cut; raise it (up to 64k), or leave it out to let loadgen size each process's copy",
                b / 1024
            ),
            None if c.copy.ceiling() < MAX_STACK_BYTES => format!(
                "deeper than the {} KiB stack copy the ring-buffer budget allows at {freq} Hz: their outer frames are cut; lower --profile-freq",
                c.copy.ceiling() / 1024
            ),
            None => format!(
                "deeper than the largest stack copy ({} KiB): their outer frames are cut; --unwind fp walks deeper where the code keeps frame pointers",
                MAX_STACK_BYTES / 1024
            ),
        };
        w.push(format!("{:.1}% of stacks were {why}", pct(cut, n)));
    }
    if c.counts.too_deep > 0 {
        w.push(format!(
            "{:.1}% of stacks were deeper than {MAX_FRAMES} frames: their outermost frames are cut",
            pct(c.counts.too_deep, n)
        ));
    }
    if fp_cut > 0 {
        w.push(format!(
            "{:.1}% of frame-pointer stacks reached the kernel's {fp_limit}-frame limit (kernel.perf_event_max_stack): their outermost frames are cut",
            pct(fp_cut, fp_samples)
        ));
    }
    w
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::copy_size::CopySizes;

    fn collected(copy: CopySizes, samples: u64, too_deep: u64) -> Collected {
        let mut c = Collected {
            copy,
            ..Default::default()
        };
        c.counts.samples = samples;
        c.counts.too_deep = too_deep;
        c
    }

    #[test]
    fn nothing_cut_says_nothing() {
        let c = collected(CopySizes::new(16384, 65536, true), 100, 0);
        assert!(depth_warnings(&c, None, 99, (0, 127), 0).is_empty());
    }

    #[test]
    fn every_depth_limit_is_stated_with_what_to_do() {
        let mut copy = CopySizes::new(16384, 65536, true);
        copy.truncated(1, 16384, Some(1 << 20));
        copy.truncated(1, 65536, Some(1 << 20));
        let c = collected(copy, 200, 3);
        let w = depth_warnings(&c, None, 99, (5, 127), 10);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].starts_with("0.5% of stacks were deeper than the largest stack copy (64 KiB)"),
            "{w:?}"
        );
        assert!(w[0].contains("--unwind fp"), "{w:?}");
        assert!(
            w[1].starts_with("1.5% of stacks were deeper than 1024 frames"),
            "{w:?}"
        );
        assert!(
            w[2].starts_with("50.0% of frame-pointer stacks reached the kernel's 127-frame limit"),
            "{w:?}"
        );
        assert!(w.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn a_cut_names_the_limit_that_cut_it() {
        let mut fixed = CopySizes::new(16384, 65536, false);
        fixed.truncated(1, 16384, Some(40_000));
        let w = depth_warnings(&collected(fixed, 10, 0), Some(16384), 99, (0, 127), 0);
        assert!(w[0].contains("deeper than --stack-bytes 16k"), "{w:?}");
        assert!(w[0].contains("leave it out"), "{w:?}");
        let mut budget = CopySizes::new(16384, 32768, true);
        budget.truncated(1, 16384, Some(1 << 20));
        budget.truncated(1, 32768, Some(1 << 20));
        let w = depth_warnings(&collected(budget, 10, 0), None, 4999, (0, 127), 0);
        assert!(
            w[0].contains("the 32 KiB stack copy the ring-buffer budget allows at 4999 Hz"),
            "{w:?}"
        );
    }
}
