//! CPython frames at sample time: for a target user space found to be
//! CPython (`PY_TARGETS`), find the sampled thread's `PyThreadState` (its
//! `native_thread_id` is the thread id; remembered per thread in
//! `PY_THREADS`, checked on every use), then walk its
//! `_PyInterpreterFrame` chain from the current frame, recording each
//! frame's code object and instruction pointer and where one
//! `_PyEval_EvalFrameDefault` call's frames end. User space names the code
//! objects and puts the frames in place of the native eval frames.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use aya_ebpf::helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_user};
use aya_ebpf::macros::map;
use aya_ebpf::maps::{HashMap, LruHashMap, PerCpuArray};
use loadgen_ebpf_common::{
    MAX_PY_FRAMES, MAX_PY_THREADS, MAX_TARGETS, PY_FRAME_BYTES, PY_FRAME_READ, PY_NONE,
    PY_THREAD_ENTRIES, PyConfig, stat,
};

use crate::bump;

/// CPython targets (tgid → where and how to walk), filled by user space.
#[map]
pub(crate) static PY_TARGETS: HashMap<u32, PyConfig> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Thread id → its thread state's address.
#[map]
static PY_THREADS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(PY_THREAD_ENTRIES, 0);

/// Words of the frame buffer: a power of two, so that a field's index is
/// masked into it. A compare would do in C; here the compiler hoists the
/// field's address out of the loop, away from the compare, and the
/// verifier then sees an unbounded stack offset. The read fills the first
/// PY_FRAME_READ bytes; the rest stays zero.
const FRAME_WORDS: usize = 16;
const _: () = assert!(PY_FRAME_READ <= FRAME_WORDS * 8);

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user checks the address and fails cleanly.
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(addr as *const u64) }.ok()
}

/// The current thread's `PyThreadState` (0: not found). Not inlined: its
/// many exits (one per thread state looked at) then return to one place,
/// so the verifier checks the frame walk after it once, not once per exit.
#[inline(never)]
fn thread_state(cfg: &PyConfig, tid: u32) -> u64 {
    // SAFETY: a read-only lookup; the value is copied out at once.
    if let Some(&t) = unsafe { PY_THREADS.get(&tid) }
        && read_u64(t + cfg.tstate_native_thread_id as u64) == Some(tid as u64)
    {
        return t;
    }
    let Some(interp) = read_u64(cfg.interpreters_head) else {
        return 0;
    };
    let mut t = read_u64(interp + cfg.interp_threads_head as u64).unwrap_or(0);
    let mut i = 0;
    while i < MAX_PY_THREADS {
        if t == 0 {
            return 0;
        }
        if read_u64(t + cfg.tstate_native_thread_id as u64) == Some(tid as u64) {
            let _ = PY_THREADS.insert(&tid, &t, 0);
            return t;
        }
        t = read_u64(t + cfg.tstate_next as u64).unwrap_or(0);
        i += 1;
    }
    0
}

/// A field of a frame read as words: a whole word at a multiple of 8, or
/// a byte.
#[inline(always)]
fn word(words: &[u64; FRAME_WORDS], off: u32) -> u64 {
    words[(off / 8) as usize & (FRAME_WORDS - 1)]
}

#[inline(always)]
fn byte(words: &[u64; FRAME_WORDS], off: u32) -> u8 {
    (word(words, off) >> ((off % 8) * 8)) as u8
}

/// A Python stack being walked, before it is copied after the stack in
/// the record: entries, and their count.
#[repr(C)]
pub(crate) struct PyScratch {
    n: u32,
    _pad: u32,
    frames: [u8; PY_BYTES],
}

/// Per CPU, one entry per program that may walk (the sampler, and the
/// scheduler programs' two slots, which can nest).
#[map]
static PY_SCRATCH: PerCpuArray<PyScratch> = PerCpuArray::with_max_entries(3, 0);

/// Walks the current thread's Python stack into scratch entry `slot`;
/// returns how many entries. `tgid` is the sampled process.
///
/// Kept cheap to verify: called where the program has one state (before
/// the stack copy, whose page loop leaves many); not inlined, so every way
/// out returns to one place; the count lives in map memory, which the
/// verifier does not track (as a register it knows each value exactly and
/// checks every mix of frames and boundaries as its own path); and a loop
/// turn writes its entries without branching on the count.
#[inline(never)]
pub(crate) fn walk(tgid: u32, slot: u32) -> u32 {
    // SAFETY: a read-only lookup; the value is copied out at once.
    let Some(cfg) = (unsafe { PY_TARGETS.get(&tgid) }).copied() else {
        return 0;
    };
    let Some(scratch) = PY_SCRATCH.get_ptr_mut(slot) else {
        return 0;
    };
    // SAFETY: this CPU's entry for this program: nothing else writes it
    // until the record is sent.
    let scratch = unsafe { &mut *scratch };
    let count = &mut scratch.n as *mut u32;
    // SAFETY: map memory, aligned; volatile keeps the count there.
    unsafe { core::ptr::write_volatile(count, 0) };
    let tid = bpf_get_current_pid_tgid() as u32;
    let t = thread_state(&cfg, tid);
    if t == 0 {
        bump(stat::PY_NO_THREAD, 1);
        return 0;
    }
    let cframe = read_u64(t + cfg.tstate_cframe as u64).unwrap_or(0);
    let mut frame = if cframe == 0 {
        0
    } else {
        read_u64(cframe + cfg.cframe_current_frame as u64).unwrap_or(0)
    };
    let mut words = [0u64; FRAME_WORDS];
    let mut i = 0;
    while i < MAX_PY_FRAMES {
        // SAFETY: as above.
        let n = unsafe { core::ptr::read_volatile(count) } as usize;
        // Room for a frame and a boundary, below MAX_PY_FRAMES.
        if frame == 0 || n + 2 >= MAX_PY_FRAMES {
            break;
        }
        // SAFETY: the destination is our stack array, larger than
        // PY_FRAME_READ bytes; the helper checks the user address.
        let r = unsafe {
            bpf_probe_read_user(
                words.as_mut_ptr() as *mut c_void,
                PY_FRAME_READ as u32,
                frame as *const c_void,
            )
        };
        if r < 0 {
            break;
        }
        let code = word(&words, cfg.frame_code);
        let owner = byte(&words, cfg.frame_owner) as u32;
        let shim = cfg.owner_cstack != PY_NONE && owner == cfg.owner_cstack;
        let entry = cfg.frame_is_entry != PY_NONE && byte(&words, cfg.frame_is_entry) != 0;
        let is_frame = !shim && code != 0;
        let boundary = shim || (is_frame && entry);
        let instr = word(&words, cfg.frame_prev_instr);
        put(&mut scratch.frames, n, code, instr);
        let n = n + is_frame as usize;
        put(&mut scratch.frames, n, 0, 0);
        let n = n + boundary as usize;
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(count, n as u32) };
        frame = word(&words, cfg.frame_previous);
        i += 1;
    }
    if frame != 0 {
        bump(stat::PY_TRUNCATED, 1);
    }
    // SAFETY: as above.
    let n = unsafe { core::ptr::read_volatile(count) };
    if n > 0 {
        bump(stat::PY_STACKS, 1);
        bump(stat::PY_FRAMES, n as u64);
    }
    n
}

/// Copies `n` entries walked into scratch entry `slot` to `out[at..]`;
/// returns how many it copied (0 if they do not fit).
#[inline(always)]
pub(crate) fn copy_into(out: &mut [u8], at: usize, slot: u32, n: u32) -> u32 {
    let n = n as usize & (MAX_PY_FRAMES - 1);
    if n == 0 || at > out.len() - PY_BYTES {
        return 0;
    }
    let Some(scratch) = PY_SCRATCH.get_ptr(slot) else {
        return 0;
    };
    // SAFETY: at + n * 16 ≤ at + PY_BYTES ≤ out.len() (checked above);
    // the source is this CPU's scratch entry, PY_BYTES long.
    let r = unsafe {
        bpf_probe_read_kernel(
            out.as_mut_ptr().add(at) as *mut c_void,
            (n * PY_FRAME_BYTES) as u32,
            (*scratch).frames.as_ptr() as *const c_void,
        )
    };
    if r < 0 { 0 } else { n as u32 }
}

/// Bytes of the Python entries' area after the stack.
pub(crate) const PY_BYTES: usize = MAX_PY_FRAMES * PY_FRAME_BYTES;

/// Writes entry `n` (masked into the area).
#[inline(always)]
fn put(out: &mut [u8; PY_BYTES], n: usize, code: u64, instr: u64) {
    let p = (n & (MAX_PY_FRAMES - 1)) * PY_FRAME_BYTES;
    // SAFETY: p + 16 ≤ PY_BYTES, and the area starts 8 bytes into its
    // (8-aligned) map value, so both words are aligned. Volatile: two zero
    // words would otherwise become a call to memset, which made the
    // verifier walk the loop's paths apart again.
    unsafe {
        let dst = out.as_mut_ptr().add(p);
        core::ptr::write_volatile(dst as *mut u64, code);
        core::ptr::write_volatile(dst.add(8) as *mut u64, instr);
    }
}
