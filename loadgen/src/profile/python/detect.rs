//! Is a process CPython, which version, and where is its runtime state?
//! The interpreter is the executable (Debian's `/usr/bin/python3.11`
//! links it statically) or a mapped `libpython3.X.so` (pyenv, conda).
//! Its dynamic symbols say the rest, so a stripped interpreter works as
//! long as it keeps them (it must: extension modules link against them):
//! `_PyRuntime` (the runtime state), `Py_Version` (`PY_VERSION_HEX`, 3.11
//! and later) and `_PyEval_EvalFrameDefault`, whose native frames the
//! Python frames replace.

use std::ops::Range;

use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

use super::layout::{self, Layout};
use crate::profile::maps::{self, Mapping};

/// A CPython process the profiler can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub pid: u32,
    pub version: (u8, u8, u8),
    pub layout: Layout,
    /// Address of `_PyRuntime` in the process.
    pub runtime: u64,
    /// Where `_PyEval_EvalFrameDefault` (and its `.cold` part, when the
    /// symbol table names it) lies in the process.
    pub eval: Vec<Range<u64>>,
    /// The file that holds the interpreter.
    pub object: String,
}

/// What detection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// No CPython in this process.
    NotPython,
    Python(Box<Interpreter>),
    /// CPython, but its frames cannot be read: why, in one line.
    Unsupported(String),
}

/// Symbols of the interpreter's file, as linked (before relocation).
#[derive(Debug, Default)]
struct Symbols {
    runtime: Option<u64>,
    /// The first bytes of `_PyRuntime`'s initial value (3.13: its
    /// `_Py_DebugOffsets`).
    runtime_head: Option<Vec<u8>>,
    version: Option<u32>,
    eval: Vec<Range<u64>>,
    /// Lowest PT_LOAD address, page-aligned (where offset 0 maps).
    base: u64,
}

fn read_symbols(path: &str) -> Option<Symbols> {
    let f = std::fs::File::open(path).ok()?;
    // SAFETY: a read-only private mapping of a file we only parse; a
    // concurrent truncation could fault, as for every ELF reader, and the
    // interpreter of a running process is not rewritten in place.
    let data = unsafe { memmap2::Mmap::map(&f) }.ok()?;
    let elf = ElfFile64::<Endianness>::parse(&*data).ok()?;
    let endian = elf.endian();
    let base = elf
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
        .map(|p| p.p_vaddr(endian) & !0xfff)
        .min()?;
    let mut s = Symbols {
        base,
        ..Default::default()
    };
    for sym in elf.dynamic_symbols().chain(elf.symbols()) {
        let Ok(name) = sym.name() else { continue };
        match name {
            "_PyRuntime" => {
                s.runtime = Some(sym.address());
                s.runtime_head = elf.sections().find_map(|sec| {
                    let a = sym.address().checked_sub(sec.address())? as usize;
                    let bytes = sec.data().ok()?;
                    bytes
                        .get(a..a + layout::DEBUG_OFFSETS_BYTES)
                        .map(<[u8]>::to_vec)
                });
            }
            "_PyEval_EvalFrameDefault" | "_PyEval_EvalFrameDefault.cold" if sym.size() > 0 => {
                let r = sym.address()..sym.address() + sym.size();
                if !s.eval.contains(&r) {
                    s.eval.push(r);
                }
            }
            "Py_Version" => {
                s.version = elf.sections().find_map(|sec| {
                    let a = sym.address().checked_sub(sec.address())?;
                    let bytes = sec.data().ok()?.get(a as usize..a as usize + 4)?;
                    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
                });
            }
            _ => {}
        }
    }
    Some(s)
}

/// `pythonX.Y` in a file name: the version of an interpreter too old to
/// have `Py_Version`.
fn version_in_name(path: &str) -> Option<(u8, u8)> {
    let base = path.rsplit('/').next()?;
    let i = base.find("python")?;
    let rest = &base[i + "python".len()..];
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn is_libpython(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|b| b.starts_with("libpython") && b.contains(".so"))
}

/// Looks at a live process.
pub fn detect(pid: u32) -> Detected {
    let Ok(mappings) = maps::read(pid) else {
        return Detected::NotPython;
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    detect_in(pid, &mappings, &exe)
}

fn detect_in(pid: u32, mappings: &[Mapping], exe: &str) -> Detected {
    // libpython first: with it, the executable is a small launcher.
    let mut candidates: Vec<&str> = mappings
        .iter()
        .filter(|m| m.is_file() && is_libpython(&m.path))
        .map(|m| m.path.as_str())
        .collect();
    candidates.dedup();
    candidates.push(exe);
    for path in candidates {
        let rooted = format!("/proc/{pid}/root{path}");
        let file = if std::fs::metadata(&rooted).is_ok() {
            rooted
        } else {
            path.to_string()
        };
        let named = version_in_name(path).filter(|v| v.0 == 3);
        let Some(syms) = read_symbols(&file) else {
            continue;
        };
        if syms.runtime.is_none() && syms.eval.is_empty() {
            if named.is_some() {
                return Detected::Unsupported(format!(
                    "{path} looks like CPython but has no _PyRuntime symbol (stripped of its dynamic symbols?)"
                ));
            }
            continue;
        }
        let version = match syms.version {
            Some(v) => ((v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8),
            None => match named {
                Some((a, b)) => (a, b, 0),
                None => {
                    return Detected::Unsupported(format!(
                        "cannot tell the CPython version of {path} (no Py_Version symbol)"
                    ));
                }
            },
        };
        let shown = if syms.version.is_some() {
            format!("{}.{}.{}", version.0, version.1, version.2)
        } else {
            format!("{}.{}", version.0, version.1)
        };
        let layout = match (version.0, version.1) {
            (3, 13) => match syms.runtime_head.as_deref().map(layout::from_debug_offsets) {
                Some(Ok(l)) => l,
                Some(Err(why)) => {
                    return Detected::Unsupported(format!("CPython {shown} ({path}): {why}"));
                }
                None => {
                    return Detected::Unsupported(format!(
                        "CPython {shown} ({path}): cannot read its _PyRuntime's initial value"
                    ));
                }
            },
            (a, b) => match layout::for_version(a, b) {
                Some(l) => l,
                None => {
                    return Detected::Unsupported(format!(
                        "CPython {shown} ({path}) is not supported (supported: {})",
                        layout::SUPPORTED
                    ));
                }
            },
        };
        let Some(runtime) = syms.runtime else {
            return Detected::Unsupported(format!(
                "CPython {shown} ({path}) has no _PyRuntime symbol (stripped of its dynamic symbols?)"
            ));
        };
        if syms.eval.is_empty() {
            return Detected::Unsupported(format!(
                "CPython {shown} ({path}) has no _PyEval_EvalFrameDefault symbol"
            ));
        }
        let Some(start) = mappings
            .iter()
            .filter(|m| m.path == path && m.offset == 0)
            .map(|m| m.start)
            .min()
        else {
            continue;
        };
        let bias = start.wrapping_sub(syms.base);
        return Detected::Python(Box::new(Interpreter {
            pid,
            version,
            layout,
            runtime: runtime.wrapping_add(bias),
            eval: syms
                .eval
                .iter()
                .map(|r| r.start.wrapping_add(bias)..r.end.wrapping_add(bias))
                .collect(),
            object: path.to_string(),
        }));
    }
    Detected::NotPython
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_libraries_from_names() {
        assert_eq!(version_in_name("/usr/bin/python3.11"), Some((3, 11)));
        assert_eq!(
            version_in_name("/opt/lib/libpython3.12.so.1.0"),
            Some((3, 12))
        );
        assert_eq!(version_in_name("/usr/bin/python3"), None);
        assert_eq!(version_in_name("/usr/sbin/nginx"), None);
        assert!(is_libpython("/opt/lib/libpython3.12.so.1.0"));
        assert!(!is_libpython("/usr/bin/python3.12"));
    }

    #[test]
    fn a_process_without_python_is_not_python() {
        let me = std::process::id();
        assert_eq!(detect(me), Detected::NotPython);
    }
}
