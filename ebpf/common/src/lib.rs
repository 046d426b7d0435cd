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
    /// [`PyFrame`]s that follow the stack bytes (at the next multiple of 8
    /// bytes from the stack's start): the Python stack of a CPython
    /// target's thread, innermost first.
    pub py_frames: u32,
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
    /// Off-CPU: of STACKS_TAKEN, those taken because the thread's last wait
    /// was long (`SchedConfig::long_wait_ns`).
    pub const LONG_WAIT_STACKS: u32 = 10;
    /// CPython targets: stack copies of a thread whose thread state was
    /// not found (it runs no Python, or is not in the first
    /// [`MAX_PY_THREADS`](crate::MAX_PY_THREADS) of its interpreter).
    pub const PY_NO_THREAD: u32 = 11;
    /// Off-CPU (`--off-cpu`), the scheduler programs: a target thread was
    /// switched out / switched in / woken (`sched_wakeup`, `_new`).
    pub const SWITCH_OUT: u32 = 12;
    pub const SWITCH_IN: u32 = 13;
    pub const WAKEUPS: u32 = 14;
    /// Switched out while still runnable (preempted, or yielded).
    pub const PREEMPTIONS: u32 = 15;
    /// Switch-outs whose stacks were taken (1 in `sample_every`).
    pub const STACKS_TAKEN: u32 = 16;
    /// Wakeups of a sampled wait whose waker's stacks were taken.
    pub const WAKER_STACKS: u32 = 17;
    /// Events that found the scheduler ring full (lost).
    pub const SCHED_RING_FULL: u32 = 18;
    pub const SCHED_RING_BYTES: u32 = 19;
    /// The per-thread map or the off-CPU count map was full.
    pub const THREADS_FULL: u32 = 20;
    pub const OFF_CPU_MAP_FULL: u32 = 21;
    /// `get_stackid` collisions (-EEXIST) of off-CPU and waker stacks.
    pub const OFF_CPU_COLLISIONS: u32 = 22;
    /// No piece of a switched-out thread's user stack could be read.
    pub const OFF_CPU_STACK_UNREADABLE: u32 = 23;
    /// CPython targets: stack copies that carry Python frames, the frames
    /// (and boundaries) they carry, and those whose chain went on past
    /// [`MAX_PY_FRAMES`](crate::MAX_PY_FRAMES).
    pub const PY_STACKS: u32 = 24;
    pub const PY_FRAMES: u32 = 25;
    pub const PY_TRUNCATED: u32 = 26;
    pub const LEN: u32 = 27;
}

/// How a thread left the CPU, from `sched_switch`'s `preempt` and
/// `prev_state` (the task's `__state` as `__schedule` saw it).
pub mod off_state {
    /// Still runnable: preempted, or yielded (`R`).
    pub const RUNNABLE: u32 = 0;
    /// Interruptible sleep (`S`): waiting for an event, a timer, a socket,
    /// a futex. Also `TASK_IDLE` and stopped or traced tasks.
    pub const SLEEP: u32 = 1;
    /// Uninterruptible (`D`): disk I/O, page faults, some kernel locks.
    pub const DISK: u32 = 2;
    pub const LEN: usize = 3;
}

/// Bits of `task_struct.__state` (include/linux/sched.h).
pub mod task_state {
    pub const INTERRUPTIBLE: u32 = 0x1;
    pub const UNINTERRUPTIBLE: u32 = 0x2;
    pub const DEAD: u32 = 0x80;
    /// With UNINTERRUPTIBLE it makes `TASK_IDLE`: a kernel thread's idle
    /// wait, not counted as load.
    pub const NOLOAD: u32 = 0x400;
    /// PREEMPT_RT: a sleeping spinlock, which is uninterruptible.
    pub const RTLOCK_WAIT: u32 = 0x1000;
}

/// The [`off_state`] of a switch-out. `prev_state` is what `__schedule`
/// read before deciding to block (it is TASK_RUNNING again when a signal
/// stopped the block), and a preempted task stays runnable whatever its
/// state says.
#[inline(always)]
pub fn classify_switch(preempt: bool, prev_state: u32) -> u32 {
    if preempt || prev_state == 0 {
        off_state::RUNNABLE
    } else if (prev_state & task_state::UNINTERRUPTIBLE != 0
        && prev_state & task_state::NOLOAD == 0)
        || prev_state & task_state::RTLOCK_WAIT != 0
    {
        off_state::DISK
    } else {
        off_state::SLEEP
    }
}

/// Load-time settings of the scheduler programs that user space may
/// change while they run (value 0 of the `SCHED_CFG` array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedConfig {
    /// Waits shorter than this are not added to the off-CPU stacks.
    pub min_off_ns: u64,
    /// A thread whose last wait was at least this long has the stacks of
    /// its next switch-out taken whatever `sample_every` says (weight 1):
    /// long waits are few and each weighs a lot, so sampling them 1 in N
    /// would make their estimate swing by N times their length. The choice
    /// is made before the wait, so the estimate stays unbiased.
    pub long_wait_ns: u64,
    /// Take the stacks of one switch-out in this many (1: every one),
    /// chosen at random; the kernel weights what it adds by it.
    pub sample_every: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields, no implicit padding (24 bytes).
unsafe impl aya::Pod for SchedConfig {}

/// What the kernel knows of one target thread between a switch-out and
/// the next switch-in (value of the `THREADS` map, keyed by thread id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// When it left the CPU (ns, `bpf_ktime_get_ns`); 0: not seen.
    pub off_since: u64,
    /// When it became runnable: woken, or switched out runnable; 0: not
    /// queued.
    pub queued_since: u64,
    /// DWARF mode: id of the copy of its user stack sent at switch-out
    /// (0: none), and of its waker's.
    pub copy: u64,
    pub waker_copy: u64,
    pub tgid: u32,
    /// One of [`off_state`].
    pub state: u32,
    /// 0: this wait's stacks were not taken; else the `sample_every` at
    /// the switch-out, which weights the wait.
    pub weight: u32,
    pub user_stack: i32,
    pub kernel_stack: i32,
    /// [`thread_flags`].
    pub flags: u32,
    pub waker_tgid: u32,
    pub waker_user: i32,
    pub waker_kernel: i32,
    pub _pad: u32,
    /// How long its previous wait was (ns; 0: none seen).
    pub last_off_ns: u64,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields, no implicit padding (80 bytes).
unsafe impl aya::Pod for ThreadState {}

pub mod thread_flags {
    /// The waker fields are set.
    pub const WOKEN: u32 = 1;
    /// The stacks were taken with frame pointers (a stack id for the user
    /// stack, not a copy): the kernel adds the wait to `OFF_CPU` itself.
    pub const FP_STACK: u32 = 2;
}

/// Key of the in-kernel off-CPU aggregation (frame-pointer targets):
/// where the thread waited, how, and what woke it. Stack ids as in
/// [`StackKey`]; `waker_tgid` is meaningful only with
/// [`thread_flags::WOKEN`] in `flags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffCpuKey {
    pub tgid: u32,
    pub user_stack: i32,
    pub kernel_stack: i32,
    pub state: u32,
    pub flags: u32,
    pub waker_tgid: u32,
    pub waker_user: i32,
    pub waker_kernel: i32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no implicit padding (32 bytes).
unsafe impl aya::Pod for OffCpuKey {}

/// Value of the off-CPU aggregation, already weighted by the sampling.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffCpuValue {
    pub ns: u64,
    pub waits: u64,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), two u64s.
unsafe impl aya::Pod for OffCpuValue {}

/// Records of the scheduler ring buffer start with one of these.
pub mod sched_record {
    /// A [`SwitchEvent`].
    pub const SWITCH_IN: u32 = 1;
    /// A [`CopyHeader`], a [`SampleHeader`], then the stack bytes: the
    /// user stack of a thread switched out (DWARF mode).
    pub const STACK: u32 = 2;
    /// The same for a waker that is itself a DWARF-mode target.
    pub const WAKER_STACK: u32 = 3;
}

/// A target thread got the CPU back: what it waited for, and how long.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchEvent {
    /// [`sched_record::SWITCH_IN`].
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    /// One of [`off_state`] (meaningful with `off_ns > 0`).
    pub state: u32,
    /// When it was switched in (ns, `bpf_ktime_get_ns`).
    pub at: u64,
    /// Time since its switch-out; 0 when that was not seen.
    pub off_ns: u64,
    /// Time since it became runnable (the run-queue latency); 0 when that
    /// was not seen.
    pub queued_ns: u64,
    /// As in [`ThreadState`].
    pub weight: u32,
    pub flags: u32,
    pub copy: u64,
    pub waker_copy: u64,
    pub user_stack: i32,
    pub kernel_stack: i32,
    pub waker_tgid: u32,
    pub waker_user: i32,
    pub waker_kernel: i32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields, no implicit padding (88 bytes).
unsafe impl aya::Pod for SwitchEvent {}

pub const SWITCH_EVENT_BYTES: usize = core::mem::size_of::<SwitchEvent>();

/// Starts a stack-copy record of the scheduler ring: which copy it is
/// (the id a [`ThreadState`] and its [`SwitchEvent`] refer to).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyHeader {
    /// [`sched_record::STACK`] or [`sched_record::WAKER_STACK`].
    pub kind: u32,
    pub _pad: u32,
    pub copy: u64,
}

pub const COPY_HEADER_BYTES: usize = core::mem::size_of::<CopyHeader>();
/// The most header bytes that precede a stack copy in any ring.
pub const MAX_HEADER_BYTES: usize = COPY_HEADER_BYTES + SAMPLE_HEADER_BYTES;

/// One entry of a CPython thread's stack, innermost first: a frame's code
/// object and the instruction it is at (`prev_instr`), or, with `code == 0`,
/// the boundary between the frames one `_PyEval_EvalFrameDefault` call runs
/// and those of the call below it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyFrame {
    pub code: u64,
    pub instr: u64,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), two u64s.
unsafe impl aya::Pod for PyFrame {}

pub const PY_FRAME_BYTES: usize = core::mem::size_of::<PyFrame>();
/// Python stack entries (frames and boundaries) sent per sample at most.
pub const MAX_PY_FRAMES: usize = 128;
/// Thread states searched for the sampled thread's at most.
pub const MAX_PY_THREADS: u32 = 128;
/// Thread id → thread state, remembered so that a search is rare.
pub const PY_THREAD_ENTRIES: u32 = 16_384;
/// An offset that a CPython version does not have.
pub const PY_NONE: u32 = u32::MAX;

/// How to walk one CPython target's frames (value of the `PY_TARGETS` map):
/// where its interpreter list is, and the offsets of its version (bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyConfig {
    /// Address of `_PyRuntime.interpreters.head` in the target.
    pub interpreters_head: u64,
    pub interp_threads_head: u32,
    pub tstate_next: u32,
    pub tstate_native_thread_id: u32,
    /// `.cframe` (3.11, 3.12) or `.current_frame` (3.13).
    pub tstate_cframe: u32,
    /// `_PyCFrame.current_frame`, or [`PY_NONE`] where `tstate_cframe`
    /// holds the frame itself (3.13).
    pub cframe_current_frame: u32,
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_prev_instr: u32,
    pub frame_owner: u32,
    /// 3.11's `is_entry`, or [`PY_NONE`].
    pub frame_is_entry: u32,
    /// 3.12's `FRAME_OWNED_BY_CSTACK` (the shim frame), or [`PY_NONE`].
    pub owner_cstack: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields, no implicit padding (56 bytes).
unsafe impl aya::Pod for PyConfig {}

/// Bytes of a `_PyInterpreterFrame` read at once: every field the walk
/// needs lies in them in 3.11 and 3.12.
pub const PY_FRAME_READ: usize = 72;

/// Map sizes. The stack map is larger than the count map needs, because
/// `get_stackid` hashes into buckets and collisions lose stacks (expect
/// ~0.1–0.4 % at these sizes).
pub const MAX_TARGETS: u32 = 64;
pub const COUNT_ENTRIES: u32 = 65_536;
pub const STACK_ENTRIES: u32 = 32_768;
/// Target threads tracked at once by the scheduler programs.
pub const THREAD_ENTRIES: u32 = 16_384;
/// Distinct (stacks, state, waker) keys of the off-CPU aggregation.
pub const OFF_CPU_ENTRIES: u32 = 16_384;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_states() {
        use off_state::*;
        // Preempted: runnable whatever the state word says (a task can be
        // preempted between setting TASK_INTERRUPTIBLE and schedule()).
        assert_eq!(classify_switch(true, 0x1), RUNNABLE);
        assert_eq!(classify_switch(false, 0), RUNNABLE);
        assert_eq!(classify_switch(false, 0x1), SLEEP);
        assert_eq!(classify_switch(false, 0x2), DISK);
        // TASK_KILLABLE = WAKEKILL | UNINTERRUPTIBLE: still D.
        assert_eq!(classify_switch(false, 0x100 | 0x2), DISK);
        // TASK_IDLE = UNINTERRUPTIBLE | NOLOAD: an idle wait, not D.
        assert_eq!(classify_switch(false, 0x400 | 0x2), SLEEP);
        // Stopped, traced, parked: not running, not D.
        assert_eq!(classify_switch(false, 0x4), SLEEP);
        assert_eq!(classify_switch(false, 0x8), SLEEP);
        assert_eq!(classify_switch(false, 0x1000), DISK);
        // With FREEZABLE (0x2000) added, the base state decides.
        assert_eq!(classify_switch(false, 0x2000 | 0x1), SLEEP);
    }

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<ThreadState>(), 80);
        assert_eq!(core::mem::size_of::<OffCpuKey>(), 32);
        assert_eq!(SWITCH_EVENT_BYTES, 88);
        assert_eq!(COPY_HEADER_BYTES, 16);
        assert_eq!(MAX_HEADER_BYTES, 72);
        assert_eq!(core::mem::size_of::<SchedConfig>(), 24);
        assert_eq!(core::mem::size_of::<PyConfig>(), 56);
        assert_eq!(SAMPLE_HEADER_BYTES, 56);
    }
}
