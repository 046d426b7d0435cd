//! The one definition of what the kernel-side sampler and user space
//! exchange through BPF maps. `#[repr(C)]` and padding made explicit, so
//! both sides agree on every byte.
#![no_std]

/// Key of the sample-count map: which process, and which stacks (ids into
/// the stack-trace map; negative means "none").
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    pub tgid: u32,
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (16 bytes).
unsafe impl aya::Pod for StackKey {}

/// Counters in the per-CPU stats array, by index.
pub mod stat {
    /// Samples of a target process (before anything can fail).
    pub const SAMPLES: u32 = 0;
    /// `get_stackid` said the stack's bucket holds another stack (-EEXIST).
    pub const USER_COLLISION: u32 = 1;
    pub const KERNEL_COLLISION: u32 = 2;
    /// The user stack could not be read at all.
    pub const USER_MISSING: u32 = 3;
    /// No kernel stack: normal when the sample hit user mode.
    pub const KERNEL_NONE: u32 = 4;
    /// The count map was full: the sample is lost.
    pub const MAP_FULL: u32 = 5;
    pub const LEN: u32 = 8;
}

/// Map sizes. The stack map is larger than the count map needs, because
/// `get_stackid` hashes into buckets and collisions lose stacks (expect
/// ~0.1–0.4 % at these sizes).
pub const MAX_TARGETS: u32 = 64;
pub const COUNT_ENTRIES: u32 = 65_536;
pub const STACK_ENTRIES: u32 = 32_768;
/// Frames per stack (the kernel's PERF_MAX_STACK_DEPTH default).
pub const MAX_DEPTH: usize = 127;
