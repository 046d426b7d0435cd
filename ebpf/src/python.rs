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
use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel, bpf_probe_read_user};
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

/// A search of the interpreter's thread list, as `bpf_loop` steps.
#[repr(C)]
struct ThreadSearch {
    /// The thread state looked at next (0: the list ended).
    t: u64,
    tid: u64,
    native_thread_id: u64,
    next: u64,
    found: u64,
}

/// One thread state of the list: stops at the one running `tid`.
extern "C" fn thread_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the ThreadSearch on thread_state's stack.
    let s = unsafe { &mut *(ctx as *mut ThreadSearch) };
    if s.t == 0 {
        return 1;
    }
    if read_u64(s.t + s.native_thread_id) == Some(s.tid) {
        s.found = s.t;
        return 1;
    }
    s.t = read_u64(s.t + s.next).unwrap_or(0);
    0
}

/// The current thread's `PyThreadState` (0: not found).
#[inline(always)]
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
    let mut s = ThreadSearch {
        t: read_u64(interp + cfg.interp_threads_head as u64).unwrap_or(0),
        tid: tid as u64,
        native_thread_id: cfg.tstate_native_thread_id as u64,
        next: cfg.tstate_next as u64,
        found: 0,
    };
    // SAFETY: the callback has bpf_loop's signature and takes `s`, which
    // lives until bpf_loop returns.
    unsafe {
        bpf_loop(
            MAX_PY_THREADS,
            thread_step as *const () as *mut c_void,
            &mut s as *mut ThreadSearch as *mut c_void,
            0,
        )
    };
    if s.found != 0 {
        let _ = PY_THREADS.insert(&tid, &s.found, 0);
    }
    s.found
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

/// A frame walk, as `bpf_loop` steps.
#[repr(C)]
struct FrameWalk {
    cfg: PyConfig,
    /// The frame read next (0: the chain ended).
    frame: u64,
    out: *mut PyScratch,
}

/// One `_PyInterpreterFrame`: its entry (code object, instruction), and a
/// boundary entry after it where one eval call's frames end.
///
/// The count lives in map memory, which the verifier does not track: as a
/// register or on the stack it knows each value exactly, and checks each
/// one as a loop state of its own (a plain loop took >1M instructions).
extern "C" fn frame_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the FrameWalk on walk's stack.
    let w = unsafe { &mut *(ctx as *mut FrameWalk) };
    // SAFETY: this CPU's scratch entry (walk checked the lookup); nothing
    // else writes it until the record is sent.
    let scratch = unsafe { &mut *w.out };
    let count = &mut scratch.n as *mut u32;
    // SAFETY: map memory, aligned; volatile keeps the count there.
    let n = unsafe { core::ptr::read_volatile(count) } as usize;
    // Room for a frame and a boundary, below MAX_PY_FRAMES.
    if w.frame == 0 || n + 2 >= MAX_PY_FRAMES {
        return 1;
    }
    let cfg = &w.cfg;
    let mut words = [0u64; FRAME_WORDS];
    // SAFETY: the destination is our stack array, larger than
    // PY_FRAME_READ bytes; the helper checks the user address.
    let r = unsafe {
        bpf_probe_read_user(
            words.as_mut_ptr() as *mut c_void,
            PY_FRAME_READ as u32,
            w.frame as *const c_void,
        )
    };
    if r < 0 {
        return 1;
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
    w.frame = word(&words, cfg.frame_previous);
    0
}

/// Walks the current thread's Python stack into scratch entry `slot`;
/// returns how many entries. `tgid` is the sampled process.
///
/// Both walks are `bpf_loop` callbacks: the verifier checks a callback's
/// body until its states repeat, not once per turn, so the walk adds
/// milliseconds to loading, not seconds, and fits in the scheduler
/// programs too.
#[inline(always)]
pub(crate) fn walk(tgid: u32, slot: u32) -> u32 {
    // SAFETY: a read-only lookup; the value is copied out at once.
    let Some(cfg) = (unsafe { PY_TARGETS.get(&tgid) }).copied() else {
        return 0;
    };
    let Some(scratch) = PY_SCRATCH.get_ptr_mut(slot) else {
        return 0;
    };
    // SAFETY: map memory, aligned; volatile keeps the count there.
    unsafe { core::ptr::write_volatile(&mut (*scratch).n as *mut u32, 0) };
    let tid = bpf_get_current_pid_tgid() as u32;
    let t = thread_state(&cfg, tid);
    if t == 0 {
        bump(stat::PY_NO_THREAD, 1);
        return 0;
    }
    let cframe = read_u64(t + cfg.tstate_cframe as u64).unwrap_or(0);
    // 3.13 keeps the frame in the thread state itself (no `_PyCFrame`).
    let frame = if cframe == 0 || cfg.cframe_current_frame == PY_NONE {
        cframe
    } else {
        read_u64(cframe + cfg.cframe_current_frame as u64).unwrap_or(0)
    };
    let mut w = FrameWalk {
        cfg,
        frame,
        out: scratch,
    };
    // SAFETY: as in thread_state.
    unsafe {
        bpf_loop(
            MAX_PY_FRAMES as u32,
            frame_step as *const () as *mut c_void,
            &mut w as *mut FrameWalk as *mut c_void,
            0,
        )
    };
    if w.frame != 0 {
        bump(stat::PY_TRUNCATED, 1);
    }
    // SAFETY: as above.
    let n = unsafe { core::ptr::read_volatile(&(*scratch).n as *const u32) };
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
