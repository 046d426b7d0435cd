//! Python functions in the profile of a CPython target, as py-spy shows
//! them, with no change to the target: find the interpreter and its
//! version (`detect`), know where each version keeps its state
//! (`layout`), read the frames of its threads (`walk`, over `memory`) and
//! name their code objects (`code`).

pub mod code;
pub mod detect;
pub mod layout;
pub mod memory;
pub mod merge;
pub mod targets;
pub mod walk;

pub use detect::{Detected, Interpreter, detect};
pub use targets::{PythonCounts, PythonTargets};

/// Whether to walk `pid`'s Python frames: its interpreter, or a line
/// saying why not (None, None: not CPython). `dwarf`: the target is
/// unwound in DWARF mode, whose stack copies carry the Python frames.
pub fn for_target(pid: u32, dwarf: bool) -> (Option<Interpreter>, Option<String>) {
    match detect(pid) {
        Detected::NotPython => (None, None),
        Detected::Unsupported(why) => (
            None,
            Some(format!(
                "process {pid}: {why}: its profile has native frames only (_PyEval_EvalFrameDefault, no Python functions)"
            )),
        ),
        Detected::Python(py) if !dwarf => {
            let (a, b, c) = py.version;
            (
                None,
                Some(format!(
                    "process {pid} is CPython {a}.{b}.{c}: its Python functions need DWARF unwinding (--unwind auto or dwarf); native frames only"
                )),
            )
        }
        Detected::Python(py) => (Some(*py), None),
    }
}

/// Every thread's Python stack in a live process (innermost frame first),
/// or why there is none.
pub fn dump(pid: u32) -> Result<Vec<(u64, Vec<String>)>, String> {
    match detect(pid) {
        Detected::Python(py) => Ok(walk::dump(&memory::ProcessMemory { pid }, &py)),
        Detected::Unsupported(why) => Err(why),
        Detected::NotPython => Err(format!("process {pid} is not CPython")),
    }
}
