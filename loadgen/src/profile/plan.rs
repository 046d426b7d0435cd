//! `--unwind auto|dwarf|fp`: which path each target takes, and how large
//! the ring buffer is. Decided from the target's objects before sampling
//! starts (plain inputs, so the rules are unit-tested).

use std::fmt;
use std::str::FromStr;

use loadgen_ebpf_common::{MAX_DEPTH, MAX_STACK_BYTES, PAGE_BYTES, SAMPLE_HEADER_BYTES, mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnwindMode {
    /// Frame pointers for Go and for code without CFI; DWARF for the rest
    /// (nearly every C, C++ and Rust binary, and everything linked
    /// against glibc), with a stack copy raised per process for deep
    /// stacks. Falls back to frame pointers, with a warning, when the ring
    /// buffer cannot keep up.
    #[default]
    Auto,
    Dwarf,
    Fp,
}

impl FromStr for UnwindMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(UnwindMode::Auto),
            "dwarf" => Ok(UnwindMode::Dwarf),
            "fp" => Ok(UnwindMode::Fp),
            _ => Err(format!("--unwind must be auto, dwarf or fp; got {s:?}")),
        }
    }
}

impl fmt::Display for UnwindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnwindMode::Auto => "auto",
            UnwindMode::Dwarf => "dwarf",
            UnwindMode::Fp => "fp",
        })
    }
}

/// Parses `--stack-bytes`: bytes, or with a `k`/`K`/`KiB` suffix; a
/// multiple of 4 KiB from 4 KiB to 64 KiB.
pub fn parse_stack_bytes(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix("KiB").or_else(|| t.strip_suffix(['k', 'K'])) {
        Some(n) => (n, 1024),
        None => (t, 1),
    };
    let bytes = num
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(scale));
    match bytes {
        Some(b) if (PAGE_BYTES..=MAX_STACK_BYTES).contains(&b) && b % PAGE_BYTES == 0 => Ok(b),
        _ => Err(format!(
            "--stack-bytes must be a multiple of 4 KiB from 4k to 64k (e.g. 16k or 32768); got {s:?}"
        )),
    }
}

/// Above this many bytes per second of stack copies, `auto` starts with
/// frame pointers: one user-side thread would not keep up (it unwinds
/// and aggregates roughly 10⁵ samples a second, see BENCHMARKS.md), and
/// the copies themselves would be a real cost to the host.
pub const AUTO_MAX_BYTES_PER_S: u64 = 512 << 20;

/// What a target's code is, as far as choosing its unwinding goes (the
/// vdso left out: every process maps it, and its CFI says nothing about
/// the target's own code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Go: frame pointers everywhere, and stack switches that only a walk
    /// in the kernel follows.
    Go,
    /// Some of its code has DWARF CFI.
    Cfi,
    /// None of it has.
    NoCfi,
}

/// What one target gets, and why (for the header and the warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlan {
    pub pid: u32,
    pub mode: u32,
    pub why: &'static str,
}

/// Chooses each target's path. `code` says what the target maps;
/// `bytes_per_s` is the worst-case rate of stack copies (every CPU
/// sampling a target thread).
pub fn plan(requested: UnwindMode, pid: u32, code: Code, bytes_per_s: u64) -> TargetPlan {
    let (mode, why) = match requested {
        UnwindMode::Fp => (mode::FP, "--unwind fp"),
        UnwindMode::Dwarf => (mode::DWARF, "--unwind dwarf"),
        UnwindMode::Auto if code == Code::Go => (mode::FP, "Go keeps frame pointers"),
        UnwindMode::Auto if code == Code::NoCfi => (mode::FP, "no CFI in its code"),
        UnwindMode::Auto if bytes_per_s > AUTO_MAX_BYTES_PER_S => {
            (mode::FP, "stack copies would exceed the ring-buffer budget")
        }
        UnwindMode::Auto => (mode::DWARF, "auto"),
    };
    TargetPlan { pid, mode, why }
}

/// CPUs that can be sampling a target thread at once.
fn busy_cpus(cpus: usize, target_threads: usize) -> u64 {
    cpus.min(target_threads.max(1)) as u64
}

/// Worst-case bytes per second of DWARF samples: every sampled CPU
/// running a target thread.
pub fn worst_case_bytes_per_s(freq: u64, cpus: usize, target_threads: usize, stack: u32) -> u64 {
    freq * busy_cpus(cpus, target_threads) * (stack as u64 + SAMPLE_HEADER_BYTES as u64)
}

/// The largest stack copy a process may be raised to (see `copy_size`):
/// the largest multiple of a page whose worst-case rate stays within
/// [`AUTO_MAX_BYTES_PER_S`], at most [`MAX_STACK_BYTES`].
pub fn copy_ceiling(freq: u64, cpus: usize, target_threads: usize) -> u32 {
    let per_sample = AUTO_MAX_BYTES_PER_S / (freq.max(1) * busy_cpus(cpus, target_threads));
    let stack = per_sample.saturating_sub(SAMPLE_HEADER_BYTES as u64);
    (stack.min(MAX_STACK_BYTES as u64) as u32) / PAGE_BYTES * PAGE_BYTES
}

/// How deep the kernel walks a frame-pointer stack: the stack map holds
/// [`MAX_DEPTH`] frames, and `kernel.perf_event_max_stack` may lower it.
pub fn fp_depth_limit() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_max_stack")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map_or(MAX_DEPTH, |n| n.min(MAX_DEPTH))
}

/// Ring size: half a second of the worst case (the reader drains every
/// 10 ms), a power of two from 4 MiB to 256 MiB; one page when no target
/// uses it.
pub fn ring_bytes(any_dwarf: bool, bytes_per_s: u64) -> u32 {
    if !any_dwarf {
        return PAGE_BYTES;
    }
    (bytes_per_s / 2)
        .clamp(4 << 20, 256 << 20)
        .next_power_of_two() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_bytes_accepts_multiples_of_a_page_up_to_64k() {
        assert_eq!(parse_stack_bytes("16k"), Ok(16384));
        assert_eq!(parse_stack_bytes("32768"), Ok(32768));
        assert_eq!(parse_stack_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_stack_bytes("4K"), Ok(4096));
        for bad in [
            "0",
            "1000",
            "5000",
            "68k",
            "128k",
            "-4k",
            "lots",
            "",
            "99999999999k",
        ] {
            let e = parse_stack_bytes(bad).unwrap_err();
            assert!(e.starts_with("--stack-bytes must be"), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [UnwindMode::Auto, UnwindMode::Dwarf, UnwindMode::Fp] {
            assert_eq!(m.to_string().parse::<UnwindMode>(), Ok(m));
        }
        assert!(
            "lbr"
                .parse::<UnwindMode>()
                .unwrap_err()
                .contains("auto, dwarf or fp")
        );
    }

    #[test]
    fn auto_uses_dwarf_where_there_is_cfi_and_the_budget_allows() {
        let bw = worst_case_bytes_per_s(99, 64, 8, 16384);
        assert_eq!(bw, 99 * 8 * (16384 + SAMPLE_HEADER_BYTES as u64));
        assert_eq!(plan(UnwindMode::Auto, 1, Code::Cfi, bw).mode, mode::DWARF);
        assert_eq!(plan(UnwindMode::Auto, 1, Code::NoCfi, bw).mode, mode::FP);
        let go = plan(UnwindMode::Auto, 1, Code::Go, bw);
        assert_eq!(go.mode, mode::FP);
        assert!(go.why.contains("Go"));
        let huge = worst_case_bytes_per_s(10_000, 64, 64, 65536);
        let p = plan(UnwindMode::Auto, 1, Code::Cfi, huge);
        assert_eq!(p.mode, mode::FP);
        assert!(p.why.contains("budget"));
        // Explicit modes are obeyed.
        assert_eq!(plan(UnwindMode::Dwarf, 1, Code::Go, huge).mode, mode::DWARF);
        assert_eq!(
            plan(UnwindMode::Dwarf, 1, Code::NoCfi, huge).mode,
            mode::DWARF
        );
        assert_eq!(plan(UnwindMode::Fp, 1, Code::Cfi, bw).mode, mode::FP);
    }

    #[test]
    fn the_copy_ceiling_keeps_the_worst_case_within_the_budget() {
        // 99 Hz on 2 CPUs: 64 KiB is far within 512 MiB/s.
        assert_eq!(copy_ceiling(99, 2, 8), MAX_STACK_BYTES);
        // 4999 Hz on 64 busy CPUs: 1678 bytes a sample, under a page.
        assert_eq!(copy_ceiling(4999, 64, 64), 0);
        let c = copy_ceiling(1000, 16, 16);
        assert_eq!(c % PAGE_BYTES, 0);
        assert!(worst_case_bytes_per_s(1000, 16, 16, c) <= AUTO_MAX_BYTES_PER_S);
        assert!(
            worst_case_bytes_per_s(1000, 16, 16, c + PAGE_BYTES) > AUTO_MAX_BYTES_PER_S,
            "{c}"
        );
    }

    #[test]
    fn ring_holds_half_a_second_in_a_power_of_two() {
        assert_eq!(ring_bytes(false, 1 << 30), 4096);
        assert_eq!(ring_bytes(true, 1000), 4 << 20);
        assert_eq!(ring_bytes(true, 100 << 20), 64 << 20);
        assert_eq!(ring_bytes(true, u64::MAX / 4), 256 << 20);
    }
}
