//! Kernel side of loadgen's profiler: a `perf_event` program, attached to
//! the software cpu-clock event on every CPU, that keeps samples of the
//! target processes only and aggregates them in the kernel: one counter
//! per (tgid, user stack, kernel stack). User space reads the maps once,
//! at the end of the measured window.
//!
//! Built for `bpfel-unknown-none` with nightly and bpf-linker by
//! `cargo xtask ebpf`; the object is committed and embedded by `loadgen`.
#![no_std]
#![no_main]

use aya_ebpf::EbpfContext;
use aya_ebpf::bindings::BPF_F_USER_STACK;
use aya_ebpf::macros::{map, perf_event};
use aya_ebpf::maps::{HashMap, PerCpuArray, PerCpuHashMap, StackTrace};
use aya_ebpf::programs::PerfEventContext;
use aya_ebpf::programs::tracing::StackIdContext;
use loadgen_ebpf_common::{COUNT_ENTRIES, MAX_TARGETS, STACK_ENTRIES, StackKey, stat};

/// Process ids (tgids) to sample, filled by user space.
#[map]
static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(STACK_ENTRIES, 0);

/// Sample counts. Per-CPU values: each CPU increments its own slot, so
/// no count is lost without atomics; user space sums the CPUs.
#[map]
static COUNTS: PerCpuHashMap<StackKey, u64> = PerCpuHashMap::with_max_entries(COUNT_ENTRIES, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::LEN, 0);

const EEXIST: i32 = 17;

#[inline(always)]
fn bump(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, only this CPU writes it, and the program
        // is not re-entered on a CPU.
        unsafe { *p += 1 };
    }
}

#[perf_event]
pub fn sample(ctx: PerfEventContext) -> u32 {
    let tgid = ctx.tgid();
    // SAFETY: a read-only lookup; the value is not kept.
    if unsafe { TARGETS.get(&tgid) }.is_none() {
        return 0;
    }
    bump(stat::SAMPLES);
    let user = match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => id as i32,
        Err(e) => {
            bump(if e == -EEXIST {
                stat::USER_COLLISION
            } else {
                stat::USER_MISSING
            });
            -1
        }
    };
    let kernel = match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as i32,
        Err(e) => {
            bump(if e == -EEXIST {
                stat::KERNEL_COLLISION
            } else {
                stat::KERNEL_NONE
            });
            -1
        }
    };
    let key = StackKey {
        tgid,
        user_stack_id: user,
        kernel_stack_id: kernel,
        _pad: 0,
    };
    if let Some(count) = COUNTS.get_ptr_mut(&key) {
        // SAFETY: this CPU's slot of a live map value; a BPF program is not
        // re-entered on the same CPU.
        unsafe { *count += 1 };
        return 0;
    }
    // A new key: the per-CPU insert sets this CPU's slot (others start at
    // zero), so a race with another CPU inserting the same key loses
    // nothing either.
    if COUNTS.insert(&key, &1, 0).is_ok() {
        return 0;
    }
    bump(stat::MAP_FULL);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
