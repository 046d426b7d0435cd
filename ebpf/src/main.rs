//! Kernel side of loadgen's profiler: a `perf_event` program, attached to
//! the software cpu-clock event on every CPU, that keeps samples of the
//! target processes only. Per target, one of two paths:
//!
//! - frame pointers (`mode::FP`): `get_stackid` walks the user and kernel
//!   stacks and the counts are aggregated in the kernel, one counter per
//!   (tgid, user stack, kernel stack); user space reads the maps once, at
//!   the end of the measured window.
//! - DWARF (`mode::DWARF`): the user registers and a copy of the top of
//!   the user stack go to user space through a ring buffer, with the
//!   kernel stack id; user space unwinds them with the binaries' CFI.
//!
//! With `--off-cpu`, four BTF tracepoint programs follow the target's
//! threads through the scheduler (`sched.rs` in this crate): where they
//! waited, for how long, what woke them, and how long they then queued
//! for a CPU.
//!
//! Built for `bpfel-unknown-none` with nightly and bpf-linker by
//! `cargo xtask ebpf`; the object is committed and embedded by `loadgen`.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::EbpfContext;
use aya_ebpf::bindings::{BPF_F_USER_STACK, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::bpf_probe_read_kernel;
use aya_ebpf::helpers::generated::{
    bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_probe_read_user, bpf_task_pt_regs,
};
use aya_ebpf::macros::{map, perf_event};
use aya_ebpf::maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace};
use aya_ebpf::programs::PerfEventContext;
use aya_ebpf::programs::tracing::StackIdContext;
use loadgen_ebpf_common::{
    COUNT_ENTRIES, MAX_HEADER_BYTES, MAX_PY_FRAMES, MAX_STACK_BYTES, MAX_TARGETS, PAGE_BYTES,
    PY_FRAME_BYTES, SAMPLE_HEADER_BYTES, STACK_ENTRIES, SampleHeader, StackKey, TargetConfig, arch,
    mode, regs, sample_flags, stat,
};

mod python;
mod sched;

use python::PY_BYTES;

/// Which register layout to read; set by user space before loading.
#[unsafe(no_mangle)]
static ARCH: u32 = arch::X86_64;

/// Process ids (tgids) to sample, and how, filled by user space.
#[map]
pub(crate) static TARGETS: HashMap<u32, TargetConfig> = HashMap::with_max_entries(MAX_TARGETS, 0);

#[map]
pub(crate) static STACKS: StackTrace = StackTrace::with_max_entries(STACK_ENTRIES, 0);

/// Sample counts (frame-pointer mode). Per-CPU values: each CPU increments
/// its own slot, so no count is lost without atomics; user space sums the
/// CPUs.
#[map]
static COUNTS: PerCpuHashMap<StackKey, u64> = PerCpuHashMap::with_max_entries(COUNT_ENTRIES, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::LEN, 0);

/// DWARF-mode samples to user space. Sized by user space before loading
/// (a power of two pages), from the frequency, CPUs and stack bytes.
#[map]
static RING: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// One record being assembled, per CPU. A plain array indexed by CPU
/// (user space sets one entry per possible CPU): per-CPU maps cap values
/// at 32 KiB, and a record can be 64 KiB. A perf_event program does not
/// nest on a CPU, so an entry has one writer at a time.
#[map]
static SCRATCH: Array<Record> = Array::with_max_entries(1, 0);

/// Room for a record: the stack is copied in whole pages, starting with
/// the page that holds sp, to `pages` (one page more than the largest
/// copy, as sp need not be page-aligned). The header goes right before sp's
/// byte, over the part of that first page below sp (dead stack), so
/// header and stack leave in one piece from `head + sp % PAGE`, minus the
/// header's length. A CPython target's Python frames follow the stack.
#[repr(C)]
pub struct Record {
    head: [u8; MAX_HEADER_BYTES],
    pages: [u8; (MAX_STACK_BYTES + PAGE_BYTES) as usize + PY_BYTES],
}

pub(crate) const EEXIST: i32 = 17;
/// Pieces of a copy: a partial first page, then whole pages.
const MAX_PIECES: u32 = MAX_STACK_BYTES / PAGE_BYTES + 1;

#[inline(always)]
pub(crate) fn bump(index: u32, by: u64) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, only this CPU writes it, and the program
        // is not re-entered on a CPU.
        unsafe { *p += by };
    }
}

#[perf_event]
pub fn sample(ctx: PerfEventContext) -> u32 {
    let tgid = ctx.tgid();
    // SAFETY: a read-only lookup; the value is copied out at once.
    let Some(cfg) = (unsafe { TARGETS.get(&tgid) }).copied() else {
        return 0;
    };
    bump(stat::SAMPLES, 1);
    let kernel = match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as i32,
        Err(e) => {
            bump(
                if e == -EEXIST {
                    stat::KERNEL_COLLISION
                } else {
                    stat::KERNEL_NONE
                },
                1,
            );
            e
        }
    };
    if cfg.mode == mode::DWARF {
        send_sample(&ctx, tgid, kernel, cfg.stack_bytes);
    } else {
        count_fp_sample(&ctx, tgid, kernel);
    }
    0
}

/// Frame-pointer mode: one more count for (tgid, user stack, kernel stack).
#[inline(always)]
fn count_fp_sample(ctx: &PerfEventContext, tgid: u32, kernel: i32) {
    let user = match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => id as i32,
        Err(e) => {
            bump(
                if e == -EEXIST {
                    stat::USER_COLLISION
                } else {
                    stat::USER_MISSING
                },
                1,
            );
            -1
        }
    };
    let key = StackKey {
        tgid,
        user_stack_id: user,
        kernel_stack_id: kernel.max(-1),
        _pad: 0,
    };
    if let Some(count) = COUNTS.get_ptr_mut(&key) {
        // SAFETY: this CPU's slot of a live map value; a BPF program is not
        // re-entered on the same CPU.
        unsafe { *count += 1 };
        return;
    }
    // A new key: the per-CPU insert sets this CPU's slot (others start at
    // zero), so a race with another CPU inserting the same key loses
    // nothing either.
    if COUNTS.insert(&key, &1, 0).is_err() {
        bump(stat::MAP_FULL, 1);
    }
}

/// The user registers at the sample: the interrupt frame's when it hit
/// user mode, else the ones the task saved on entering the kernel.
/// Returns (ip, sp, fp, lr, from_task).
#[inline(always)]
fn user_regs(ctx: &PerfEventContext) -> (u64, u64, u64, u64, bool) {
    let frame = ctx.as_ptr() as *const u64;
    // SAFETY: a read-only global, frozen before the program is verified.
    let arch = unsafe { core::ptr::read_volatile(&ARCH) };
    if arch == arch::AARCH64 {
        use regs::aarch64::*;
        // SAFETY: constant offsets inside the context's bpf_user_pt_regs_t.
        let pstate = unsafe { *frame.add(PSTATE) };
        // EL0 (and not a 32-bit task): the interrupt frame is user mode.
        if pstate & 0x1f == 0 {
            // SAFETY: as above.
            return unsafe {
                (
                    *frame.add(PC),
                    *frame.add(SP),
                    *frame.add(FP),
                    *frame.add(LR),
                    false,
                )
            };
        }
        let (ip, sp, fp, lr) = saved_user_regs();
        return (ip, sp, fp, lr, true);
    }
    use regs::x86_64::*;
    // SAFETY: constant offsets inside the context's pt_regs.
    let cs = unsafe { *frame.add(CS) };
    if cs & 3 == 3 {
        // SAFETY: as above.
        return unsafe { (*frame.add(IP), *frame.add(SP), *frame.add(BP), 0, false) };
    }
    let (ip, sp, fp, lr) = saved_user_regs();
    (ip, sp, fp, lr, true)
}

/// The user registers the current task saved on entering the kernel
/// (its `pt_regs`): (ip, sp, fp, lr).
#[inline(always)]
pub(crate) fn saved_user_regs() -> (u64, u64, u64, u64) {
    let task = task_regs();
    // SAFETY: a read-only global, frozen before the program is verified.
    let arch = unsafe { core::ptr::read_volatile(&ARCH) };
    if arch == arch::AARCH64 {
        use regs::aarch64::*;
        return (
            read_kernel_word(task, PC),
            read_kernel_word(task, SP),
            read_kernel_word(task, FP),
            read_kernel_word(task, LR),
        );
    }
    use regs::x86_64::*;
    (
        read_kernel_word(task, IP),
        read_kernel_word(task, SP),
        read_kernel_word(task, BP),
        0,
    )
}

/// The current task's saved user registers (top of its kernel stack).
#[inline(always)]
fn task_regs() -> *const u64 {
    // SAFETY: both helpers only read the current task; the result is a
    // kernel address we read through bpf_probe_read_kernel only.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u64 }
}

#[inline(always)]
fn read_kernel_word(base: *const u64, word: usize) -> u64 {
    // SAFETY: bpf_probe_read_kernel checks the address; a failed read
    // gives 0, which user space treats as "no user stack".
    unsafe { bpf_probe_read_kernel(base.wrapping_add(word)) }.unwrap_or(0)
}

/// DWARF mode: registers and the top `want` bytes of the user stack into
/// the ring buffer.
#[inline(always)]
fn send_sample(ctx: &PerfEventContext, tgid: u32, kernel: i32, want: u32) {
    // SAFETY: no side effects.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(rec) = SCRATCH.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: this CPU's entry; a perf_event program does not nest on a
    // CPU, so nothing else writes it until we are done.
    let rec = unsafe { &mut *rec };
    let (ip, sp, fp, lr, from_task) = user_regs(ctx);
    let h = SampleHeader {
        tgid,
        kernel_stack_id: kernel,
        flags: if from_task {
            sample_flags::FROM_TASK_REGS
        } else {
            0
        },
        stack_len: 0,
        missing_pieces: 0,
        py_frames: 0,
        ip,
        sp,
        fp,
        lr,
    };
    let Some(bytes) = fill_record(rec, h, None, want, stat::STACK_UNREADABLE, Some(0)) else {
        return;
    };
    // No wakeup: user space drains the ring on a timer, so a sample costs
    // the target no wakeup of the reader.
    if RING.output::<[u8]>(bytes, BPF_RB_NO_WAKEUP as u64).is_ok() {
        bump(stat::RING_SAMPLES, 1);
        bump(stat::RING_BYTES, bytes.len() as u64);
    } else {
        bump(stat::RING_FULL, 1);
    }
}

/// Copies the top `want` bytes of the user stack at `h.sp` into `rec`,
/// completes `h` (length, missing pieces, SHORT), and writes it, after
/// `prefix` if given, right before the stack bytes, and a CPython target's
/// Python frames after them (walked with scratch `py_slot`; None: not
/// walked). Returns the
/// record's bytes, ready for a ring.
#[inline(always)]
pub(crate) fn fill_record(
    rec: &mut Record,
    mut h: SampleHeader,
    prefix: Option<loadgen_ebpf_common::CopyHeader>,
    want: u32,
    unreadable_stat: u32,
    py_slot: Option<u32>,
) -> Option<&[u8]> {
    // The Python stack first, while the program has one state to verify
    // it from; it joins the record after the copy.
    let py_walked = match py_slot {
        Some(slot) => python::walk(h.tgid, slot),
        None => 0,
    };
    let want = if want > MAX_STACK_BYTES {
        MAX_STACK_BYTES
    } else {
        want
    };
    let skew = (h.sp & (PAGE_BYTES as u64 - 1)) as u32;
    let page0 = h.sp & !(PAGE_BYTES as u64 - 1);
    let pages = if h.ip == 0 {
        0
    } else {
        (skew + want).div_ceil(PAGE_BYTES)
    };
    // Whole pages, so that one that cannot be read (never touched, or past
    // the end of the stack mapping) costs only its own bytes: the copy
    // goes on past it. Every read is one page at a page boundary, which
    // also keeps the verifier's work small.
    //
    // What was read is kept in the record, not in locals: the verifier
    // does not track map memory, so after each page both outcomes leave the
    // same state and it need not walk 2^17 paths.
    let end_ptr = &mut rec.head[0] as *mut u8 as *mut u32;
    let miss_ptr = &mut rec.head[4] as *mut u8 as *mut u32;
    // SAFETY: the first bytes of this CPU's record, aligned (map values
    // are 8-aligned); volatile, so the compiler keeps them in memory.
    unsafe {
        core::ptr::write_volatile(end_ptr, 0);
        core::ptr::write_volatile(miss_ptr, 0);
    }
    let mut i: u32 = 0;
    while i < MAX_PIECES {
        if i >= pages {
            break;
        }
        let off = ((i * PAGE_BYTES) & (2 * MAX_STACK_BYTES - 1)) as usize;
        if off > MAX_STACK_BYTES as usize {
            break;
        }
        // SAFETY: off + PAGE_BYTES ≤ size_of(rec.pages) (checked above);
        // bpf_probe_read_user checks the user address (and zeroes the
        // destination when it cannot read it).
        let r = unsafe {
            bpf_probe_read_user(
                rec.pages.as_mut_ptr().add(off) as *mut c_void,
                PAGE_BYTES,
                (page0 + off as u64) as *const c_void,
            )
        };
        // SAFETY: as above.
        unsafe {
            if r < 0 {
                let m = core::ptr::read_volatile(miss_ptr);
                core::ptr::write_volatile(miss_ptr, m | 1 << i);
            } else {
                core::ptr::write_volatile(end_ptr, i + 1);
            }
        }
        i += 1;
    }
    // SAFETY: as above.
    let (end_pages, missing) = unsafe {
        (
            core::ptr::read_volatile(end_ptr),
            core::ptr::read_volatile(miss_ptr),
        )
    };
    let readable = (end_pages * PAGE_BYTES).saturating_sub(skew);
    let copied = if readable < want { readable } else { want };
    if copied == 0 && h.ip != 0 {
        bump(unreadable_stat, 1);
    }
    h.stack_len = copied;
    h.missing_pieces = missing;
    if copied < want {
        h.flags |= sample_flags::SHORT;
    }
    // A CPython thread's Python frames, after the stack at a multiple of 8.
    let stack_room = (copied + 7) & !7;
    let stack_room = if stack_room > MAX_STACK_BYTES {
        MAX_STACK_BYTES
    } else {
        stack_room
    };
    let py = match py_slot {
        Some(slot) => python::copy_into(
            &mut rec.pages,
            skew as usize + stack_room as usize,
            slot,
            py_walked,
        ),
        None => 0,
    };
    h.py_frames = py;
    // The header goes over the dead stack below sp in page 0 (or, when sp
    // is page-aligned, in `head`), the prefix before it.
    let skew = (skew & (PAGE_BYTES - 1)) as usize;
    let head = if prefix.is_some() {
        MAX_HEADER_BYTES
    } else {
        SAMPLE_HEADER_BYTES
    };
    // SAFETY: head and pages are contiguous (repr(C), no padding between
    // u8 arrays), and skew + MAX_HEADER_BYTES ≤ size_of::<Record>().
    let start = unsafe { (rec as *mut Record as *mut u8).add(skew + MAX_HEADER_BYTES - head) };
    // SAFETY: as above; the headers are plain integers, written unaligned.
    unsafe {
        if let Some(p) = prefix {
            core::ptr::write_unaligned(start as *mut loadgen_ebpf_common::CopyHeader, p);
        }
        core::ptr::write_unaligned(
            start.add(head - SAMPLE_HEADER_BYTES) as *mut SampleHeader,
            h,
        );
    }
    let body = if py > 0 {
        stack_room as usize + (py as usize & (MAX_PY_FRAMES - 1)) * PY_FRAME_BYTES
    } else {
        (copied & (2 * MAX_STACK_BYTES - 1)) as usize
    };
    let size = head + body;
    if size > head + MAX_STACK_BYTES as usize + PY_BYTES {
        return None;
    }
    // SAFETY: skew + MAX_HEADER_BYTES − head + size ≤ PAGE + MAX_HEADER +
    // MAX_STACK_BYTES + PY_BYTES = size_of::<Record>(), checked just above.
    Some(unsafe { core::slice::from_raw_parts(start as *const u8, size) })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
