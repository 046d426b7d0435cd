//! A process's memory mappings, from `/proc/PID/maps`: which file (and
//! where in it) backs each executable address range, and which mapping
//! holds the stack a sample's `sp` points into. The parser is plain text
//! in, mappings out, so it is tested on captured maps files.

use std::ops::Range;

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub executable: bool,
    /// File offset of `start`.
    pub offset: u64,
    /// Device (major, minor) and inode of the file; inode 0 for anonymous
    /// memory, the stack, the vdso.
    pub dev: (u32, u32),
    pub inode: u64,
    /// The path, a pseudo-name (`[stack]`, `[vdso]`, `[heap]`), or empty.
    pub path: String,
}

impl Mapping {
    pub fn range(&self) -> Range<u64> {
        self.start..self.end
    }

    /// Backed by a regular file that still exists under its path.
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/') && !self.path.ends_with(" (deleted)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapsError {
    #[error("cannot read /proc/{0}/maps: {1}")]
    Read(u32, String),
    #[error("line {0} of the maps file is malformed: {1:?}")]
    Malformed(usize, String),
}

/// Parses the text of a maps file.
pub fn parse(text: &str) -> Result<Vec<Mapping>, MapsError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(line).ok_or_else(|| MapsError::Malformed(i + 1, line.to_string()))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Option<Mapping> {
    // start-end perms offset major:minor inode [path]; the path may hold
    // spaces, so split off the first five fields only.
    let mut rest = line;
    let mut field = || {
        let r = rest.trim_start();
        let end = r.find(' ').unwrap_or(r.len());
        let (f, tail) = r.split_at(end);
        rest = tail;
        Some(f).filter(|f| !f.is_empty())
    };
    let (start, end) = field()?.split_once('-')?;
    let perms = field()?.as_bytes();
    let offset = field()?;
    let (major, minor) = field()?.split_once(':')?;
    let inode = field()?;
    let path = rest.trim_start().to_string();
    if perms.len() < 4 {
        return None;
    }
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        readable: perms[0] == b'r',
        executable: perms[2] == b'x',
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        path,
    })
}

/// Reads and parses `/proc/PID/maps`.
pub fn read(pid: u32) -> Result<Vec<Mapping>, MapsError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| MapsError::Read(pid, e.to_string()))?;
    parse(&text)
}

/// The mapping that contains `addr` (mappings are sorted by address, as
/// the kernel writes them).
pub fn find(maps: &[Mapping], addr: u64) -> Option<&Mapping> {
    let i = maps.partition_point(|m| m.end <= addr);
    maps.get(i).filter(|m| m.start <= addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c4a00000-55d0c4a2a000 r--p 00000000 fe:01 1311265                    /usr/sbin/nginx
55d0c4a2a000-55d0c4b0b000 r-xp 0002a000 fe:01 1311265                    /usr/sbin/nginx
7f3b1c000000-7f3b1c021000 rw-p 00000000 00:00 0 
7f3b1d628000-7f3b1d7ae000 r-xp 00026000 fe:01 1049003                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3b1d900000-7f3b1d901000 r-xp 00000000 00:05 123                        /tmp/my lib.so (deleted)
7ffc5a1e6000-7ffc5a207000 rw-p 00000000 00:00 0                          [stack]
7ffc5a3f0000-7ffc5a3f2000 r-xp 00000000 00:00 0                          [vdso]
";

    #[test]
    fn parses_files_anonymous_and_pseudo_mappings() {
        let m = parse(MAPS).unwrap();
        assert_eq!(m.len(), 7);
        assert_eq!(
            m[1],
            Mapping {
                start: 0x55d0c4a2a000,
                end: 0x55d0c4b0b000,
                readable: true,
                executable: true,
                offset: 0x2a000,
                dev: (0xfe, 1),
                inode: 1311265,
                path: "/usr/sbin/nginx".into(),
            }
        );
        assert!(m[1].is_file());
        assert!(!m[2].is_file() && m[2].path.is_empty() && !m[2].executable);
        assert_eq!(m[4].path, "/tmp/my lib.so (deleted)");
        assert!(!m[4].is_file(), "a deleted file cannot be opened by path");
        assert_eq!(m[5].path, "[stack]");
        assert!(!m[6].is_file());
    }

    #[test]
    fn finds_the_mapping_of_an_address() {
        let m = parse(MAPS).unwrap();
        assert_eq!(find(&m, 0x7ffc5a1e6000).unwrap().path, "[stack]");
        assert_eq!(find(&m, 0x7ffc5a206fff).unwrap().path, "[stack]");
        assert!(find(&m, 0x7ffc5a207000).is_none());
        assert!(find(&m, 0x1000).is_none());
        assert_eq!(find(&m, 0x55d0c4a2a123).unwrap().offset, 0x2a000);
    }

    #[test]
    fn rejects_garbage_with_the_line_number() {
        assert_eq!(
            parse("55d0c4a00000-55d0c4a2a000 r--p 00000000 fe:01 1 /x\nnot a mapping\n"),
            Err(MapsError::Malformed(2, "not a mapping".into()))
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn reads_our_own_maps() {
        let m = read(std::process::id()).unwrap();
        let here = find(&m, reads_our_own_maps as *const () as u64).unwrap();
        assert!(here.executable && here.is_file(), "{here:?}");
        assert!(matches!(read(u32::MAX), Err(MapsError::Read(..))));
    }
}
