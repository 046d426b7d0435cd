//! Code objects → `function (file.py:line)`: the name, file and line
//! table of a `PyCodeObject` read once per code object, and the line of
//! an instruction from the table (the PEP 657 location table of 3.11 and
//! 3.12, decoded as CPython's `PyCode_Addr2Line` does).

use super::layout::{self, Layout};
use super::memory::Memory;

/// Longest name or file name read (a corrupt length must not make us
/// read megabytes).
const MAX_STRING: u64 = 4096;
/// Longest line table read; longer ones give the function's first line.
const MAX_LINETABLE: u64 = 1 << 20;

/// What a code object says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    pub name: String,
    pub file: String,
    pub first_line: u32,
    pub linetable: Vec<u8>,
}

impl CodeInfo {
    /// Reads the code object at `addr`; None if it is not readable or not
    /// a code object any more (a frame being torn down).
    pub fn read(mem: &impl Memory, l: &Layout, addr: u64) -> Option<CodeInfo> {
        let name = read_str(mem, l, mem.u64(addr + l.code_qualname)?)?;
        let file = read_str(mem, l, mem.u64(addr + l.code_filename)?)?;
        let first_line = mem.u32(addr + l.code_firstlineno)?;
        let linetable = read_bytes(mem, mem.u64(addr + l.code_linetable)?).unwrap_or_default();
        Some(CodeInfo {
            name,
            file,
            first_line,
            linetable,
        })
    }

    /// The line of the instruction at byte `offset` into the bytecode,
    /// the function's first line when the table does not say.
    pub fn line_at(&self, offset: i64) -> u32 {
        if offset < 0 {
            return self.first_line;
        }
        line_for(&self.linetable, self.first_line as i64, offset as u64)
            .filter(|&l| l > 0)
            .map_or(self.first_line, |l| l as u32)
    }

    /// `name (file:line)`, as py-spy names a frame.
    pub fn frame_name(&self, line: u32) -> String {
        format!("{} ({}:{line})", self.name, short_file(&self.file))
    }
}

/// A file name without the interpreter's library directory or a
/// site-packages prefix (`json/encoder.py`, not
/// `/usr/lib/python3.11/json/encoder.py`), else as the code object says it.
pub fn short_file(file: &str) -> &str {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(i) = file.rfind(marker) {
            return &file[i + marker.len()..];
        }
    }
    if let Some(i) = file.rfind("/lib/python") {
        let rest = &file[i + "/lib/python".len()..];
        if let Some(j) = rest.find('/') {
            return &rest[j + 1..];
        }
    }
    file
}

/// A `str` object's text: compact strings only (every identifier and
/// file name of a code object is one).
pub fn read_str(mem: &impl Memory, l: &Layout, addr: u64) -> Option<String> {
    let len = mem.u64(addr + layout::UNICODE_LENGTH)?;
    let state = mem.u32(addr + layout::UNICODE_STATE)?;
    let kind = (state >> 2) & 7;
    let compact = state >> 5 & 1 == 1;
    let ascii = state >> 6 & 1 == 1;
    if !compact || len > MAX_STRING || !matches!(kind, 1 | 2 | 4) {
        return None;
    }
    let data = if ascii { l.ascii_data } else { l.compact_data };
    let mut buf = vec![0u8; len as usize * kind as usize];
    if !mem.read(addr + data, &mut buf) {
        return None;
    }
    Some(match kind {
        1 => buf.iter().map(|&b| b as char).collect(),
        2 => buf
            .chunks_exact(2)
            .map(|c| char::from_u32(u16::from_ne_bytes([c[0], c[1]]) as u32).unwrap_or('?'))
            .collect(),
        _ => buf
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('?'))
            .collect(),
    })
}

fn read_bytes(mem: &impl Memory, addr: u64) -> Option<Vec<u8>> {
    let len = mem.u64(addr + layout::BYTES_SIZE)?;
    if len > MAX_LINETABLE {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    mem.read(addr + layout::BYTES_DATA, &mut buf).then_some(buf)
}

/// The line of byte `offset` of the bytecode in a location table whose
/// lines start at `first`: entries cover 1–8 code units each; the first
/// byte of an entry holds its kind (bits 3–6) and length − 1 (bits 0–2).
fn line_for(table: &[u8], first: i64, offset: u64) -> Option<i64> {
    let mut line = first;
    let mut addr: u64 = 0;
    let mut i = 0;
    while i < table.len() {
        let byte = table[i];
        i += 1;
        let end = addr + ((byte & 7) as u64 + 1) * 2;
        let code = (byte >> 3) & 15;
        let (delta, no_line) = match code {
            15 => (0, true),
            14 => {
                let d = signed_varint(table, &mut i)?;
                for _ in 0..3 {
                    varint(table, &mut i)?;
                }
                (d, false)
            }
            13 => (signed_varint(table, &mut i)?, false),
            10..=12 => {
                i += 2;
                (code as i64 - 10, false)
            }
            _ => {
                i += 1;
                (0, false)
            }
        };
        line += delta;
        if offset < end {
            return (!no_line).then_some(line);
        }
        addr = end;
    }
    None
}

fn varint(table: &[u8], i: &mut usize) -> Option<u64> {
    let mut byte = *table.get(*i)?;
    *i += 1;
    let mut value = (byte & 63) as u64;
    let mut shift = 0;
    while byte & 64 != 0 {
        byte = *table.get(*i)?;
        *i += 1;
        shift += 6;
        if shift > 60 {
            return None;
        }
        value |= ((byte & 63) as u64) << shift;
    }
    Some(value)
}

fn signed_varint(table: &[u8], i: &mut usize) -> Option<i64> {
    let v = varint(table, i)?;
    Some(if v & 1 == 1 {
        -((v >> 1) as i64)
    } else {
        (v >> 1) as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `co_linetable` of
    /// ```python
    /// def f(n):        # line 1
    ///     x = 0        # line 2
    ///     for i in range(n):
    ///         x += i   # line 4
    ///     return x
    /// ```
    /// as CPython 3.11.7 built it (`f.__code__.co_linetable`), with the
    /// lines of its instructions, by byte offset.
    const TABLE: &[u8] = b"\x80\x00\xd8\x08\t\x80A\xdd\r\x12\x901\x89X\x8cX\xf0\x00\x01\x05\x0f\xf0\x00\x01\x05\x0f\x88\x01\xd8\x08\t\x88Q\x89\x06\x88\x01\x88\x01\xd8\x0b\x0c\x80H";

    #[test]
    fn lines_of_a_loop_follow_co_lines() {
        // co_lines(): (start, end, line).
        let expected = [(0, 2, 1), (2, 6, 2), (6, 40, 3), (40, 52, 4), (52, 56, 5)];
        for (start, end, line) in expected {
            for off in (start..end).step_by(2) {
                assert_eq!(line_for(TABLE, 1, off), Some(line), "offset {off}");
            }
        }
        assert_eq!(line_for(TABLE, 1, 56), None);
    }

    #[test]
    fn a_new_frame_or_an_offset_past_the_table_gives_the_first_line() {
        let c = CodeInfo {
            name: "f".into(),
            file: "/srv/app.py".into(),
            first_line: 7,
            linetable: vec![],
        };
        assert_eq!(c.line_at(-2), 7);
        assert_eq!(c.line_at(100), 7);
        assert_eq!(c.frame_name(9), "f (/srv/app.py:9)");
    }

    #[test]
    fn library_paths_are_shortened_like_py_spy() {
        assert_eq!(
            short_file("/usr/lib/python3.11/json/encoder.py"),
            "json/encoder.py"
        );
        assert_eq!(
            short_file("/usr/lib/python3/dist-packages/requests/api.py"),
            "requests/api.py"
        );
        assert_eq!(short_file("/srv/app.py"), "/srv/app.py");
    }
}
