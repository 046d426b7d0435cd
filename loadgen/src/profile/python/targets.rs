//! The CPython targets of one profile, on the reader thread: each one's
//! interpreter and code-object names, the table of Python frame names
//! the stacks refer to, and what naming cost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use loadgen_ebpf_common::{PY_NONE, PyConfig, PyFrame};

use super::detect::Interpreter;
use super::memory::ProcessMemory;
use super::merge::{self, tag};
use super::walk::{RawFrame, Resolver};

/// Name of a frame whose code object could not be read (the process
/// exited, or the frame was being torn down).
pub const UNREADABLE: &str = "[python]";

#[derive(Debug)]
struct Target {
    py: Interpreter,
    resolver: Resolver,
}

/// What naming Python frames cost and found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PythonCounts {
    /// Samples with Python frames merged into their native stack.
    pub stacks: u64,
    pub frames: u64,
    /// Code objects read (once each), and frames that could not be named.
    pub code_objects: u64,
    pub unreadable: u64,
    /// Reader-thread time spent naming and merging.
    pub time: Duration,
}

#[derive(Debug, Default)]
pub struct PythonTargets {
    targets: HashMap<u32, Target>,
    /// Name of tagged id i + 1.
    pub names: Vec<String>,
    by_name: HashMap<String, u32>,
    /// (pid, code, instr) → tagged frame.
    frames: HashMap<(u32, u64, u64), u64>,
    pub counts: PythonCounts,
}

/// The kernel side's walk settings for an interpreter.
pub fn bpf_config(py: &Interpreter) -> PyConfig {
    let l = &py.layout;
    PyConfig {
        interpreters_head: py.runtime + l.runtime_interpreters_head,
        interp_threads_head: l.interp_threads_head as u32,
        tstate_next: l.tstate_next as u32,
        tstate_native_thread_id: l.tstate_native_thread_id as u32,
        tstate_cframe: l.tstate_cframe as u32,
        cframe_current_frame: l.cframe_current_frame.map_or(PY_NONE, |o| o as u32),
        frame_code: l.frame_code as u32,
        frame_previous: l.frame_previous as u32,
        frame_prev_instr: l.frame_prev_instr as u32,
        frame_owner: l.frame_owner as u32,
        frame_is_entry: l.frame_is_entry.map_or(PY_NONE, |o| o as u32),
        owner_cstack: l.owner_cstack.map_or(PY_NONE, u32::from),
        _pad: 0,
    }
}

impl PythonTargets {
    pub fn add(&mut self, py: Interpreter) {
        let resolver = Resolver::new(py.layout);
        self.targets.insert(py.pid, Target { py, resolver });
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The name of a tagged frame.
    pub fn name(&self, tagged: u64) -> &str {
        merge::id_of(tagged)
            .checked_sub(1)
            .and_then(|i| self.names.get(i))
            .map_or(UNREADABLE, String::as_str)
    }

    fn intern(&mut self, name: String) -> u64 {
        if let Some(&id) = self.by_name.get(&name) {
            return tag(id);
        }
        self.names.push(name.clone());
        let id = self.names.len() as u32;
        self.by_name.insert(name, id);
        tag(id)
    }

    /// A sample's native stack (innermost first) with its Python frames
    /// in place of the eval frames they ran in. Unchanged for a process
    /// that is not a CPython target or a sample without Python frames.
    pub fn merge(&mut self, pid: u32, native: Vec<u64>, python: &[PyFrame]) -> Vec<u64> {
        if python.is_empty() || !self.targets.contains_key(&pid) {
            return native;
        }
        let started = Instant::now();
        let mut tagged = Vec::with_capacity(python.len());
        for f in python {
            if f.code == 0 {
                tagged.push(None);
                continue;
            }
            let t = match self.frames.get(&(pid, f.code, f.instr)) {
                Some(&t) => t,
                None => {
                    let target = self.targets.get_mut(&pid).expect("checked above");
                    let before = target.resolver.codes_read();
                    let raw = RawFrame {
                        code: f.code,
                        instr: f.instr,
                    };
                    let name = target.resolver.name(&ProcessMemory { pid }, raw);
                    self.counts.code_objects += (target.resolver.codes_read() - before) as u64;
                    let t = match name {
                        Some(n) => self.intern(n),
                        None => {
                            self.counts.unreadable += 1;
                            self.intern(UNREADABLE.to_string())
                        }
                    };
                    self.frames.insert((pid, f.code, f.instr), t);
                    t
                }
            };
            tagged.push(Some(t));
            self.counts.frames += 1;
        }
        let eval = &self.targets[&pid].py.eval;
        let out = merge::merge(&native, &merge::groups(tagged.into_iter()), eval);
        self.counts.stacks += 1;
        self.counts.time += started.elapsed();
        out
    }
}
