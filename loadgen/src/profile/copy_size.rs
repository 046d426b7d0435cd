//! How much user stack each DWARF target's samples copy. Without
//! `--stack-bytes`, a process starts at 16 KiB and, the first time one of
//! its samples runs off the end of its copy, its copy is raised to cover
//! that stack: from the sample's sp to the end of the stack's mapping,
//! rounded up to a page, up to the largest copy the ring-buffer budget
//! allows (64 KiB at most). Shallow processes keep paying for 16 KiB; a
//! deep one pays for what its stacks need, from its first deep sample on.
//!
//! Plain inputs and decisions, tested without a kernel; the reader thread
//! applies the raises to the target map.

use std::collections::HashMap;

use loadgen_ebpf_common::PAGE_BYTES;

#[derive(Debug, Clone, Default)]
pub struct CopySizes {
    start: u32,
    ceiling: u32,
    /// False with an explicit `--stack-bytes`: the copy stays as given.
    adaptive: bool,
    /// Processes whose copy was raised, and to what.
    raised: HashMap<u32, u32>,
    /// Raises not yet written to the target map.
    pending: Vec<(u32, u32)>,
    /// Samples cut at the largest copy this process could have: its
    /// stack is deeper than any copy we will make.
    cut: u64,
}

impl CopySizes {
    /// `start`: the first copy; `ceiling`: the largest (never below
    /// `start`); `adaptive`: whether to raise at all.
    pub fn new(start: u32, ceiling: u32, adaptive: bool) -> CopySizes {
        CopySizes {
            start,
            ceiling: ceiling.max(start),
            adaptive,
            raised: HashMap::new(),
            pending: Vec::new(),
            cut: 0,
        }
    }

    /// The copy `pid` gets now.
    pub fn current(&self, pid: u32) -> u32 {
        self.raised.get(&pid).copied().unwrap_or(self.start)
    }

    pub fn ceiling(&self) -> u32 {
        self.ceiling
    }

    /// A sample of `pid` with `copied` bytes of stack ran off the copy's
    /// end; `need` is the bytes from its sp to the end of the stack's
    /// mapping (None when unknown: then the copy doubles).
    pub fn truncated(&mut self, pid: u32, copied: u32, need: Option<u64>) {
        let current = self.current(pid);
        if copied < current {
            // Copied before the last raise reached the kernel.
            return;
        }
        if !self.adaptive || current >= self.ceiling {
            self.cut += 1;
            return;
        }
        let want = need
            .map(|n| n.min(u32::MAX as u64) as u32)
            .unwrap_or(current.saturating_mul(2))
            .div_ceil(PAGE_BYTES)
            .saturating_mul(PAGE_BYTES)
            .max(current + PAGE_BYTES)
            .min(self.ceiling);
        self.raised.insert(pid, want);
        self.pending.push((pid, want));
    }

    /// The raises decided since the last call, for the target map.
    pub fn take_pending(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.pending)
    }

    /// The largest copy any process used.
    pub fn largest(&self) -> u32 {
        self.raised.values().copied().fold(self.start, u32::max)
    }

    /// Samples cut because their stack was deeper than the largest copy.
    pub fn cut(&self) -> u64 {
        self.cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_stack_raises_its_process_to_what_the_stack_needs_once() {
        let mut c = CopySizes::new(16384, 65536, true);
        assert_eq!(c.current(7), 16384);
        // 40 000 bytes from sp to the top of the stack: 10 pages.
        c.truncated(7, 16384, Some(40_000));
        assert_eq!(c.current(7), 40960);
        assert_eq!(c.take_pending(), [(7, 40960)]);
        assert_eq!(c.take_pending(), []);
        // Another process keeps the first copy.
        assert_eq!(c.current(8), 16384);
        // A sample copied before the raise took effect changes nothing.
        c.truncated(7, 16384, Some(40_000));
        assert_eq!(c.take_pending(), []);
        assert_eq!(c.cut(), 0);
        assert_eq!(c.largest(), 40960);
    }

    #[test]
    fn raises_stop_at_the_ceiling_and_later_cuts_are_counted() {
        let mut c = CopySizes::new(16384, 65536, true);
        c.truncated(1, 16384, Some(8 << 20));
        assert_eq!(c.take_pending(), [(1, 65536)]);
        c.truncated(1, 65536, Some(8 << 20));
        c.truncated(1, 65536, Some(8 << 20));
        assert_eq!(c.take_pending(), []);
        assert_eq!(c.cut(), 2);
    }

    #[test]
    fn an_unknown_need_doubles_and_a_raise_is_at_least_a_page() {
        let mut c = CopySizes::new(16384, 65536, true);
        c.truncated(1, 16384, None);
        assert_eq!(c.current(1), 32768);
        // A need below the copy (the maps moved): still one page more.
        c.truncated(1, 32768, Some(100));
        assert_eq!(c.current(1), 36864);
    }

    #[test]
    fn an_explicit_copy_or_a_low_ceiling_is_never_raised() {
        let mut fixed = CopySizes::new(16384, 65536, false);
        fixed.truncated(1, 16384, Some(40_000));
        assert_eq!(fixed.current(1), 16384);
        assert_eq!(fixed.take_pending(), []);
        assert_eq!(fixed.cut(), 1);
        // The budget allows no more than the start.
        let mut tight = CopySizes::new(16384, 8192, true);
        assert_eq!(tight.ceiling(), 16384);
        tight.truncated(1, 16384, Some(40_000));
        assert_eq!(tight.take_pending(), []);
        assert_eq!(tight.cut(), 1);
    }
}
