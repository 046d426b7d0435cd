//! The one definition of what the kernel-side sampler and user space
//! exchange through BPF maps and the ring buffer. `#[repr(C)]` and padding
//! made explicit, so both sides agree on every byte.
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

/// How the kernel side handles one target process (the value of the
/// target map, so user space can switch a process from DWARF to frame
/// pointers mid-run when the ring buffer cannot keep up).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// One of [`mode`].
    pub mode: u32,
    /// Bytes of user stack to copy from sp (DWARF mode), a multiple of
    /// [`PAGE_BYTES`] no larger than [`MAX_STACK_BYTES`].
    pub stack_bytes: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), two u32s, no padding.
unsafe impl aya::Pod for TargetConfig {}

/// Unwinding modes of a target.
pub mod mode {
    /// Frame pointers in the kernel (`get_stackid`), counts aggregated in
    /// the count map.
    pub const FP: u32 = 1;
    /// Registers and a copy of the user stack sent through the ring
    /// buffer; user space unwinds with DWARF CFI.
    pub const DWARF: u32 = 2;
}

/// The CPU architecture whose register layout the program reads, set by
/// user space as the `ARCH` global before loading (one object serves both;
/// the verifier drops the branch that is not taken).
pub mod arch {
    pub const X86_64: u32 = 1;
    pub const AARCH64: u32 = 2;
}

pub const PAGE_BYTES: u32 = 4096;
/// Largest user-stack copy per sample (`--stack-bytes`).
pub const MAX_STACK_BYTES: u32 = 65_536;
/// The default copy. perf's `--call-graph dwarf` copies 8 KiB by default;
/// twice that leaves room for servers with large frames.
pub const DEFAULT_STACK_BYTES: u32 = 16_384;

/// One ring-buffer record: this header, then `stack_len` bytes of user
/// stack starting at `sp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleHeader {
    pub tgid: u32,
    /// Id in the stack-trace map, or a negative errno when there is none
    /// (the sample hit user mode, or a bucket collision).
    pub kernel_stack_id: i32,
    /// [`sample_flags`].
    pub flags: u32,
    /// Bytes of stack that follow: up to the end of the last piece that
    /// could be read (less than asked for at the end of the stack mapping).
    pub stack_len: u32,
    /// Pieces of the copy that could not be read (bit i: piece i; piece 0
    /// runs from sp to the next page boundary, the others are whole
    /// pages). Their bytes are zeros. A page of the stack that was never
    /// touched (a large local array) is not present, and a BPF program
    /// cannot fault it in, but the frames above it are still there.
    pub missing_pieces: u32,
    pub _pad: u32,
    /// The user-mode registers the unwinder starts from.
    pub ip: u64,
    pub sp: u64,
    /// rbp on x86_64, x29 on aarch64.
    pub fp: u64,
    /// x30 on aarch64; 0 on x86_64.
    pub lr: u64,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields, no implicit padding (56 bytes).
unsafe impl aya::Pod for SampleHeader {}

pub const SAMPLE_HEADER_BYTES: usize = core::mem::size_of::<SampleHeader>();

pub mod sample_flags {
    /// The sample interrupted kernel mode: the registers are the task's
    /// saved user registers (its `pt_regs`), not the interrupt frame's.
    pub const FROM_TASK_REGS: u32 = 1;
    /// The copy got fewer bytes than asked for (its last pieces could not
    /// be read: usually the end of the stack mapping).
    pub const SHORT: u32 = 2;
}

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
    /// DWARF mode: the ring buffer had no room: the sample is lost.
    pub const RING_FULL: u32 = 6;
    /// DWARF mode: no piece of the stack could be read (the sample is
    /// still sent, with no stack bytes).
    pub const STACK_UNREADABLE: u32 = 7;
    /// DWARF mode: samples sent through the ring buffer.
    pub const RING_SAMPLES: u32 = 8;
    /// DWARF mode: bytes sent through the ring buffer.
    pub const RING_BYTES: u32 = 9;
    pub const LEN: u32 = 12;
}

/// Map sizes. The stack map is larger than the count map needs, because
/// `get_stackid` hashes into buckets and collisions lose stacks (expect
/// ~0.1–0.4 % at these sizes).
pub const MAX_TARGETS: u32 = 64;
pub const COUNT_ENTRIES: u32 = 65_536;
pub const STACK_ENTRIES: u32 = 32_768;
/// Frames per stack (the kernel's PERF_MAX_STACK_DEPTH default).
pub const MAX_DEPTH: usize = 127;

/// Register words in the perf_event context (`bpf_user_pt_regs_t`) and
/// in a task's saved `pt_regs`, which start with the same layout.
pub mod regs {
    /// x86_64 `struct pt_regs`, in u64 words.
    pub mod x86_64 {
        pub const BP: usize = 4;
        pub const IP: usize = 16;
        pub const CS: usize = 17;
        pub const SP: usize = 19;
        pub const WORDS: usize = 21;
    }
    /// aarch64 `struct user_pt_regs` (`regs[31], sp, pc, pstate`).
    pub mod aarch64 {
        pub const FP: usize = 29;
        pub const LR: usize = 30;
        pub const SP: usize = 31;
        pub const PC: usize = 32;
        pub const PSTATE: usize = 33;
        pub const WORDS: usize = 34;
    }
}
