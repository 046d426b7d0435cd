//! Python functions in the profile of a CPython target, as py-spy shows
//! them, with no change to the target: find the interpreter and its
//! version (`detect`), know where each version keeps its state
//! (`layout`), read the frames of its threads (`walk`, over `memory`) and
//! name their code objects (`code`).

pub mod code;
pub mod detect;
pub mod layout;
pub mod memory;
pub mod walk;

pub use detect::{Detected, Interpreter, detect};

/// Every thread's Python stack in a live process (innermost frame first),
/// or why there is none.
pub fn dump(pid: u32) -> Result<Vec<(u64, Vec<String>)>, String> {
    match detect(pid) {
        Detected::Python(py) => Ok(walk::dump(&memory::ProcessMemory { pid }, &py)),
        Detected::Unsupported(why) => Err(why),
        Detected::NotPython => Err(format!("process {pid} is not CPython")),
    }
}
