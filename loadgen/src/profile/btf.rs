//! Where the scheduler programs find a task's ids: the byte offsets of
//! `pid` and `tgid` in `struct task_struct`, read from the kernel's own
//! type information (`/sys/kernel/btf/vmlinux`). aya-ebpf has no CO-RE
//! relocations, so the offsets are set as load-time constants instead.
//!
//! A minimal reader of the BTF format (linux/Documentation/bpf/btf.rst):
//! the header, the type section walked kind by kind, and the string
//! section. Plain bytes in, offsets out, so it is tested on BTF built in
//! the test.

/// `/sys/kernel/btf/vmlinux`.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error(
        "cannot read {0}: {1} (off-CPU profiling needs a kernel built with CONFIG_DEBUG_INFO_BTF)"
    )]
    Read(String, String),
    #[error("the kernel's BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(String),
    #[error("the kernel's BTF has no field {1} in struct {0}")]
    NoField(String, String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// The byte offsets of `pid` and `tgid` in `task_struct`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOffsets {
    pub pid: u32,
    pub tgid: u32,
}

/// Reads the running kernel's offsets.
pub fn task_offsets() -> Result<TaskOffsets, BtfError> {
    let data = std::fs::read(VMLINUX).map_err(|e| BtfError::Read(VMLINUX.into(), e.to_string()))?;
    task_offsets_in(&data)
}

pub fn task_offsets_in(data: &[u8]) -> Result<TaskOffsets, BtfError> {
    let fields = struct_fields(data, "task_struct", &["pid", "tgid"])?;
    Ok(TaskOffsets {
        pid: fields[0],
        tgid: fields[1],
    })
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn u32(&self, at: usize) -> Result<u32, BtfError> {
        self.data
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(BtfError::Malformed("truncated"))
    }

    fn str(&self, at: usize) -> Result<&str, BtfError> {
        let tail = self
            .data
            .get(at..)
            .ok_or(BtfError::Malformed("string offset out of range"))?;
        let end = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::Malformed("unterminated string"))?;
        std::str::from_utf8(&tail[..end]).map_err(|_| BtfError::Malformed("string not UTF-8"))
    }
}

/// Bytes after a type's 12-byte header, by kind (`vlen` entries for the
/// kinds that have them).
fn trailing_bytes(kind: u32, vlen: usize) -> Result<usize, BtfError> {
    Ok(match kind {
        // INT: one u32 of encoding.
        1 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
        // ARRAY: type, index type, count.
        3 => 12,
        // STRUCT, UNION: name, type, offset per member.
        4 | 5 => 12 * vlen,
        // ENUM: name, value per entry.
        6 => 8 * vlen,
        // FUNC_PROTO: name, type per parameter.
        13 => 8 * vlen,
        // VAR: linkage; DECL_TAG: component index.
        14 | 17 => 4,
        // DATASEC: type, offset, size per variable.
        15 => 12 * vlen,
        // ENUM64: name, value lo, value hi per entry.
        19 => 12 * vlen,
        _ => return Err(BtfError::Malformed("unknown type kind")),
    })
}

/// Byte offsets of `fields` (direct members) in the struct named `name`.
pub fn struct_fields(data: &[u8], name: &str, fields: &[&str]) -> Result<Vec<u32>, BtfError> {
    let r = Reader { data };
    if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
        return Err(BtfError::Malformed("no BTF header (little-endian)"));
    }
    let hdr_len = r.u32(4)? as usize;
    let (type_off, type_len) = (r.u32(8)? as usize, r.u32(12)? as usize);
    let str_off = r.u32(16)? as usize;
    let types = hdr_len + type_off;
    let strings = hdr_len + str_off;
    let end = types
        .checked_add(type_len)
        .filter(|&e| e <= data.len())
        .ok_or(BtfError::Malformed("type section out of range"))?;
    let mut at = types;
    while at + 12 <= end {
        let info = r.u32(at + 4)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let kind_flag = info >> 31 != 0;
        let members = at + 12;
        if kind == KIND_STRUCT && r.str(strings + r.u32(at)? as usize)? == name {
            let mut out = Vec::with_capacity(fields.len());
            for field in fields {
                let mut found = None;
                for i in 0..vlen {
                    let m = members + 12 * i;
                    if r.str(strings + r.u32(m)? as usize)? == *field {
                        // With kind_flag, the low 24 bits are the bit offset
                        // (the high 8 a bitfield's size).
                        let bits = r.u32(m + 8)?;
                        let bits = if kind_flag { bits & 0xff_ffff } else { bits };
                        found = Some(bits / 8);
                        break;
                    }
                }
                out.push(found.ok_or_else(|| BtfError::NoField(name.into(), field.to_string()))?);
            }
            return Ok(out);
        }
        at = members + trailing_bytes(kind, vlen)?;
    }
    Err(BtfError::NoStruct(name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: an int, an enum (to walk past), a struct with the
    /// given members (name, bit offset), and a second struct.
    fn blob(struct_name: &str, members: &[(&str, u32)], kind_flag: bool) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut name = |s: &str| {
            let off = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            off
        };
        let mut types = Vec::new();
        let mut push = |v: &[u32]| {
            v.iter()
                .for_each(|x| types.extend_from_slice(&x.to_le_bytes()))
        };
        let int = name("int");
        push(&[int, 1 << 24, 4, 32]);
        let e = name("state");
        let (a, b) = (name("A"), name("B"));
        push(&[e, (6 << 24) | 2, 4, a, 0, b, 1]);
        let s = name(struct_name);
        let flag = if kind_flag { 1 << 31 } else { 0 };
        let mut v = vec![s, flag | (4 << 24) | members.len() as u32, 64];
        for (m, bits) in members {
            v.extend_from_slice(&[name(m), 1, *bits]);
        }
        push(&v);
        let other = name("other");
        push(&[other, (4 << 24) | 1, 8, name("pid"), 1, 0]);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for x in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_the_offsets_of_pid_and_tgid() {
        let b = blob(
            "task_struct",
            &[("__state", 0), ("pid", 8 * 2504), ("tgid", 8 * 2508)],
            false,
        );
        assert_eq!(
            task_offsets_in(&b),
            Ok(TaskOffsets {
                pid: 2504,
                tgid: 2508
            })
        );
        // Bitfield encoding of the offsets.
        let b = blob(
            "task_struct",
            &[("pid", (8 * 16) | (32 << 24)), ("tgid", 8 * 20)],
            true,
        );
        assert_eq!(task_offsets_in(&b), Ok(TaskOffsets { pid: 16, tgid: 20 }));
    }

    #[test]
    fn says_what_is_missing() {
        let b = blob("task_struct", &[("pid", 0)], false);
        assert_eq!(
            task_offsets_in(&b),
            Err(BtfError::NoField("task_struct".into(), "tgid".into()))
        );
        let b = blob("mm_struct", &[("pid", 0)], false);
        assert_eq!(
            task_offsets_in(&b),
            Err(BtfError::NoStruct("task_struct".into()))
        );
        assert!(matches!(
            task_offsets_in(b"junk"),
            Err(BtfError::Malformed(_))
        ));
        let mut cut = blob("task_struct", &[("pid", 0), ("tgid", 32)], false);
        cut.truncate(40);
        assert!(matches!(task_offsets_in(&cut), Err(BtfError::Malformed(_))));
    }

    #[test]
    fn reads_the_running_kernel() {
        // Every kernel with BTF has these; where there is none (a build
        // container), say so rather than pass silently.
        match task_offsets() {
            Ok(o) => assert!(o.pid > 0 && o.tgid > 0 && o.pid != o.tgid, "{o:?}"),
            Err(BtfError::Read(..)) => {
                eprintln!("no {VMLINUX} here: the kernel side is not checked")
            }
            Err(e) => panic!("{e}"),
        }
    }
}
