//! `--off-cpu`: the target's threads through the scheduler, from four BTF
//! tracepoints (no kprobes needed):
//!
//! - `sched_switch`: a target thread leaving the CPU notes when, in which
//!   state (R, S, D), and, for one switch-out in `sample_every`, its
//!   stacks: the kernel stack id, and the user stack the way the on-CPU
//!   sampler gets it (a frame-pointer stack id, or a copy of the stack
//!   for user space to unwind with DWARF). The same thread coming back
//!   adds the time it was off to those stacks (frame pointers: in the
//!   kernel, in `OFF_CPU`) and sends one small event with the wait and its
//!   run-queue latency through `SCHED_RING`.
//! - `sched_waking`: runs in the waker's context (unlike `sched_wakeup`,
//!   which can run on the wakee's CPU from an IPI when the wakeup is
//!   queued there), so the current task is what woke the thread: its
//!   stacks are attached to the wakee's wait.
//! - `sched_wakeup`, `sched_wakeup_new`: the thread is runnable now; the
//!   run-queue latency runs from here to its switch-in.

use aya_ebpf::bindings::{BPF_F_USER_STACK, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use aya_ebpf::helpers::generated::{
    bpf_get_prandom_u32, bpf_get_smp_processor_id, bpf_ktime_get_ns,
};
use aya_ebpf::macros::{btf_tracepoint, map};
use aya_ebpf::maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf};
use aya_ebpf::programs::BtfTracePointContext;
use aya_ebpf::programs::tracing::StackIdContext;
use loadgen_ebpf_common::{
    CopyHeader, OFF_CPU_ENTRIES, OffCpuKey, OffCpuValue, SWITCH_EVENT_BYTES, SampleHeader,
    SchedConfig, SwitchEvent, THREAD_ENTRIES, TargetConfig, ThreadState, classify_switch, mode,
    off_state, sample_flags, sched_record, stat, task_state, thread_flags,
};

use crate::{EEXIST, Record, STACKS, TARGETS, bump, fill_record, saved_user_regs};

/// Byte offsets of `pid` and `tgid` in `struct task_struct`, read from the
/// kernel's BTF by user space and set before loading (aya-ebpf has no
/// CO-RE). Nonzero defaults keep them in `.rodata`, which is frozen, so the
/// verifier sees constants (and refuses the programs if they are not the
/// offsets of int fields: user space loads them only once it has set
/// them).
#[unsafe(no_mangle)]
static TASK_PID_OFFSET: u32 = u32::MAX;
#[unsafe(no_mangle)]
static TASK_TGID_OFFSET: u32 = u32::MAX;

/// Settings user space may change while the programs run (index 0).
#[map]
static SCHED_CFG: Array<SchedConfig> = Array::with_max_entries(1, 0);

/// Target threads between a switch-out (or a wakeup) and their switch-in.
#[map]
static THREADS: HashMap<u32, ThreadState> = HashMap::with_max_entries(THREAD_ENTRIES, 0);

/// Off-CPU time of frame-pointer targets, aggregated in the kernel. Per-CPU
/// values: the CPU a thread is switched in on adds to its own slot.
#[map]
static OFF_CPU: PerCpuHashMap<OffCpuKey, OffCpuValue> =
    PerCpuHashMap::with_max_entries(OFF_CPU_ENTRIES, 0);

/// Switch-in events and DWARF stack copies. Sized by user space.
#[map]
static SCHED_RING: RingBuf = RingBuf::with_byte_size(1 << 23, 0);

/// Stack copies being assembled: two per CPU (user space sizes it), one
/// for `sched_switch` and one for `sched_waking`, so that even if one ran
/// inside the other on a CPU they would not share a record.
#[map]
static SCHED_SCRATCH: Array<Record> = Array::with_max_entries(1, 0);

/// Per-CPU counter that numbers the stack copies.
#[map]
static COPY_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const SLOT_SWITCH: u32 = 0;
const SLOT_WAKING: u32 = 1;

/// A field of `struct task_struct` at an offset user space found in the
/// kernel's BTF. The task pointers of BTF tracepoints are trusted, and the
/// offset a constant of the frozen `.rodata`, so the verifier checks the
/// access against the BTF field and turns it into a plain load that cannot
/// fault: no helper call on the path every context switch takes.
#[inline(always)]
fn task_field(task: *const u8, offset: &u32) -> u32 {
    // SAFETY: a read-only global, frozen before the program is verified.
    let off = unsafe { core::ptr::read_volatile(offset) } as usize;
    // SAFETY: see above; the verifier rejects the program if the offset is
    // not an int field of task_struct.
    (unsafe { core::ptr::read_volatile(task.add(off) as *const i32) }) as u32
}

/// The task's (tgid, tid) and its target settings, if it is a target.
/// The tgid is read and looked up first: most switches are not the
/// target's.
#[inline(always)]
fn target_of(task: *const u8) -> Option<(u32, u32, TargetConfig)> {
    let tgid = task_field(task, &TASK_TGID_OFFSET);
    // SAFETY: a read-only lookup, copied out at once.
    let cfg = (unsafe { TARGETS.get(&tgid) }).copied()?;
    Some((tgid, task_field(task, &TASK_PID_OFFSET), cfg))
}

#[inline(always)]
fn stack_id(ctx: &BtfTracePointContext, flags: u64) -> i32 {
    match ctx.get_stackid(&STACKS, flags) {
        Ok(id) => id as i32,
        Err(e) => {
            if e == -EEXIST {
                bump(stat::OFF_CPU_COLLISIONS, 1);
            }
            -1
        }
    }
}

#[inline(always)]
fn config() -> SchedConfig {
    SCHED_CFG.get(0).copied().unwrap_or(SchedConfig {
        min_off_ns: 0,
        long_wait_ns: u64::MAX,
        sample_every: 1,
        _pad: 0,
    })
}

/// Sends a copy of the current task's user stack; returns its id (0 when
/// it could not be sent).
#[inline(always)]
fn send_copy(kind: u32, slot: u32, tgid: u32, want: u32) -> u64 {
    // SAFETY: no side effects.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(rec) = SCHED_SCRATCH.get_ptr_mut(cpu * 2 + slot) else {
        return 0;
    };
    let Some(seq) = COPY_SEQ.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; the program is not re-entered on a CPU.
    let n = unsafe {
        *seq += 1;
        *seq
    };
    let copy = (n << 12) | (cpu as u64 & 0xfff);
    // SAFETY: this CPU's entry for this program (see SCHED_SCRATCH).
    let rec = unsafe { &mut *rec };
    let (ip, sp, fp, lr) = saved_user_regs();
    let h = SampleHeader {
        tgid,
        kernel_stack_id: -1,
        flags: sample_flags::FROM_TASK_REGS,
        stack_len: 0,
        missing_pieces: 0,
        py_frames: 0,
        ip,
        sp,
        fp,
        lr,
    };
    let prefix = CopyHeader {
        kind,
        _pad: 0,
        copy,
    };
    let Some(bytes) = fill_record(
        rec,
        h,
        Some(prefix),
        want,
        stat::OFF_CPU_STACK_UNREADABLE,
        Some(1 + slot),
    ) else {
        return 0;
    };
    if SCHED_RING
        .output::<[u8]>(bytes, BPF_RB_NO_WAKEUP as u64)
        .is_ok()
    {
        bump(stat::SCHED_RING_BYTES, bytes.len() as u64);
        copy
    } else {
        bump(stat::SCHED_RING_FULL, 1);
        0
    }
}

const NO_THREAD: ThreadState = ThreadState {
    off_since: 0,
    queued_since: 0,
    copy: 0,
    waker_copy: 0,
    tgid: 0,
    state: 0,
    weight: 0,
    user_stack: -1,
    kernel_stack: -1,
    flags: 0,
    waker_tgid: 0,
    waker_user: -1,
    waker_kernel: -1,
    _pad: 0,
    last_off_ns: 0,
};

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    // sched_switch(bool preempt, struct task_struct *prev,
    //              struct task_struct *next, unsigned int prev_state)
    let preempt: u64 = ctx.arg(0);
    let next: *const u8 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    // The tracepoint runs before the switch: the current task is `prev`.
    switched_out(&ctx, preempt as u8 != 0, prev_state as u32);
    switched_in(next);
    0
}

#[inline(always)]
fn switched_out(ctx: &BtfTracePointContext, preempt: bool, prev_state: u32) {
    let id = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    // SAFETY: a read-only lookup, copied out at once.
    let Some(cfg) = (unsafe { TARGETS.get(&tgid) }).copied() else {
        return;
    };
    // SAFETY: no side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    if prev_state & task_state::DEAD != 0 {
        // The thread is exiting: it will not come back.
        let _ = THREADS.remove(&tid);
        return;
    }
    let state = classify_switch(preempt, prev_state);
    bump(stat::SWITCH_OUT, 1);
    let mut t = ThreadState {
        off_since: now,
        tgid,
        state,
        ..NO_THREAD
    };
    if state == off_state::RUNNABLE {
        bump(stat::PREEMPTIONS, 1);
        // Still runnable: it queues for a CPU from now.
        t.queued_since = now;
    }
    let slot = THREADS.get_ptr_mut(&tid);
    // SAFETY: a live map value; see switched_in for races.
    t.last_off_ns = slot.map_or(0, |s| unsafe { (*s).last_off_ns });
    let cfg_s = config();
    let every = cfg_s.sample_every;
    let long = t.last_off_ns >= cfg_s.long_wait_ns && every > 1;
    // SAFETY: no side effects.
    let take = every <= 1 || long || unsafe { bpf_get_prandom_u32() } % every == 0;
    if take {
        bump(stat::STACKS_TAKEN, 1);
        if long {
            bump(stat::LONG_WAIT_STACKS, 1);
        }
        t.weight = if every <= 1 || long { 1 } else { every };
        t.kernel_stack = stack_id(ctx, 0);
        if cfg.mode == mode::DWARF {
            t.copy = send_copy(sched_record::STACK, SLOT_SWITCH, tgid, cfg.stack_bytes);
        } else {
            t.user_stack = stack_id(ctx, BPF_F_USER_STACK as u64);
            t.flags = thread_flags::FP_STACK;
        }
    }
    // In place when the thread is known (nearly always): an update of a
    // hash map entry swaps in a new element, a write into it does not.
    if let Some(slot) = slot {
        // SAFETY: a live map value; see switched_in for races.
        unsafe { *slot = t };
    } else if THREADS.insert(&tid, &t, 0).is_err() {
        bump(stat::THREADS_FULL, 1);
    }
}

#[inline(always)]
fn switched_in(next: *const u8) {
    let Some((tgid, tid, _)) = target_of(next) else {
        return;
    };
    // Nothing known of a thread whose switch-out came before the window.
    let Some(t) = THREADS.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: a live map value; a racing update from another CPU (a
    // wakeup) can at worst mix two waits' fields, never fault.
    let t = unsafe { &mut *t };
    bump(stat::SWITCH_IN, 1);
    // SAFETY: no side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    let off = if t.off_since != 0 && now > t.off_since {
        now - t.off_since
    } else {
        0
    };
    let queued = if t.queued_since != 0 && now > t.queued_since {
        now - t.queued_since
    } else {
        0
    };
    let ev = SwitchEvent {
        kind: sched_record::SWITCH_IN,
        tgid,
        tid,
        state: t.state,
        at: now,
        off_ns: off,
        queued_ns: queued,
        weight: t.weight,
        flags: t.flags,
        copy: t.copy,
        waker_copy: t.waker_copy,
        user_stack: t.user_stack,
        kernel_stack: t.kernel_stack,
        waker_tgid: t.waker_tgid,
        waker_user: t.waker_user,
        waker_kernel: t.waker_kernel,
        _pad: 0,
    };
    if SCHED_RING
        .output::<SwitchEvent>(&ev, BPF_RB_NO_WAKEUP as u64)
        .is_ok()
    {
        bump(stat::SCHED_RING_BYTES, SWITCH_EVENT_BYTES as u64);
    } else {
        bump(stat::SCHED_RING_FULL, 1);
    }
    // Frame-pointer stacks: the wait is added here; DWARF stacks are
    // joined in user space, from the event and the copy.
    if t.flags & thread_flags::FP_STACK != 0
        && t.weight > 0
        && off > 0
        && off >= config().min_off_ns
    {
        let key = OffCpuKey {
            tgid,
            user_stack: t.user_stack,
            kernel_stack: t.kernel_stack,
            state: t.state,
            flags: t.flags,
            waker_tgid: t.waker_tgid,
            waker_user: t.waker_user,
            waker_kernel: t.waker_kernel,
        };
        let w = t.weight as u64;
        if let Some(v) = OFF_CPU.get_ptr_mut(&key) {
            // SAFETY: this CPU's slot of a live map value.
            unsafe {
                (*v).ns += off * w;
                (*v).waits += w;
            }
        } else if OFF_CPU
            .insert(
                &key,
                &OffCpuValue {
                    ns: off * w,
                    waits: w,
                },
                0,
            )
            .is_err()
        {
            bump(stat::OFF_CPU_MAP_FULL, 1);
        }
    }
    *t = ThreadState {
        tgid,
        last_off_ns: off,
        ..NO_THREAD
    };
}

/// `sched_wakeup` and `sched_wakeup_new`: the thread is on a run queue.
#[inline(always)]
fn woken(p: *const u8) {
    let Some((tgid, tid, _)) = target_of(p) else {
        return;
    };
    bump(stat::WAKEUPS, 1);
    // SAFETY: no side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(t) = THREADS.get_ptr_mut(&tid) {
        // SAFETY: a live map value (see switched_in).
        unsafe {
            if (*t).queued_since == 0 {
                (*t).queued_since = now;
            }
        }
        return;
    }
    let t = ThreadState {
        queued_since: now,
        tgid,
        ..NO_THREAD
    };
    if THREADS.insert(&tid, &t, 0).is_err() {
        bump(stat::THREADS_FULL, 1);
    }
}

#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    woken(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    woken(ctx.arg(0));
    0
}

/// The waker of a sampled wait: its kernel stack, and its user stack by
/// frame pointers, or copied when it is a DWARF-mode target itself.
#[btf_tracepoint(function = "sched_waking")]
pub fn sched_waking(ctx: BtfTracePointContext) -> i32 {
    let p: *const u8 = ctx.arg(0);
    let Some((_, tid, _)) = target_of(p) else {
        return 0;
    };
    let Some(t) = THREADS.get_ptr_mut(&tid) else {
        return 0;
    };
    // SAFETY: a live map value (see switched_in).
    let (weight, off_since, flags) = unsafe { ((*t).weight, (*t).off_since, (*t).flags) };
    if weight == 0 || off_since == 0 || flags & thread_flags::WOKEN != 0 {
        return 0;
    }
    let waker_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let kernel = stack_id(&ctx, 0);
    let (mut user, mut copy) = (-1, 0);
    // SAFETY: a read-only lookup, copied out at once.
    match (unsafe { TARGETS.get(&waker_tgid) }).copied() {
        Some(c) if c.mode == mode::DWARF => {
            copy = send_copy(
                sched_record::WAKER_STACK,
                SLOT_WAKING,
                waker_tgid,
                c.stack_bytes,
            );
        }
        _ => user = stack_id(&ctx, BPF_F_USER_STACK as u64),
    }
    bump(stat::WAKER_STACKS, 1);
    // SAFETY: as above.
    unsafe {
        (*t).waker_tgid = waker_tgid;
        (*t).waker_kernel = kernel;
        (*t).waker_user = user;
        (*t).waker_copy = copy;
        (*t).flags = flags | thread_flags::WOKEN;
    }
    0
}
