//! Python stacks read from user space: the thread states of the main
//! interpreter and each one's chain of `_PyInterpreterFrame`s. The BPF
//! sampler walks the same chain at sample time; this is its reference
//! (proven against `py-spy dump`) and what names the code objects.

use std::collections::HashMap;
use std::sync::Arc;

use super::code::CodeInfo;
use super::detect::Interpreter;
use super::layout::Layout;
use super::memory::Memory;

/// One entry of a Python stack, as the BPF side sends it too: a frame, or
/// (`code == 0`) a boundary between eval calls.
pub use loadgen_ebpf_common::PyFrame as RawFrame;

const BOUNDARY: RawFrame = RawFrame { code: 0, instr: 0 };

/// Entries read per stack at most (the BPF side has the same bound).
pub const MAX_FRAMES: usize = loadgen_ebpf_common::MAX_PY_FRAMES;
/// Thread states walked at most.
const MAX_THREADS: usize = 4096;

/// (native thread id, thread state address) of the main interpreter's
/// threads.
pub fn threads(mem: &impl Memory, py: &Interpreter) -> Vec<(u64, u64)> {
    let l = &py.layout;
    let mut out = Vec::new();
    let Some(interp) = mem.u64(py.runtime + l.runtime_interpreters_head) else {
        return out;
    };
    let mut t = mem.u64(interp + l.interp_threads_head).unwrap_or(0);
    while t != 0 && out.len() < MAX_THREADS {
        let Some(tid) = mem.u64(t + l.tstate_native_thread_id) else {
            break;
        };
        out.push((tid, t));
        t = mem.u64(t + l.tstate_next).unwrap_or(0);
    }
    out
}

/// The innermost frame of a thread (0: none, the thread runs no Python).
pub fn current_frame(mem: &impl Memory, l: &Layout, tstate: u64) -> u64 {
    let first = mem.u64(tstate + l.tstate_cframe).unwrap_or(0);
    match l.cframe_current_frame {
        None => first,
        Some(_) if first == 0 => 0,
        Some(off) => mem.u64(first + off).unwrap_or(0),
    }
}

/// Walks a frame chain from `frame`, innermost first, with boundaries.
pub fn frames(mem: &impl Memory, l: &Layout, mut frame: u64) -> Vec<RawFrame> {
    let mut out = Vec::new();
    while frame != 0 && out.len() < MAX_FRAMES {
        let (Some(code), Some(instr), Some(owner)) = (
            mem.u64(frame + l.frame_code),
            mem.u64(frame + l.frame_prev_instr),
            mem.u8(frame + l.frame_owner),
        ) else {
            break;
        };
        if l.owner_cstack == Some(owner) {
            out.push(BOUNDARY);
        } else if code != 0 {
            out.push(RawFrame { code, instr });
            if let Some(off) = l.frame_is_entry
                && mem.u8(frame + off).is_some_and(|e| e != 0)
            {
                out.push(BOUNDARY);
            }
        }
        frame = mem.u64(frame + l.frame_previous).unwrap_or(0);
    }
    out
}

/// Names frames, reading each code object once.
#[derive(Debug)]
pub struct Resolver {
    layout: Layout,
    codes: HashMap<u64, Option<Arc<CodeInfo>>>,
}

impl Resolver {
    pub fn new(layout: Layout) -> Resolver {
        Resolver {
            layout,
            codes: HashMap::new(),
        }
    }

    /// Code objects read so far.
    pub fn codes_read(&self) -> usize {
        self.codes.len()
    }

    /// `function (file.py:line)` of a frame; None for a boundary or a code
    /// object that cannot be read.
    pub fn name(&mut self, mem: &impl Memory, f: RawFrame) -> Option<String> {
        if f.code == 0 {
            return None;
        }
        let l = self.layout;
        let code = self
            .codes
            .entry(f.code)
            .or_insert_with(|| CodeInfo::read(mem, &l, f.code).map(Arc::new))
            .as_ref()?;
        let offset = f.instr as i64 - (f.code + l.code_bytecode) as i64;
        Some(code.frame_name(code.line_at(offset)))
    }
}

/// Every thread's Python stack, innermost frame first, as names: what
/// `py-spy dump` prints.
pub fn dump(mem: &impl Memory, py: &Interpreter) -> Vec<(u64, Vec<String>)> {
    let mut resolver = Resolver::new(py.layout);
    threads(mem, py)
        .into_iter()
        .map(|(tid, t)| {
            let raw = frames(mem, &py.layout, current_frame(mem, &py.layout, t));
            let names = raw
                .into_iter()
                .filter_map(|f| resolver.name(mem, f))
                .collect();
            (tid, names)
        })
        .collect()
}
