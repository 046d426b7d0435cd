//! Unwind information of the objects a target maps: the ELF's loadable
//! segments (to place it in the address space) and its CFI sections
//! (`.eh_frame`, `.eh_frame_hdr`, `.debug_frame`), read once per file and
//! kept by device, inode and mtime, so every process and every sample
//! that maps the same libc shares one copy.

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Architecture, Endianness, Object, ObjectSection};

use super::maps::Mapping;

/// Section bytes, shared by every module made from the same object.
pub type Bytes = Arc<[u8]>;
pub type Module = framehop::Module<Bytes>;

/// The CPU architectures the unwinder handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture this loadgen was built for (and so the one of the
    /// processes on its host).
    pub fn native() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("cannot open {0}: {1}")]
    Open(String, std::io::Error),
    #[error("{0} is not a 64-bit ELF file: {1}")]
    NotElf(String, object::Error),
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    vaddr: u64,
    filesz: u64,
    executable: bool,
}

/// What unwinding needs from one ELF object.
#[derive(Debug)]
pub struct ObjectInfo {
    pub name: String,
    pub arch: Option<Arch>,
    segments: Vec<Segment>,
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    eh_frame: Option<(Range<u64>, Bytes)>,
    eh_frame_hdr: Option<(Range<u64>, Bytes)>,
    debug_frame: Option<Bytes>,
    /// Built by Go's toolchain: its code keeps frame pointers (the Go
    /// ABI), and its goroutines switch stacks (`mcall`, `systemstack`),
    /// which a walk through a stack copy cannot follow.
    pub go: bool,
}

fn section(file: &ElfFile64<'_, Endianness>, name: &str) -> Option<(Range<u64>, Bytes)> {
    let s = file.section_by_name(name)?;
    // Compressed sections (.debug_frame in some builds) would need
    // inflating; they are rare for the sections we read, so skip them.
    if s.compressed_file_range()
        .is_ok_and(|r| r.format != object::CompressionFormat::None)
    {
        return None;
    }
    let data = s.data().ok().filter(|d| !d.is_empty())?;
    Some((s.address()..s.address() + s.size(), Arc::from(data)))
}

impl ObjectInfo {
    /// Reads the segments and unwind sections of an ELF image.
    pub fn parse(name: &str, data: &[u8]) -> Result<ObjectInfo, ObjectError> {
        let file = ElfFile64::<Endianness>::parse(data)
            .map_err(|e| ObjectError::NotElf(name.to_string(), e))?;
        let endian = file.endian();
        let segments = file
            .elf_program_headers()
            .iter()
            .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
            .map(|p| Segment {
                offset: p.p_offset(endian),
                vaddr: p.p_vaddr(endian),
                filesz: p.p_filesz(endian),
                executable: p.p_flags(endian).0 & object::elf::PF_X.0 != 0,
            })
            .collect();
        let arch = match file.architecture() {
            Architecture::X86_64 => Some(Arch::X86_64),
            Architecture::Aarch64 => Some(Arch::Aarch64),
            _ => None,
        };
        Ok(ObjectInfo {
            name: name.to_string(),
            arch,
            segments,
            text: section(&file, ".text").map(|(r, _)| r),
            got: section(&file, ".got").map(|(r, _)| r),
            eh_frame: section(&file, ".eh_frame"),
            eh_frame_hdr: section(&file, ".eh_frame_hdr"),
            debug_frame: section(&file, ".debug_frame").map(|(_, d)| d),
            go: [".go.buildinfo", ".gopclntab", ".note.go.buildid"]
                .iter()
                .any(|n| file.section_by_name(n).is_some()),
        })
    }

    /// Maps the file and reads it.
    pub fn open(path: &str, name: &str) -> Result<ObjectInfo, ObjectError> {
        let f = std::fs::File::open(path).map_err(|e| ObjectError::Open(name.to_string(), e))?;
        // SAFETY: a read-only private mapping, dropped before we return;
        // the sections we keep are copied out of it. A file truncated
        // meanwhile could fault, as for every profiler reading binaries;
        // the objects here are mapped by a live process, so they are not
        // being rewritten in place.
        let map = unsafe { memmap2::Mmap::map(&f) }
            .map_err(|e| ObjectError::Open(name.to_string(), e))?;
        Self::parse(name, &map)
    }

    /// Whether the object has DWARF CFI that covers code (Go binaries,
    /// for one, have none: they unwind with frame pointers).
    pub fn has_cfi(&self) -> bool {
        self.eh_frame.as_ref().is_some_and(|(_, d)| d.len() > 64) || self.debug_frame.is_some()
    }

    /// The load bias of a mapping of this object: address in the process
    /// minus address in the file's own address space (0 for non-PIE
    /// executables). The kernel maps each PT_LOAD segment from its file
    /// offset rounded down to a page, so the mapping's offset names the
    /// segment. Not "the segment whose bytes hold that offset": linkers
    /// that do not page-align segments in the file (lld, or ld on small
    /// binaries) put the end of one segment and the start of the next in
    /// the same file page, mapped twice.
    pub fn bias(&self, m: &Mapping) -> Option<u64> {
        let page = page_size();
        let pick = |ok: &dyn Fn(&Segment) -> bool| {
            self.segments
                .iter()
                .filter(|s| ok(s))
                .max_by_key(|s| s.executable == m.executable)
        };
        let seg = pick(&|s| s.offset & !(page - 1) == m.offset)
            // A mapping that starts inside a segment (split by mprotect).
            .or_else(|| pick(&|s| (s.offset..s.offset + s.filesz.max(1)).contains(&m.offset)))?;
        Some(
            m.start
                .wrapping_sub(m.offset)
                .wrapping_add(seg.offset)
                .wrapping_sub(seg.vaddr),
        )
    }

    /// A framehop module for one executable mapping of this object.
    pub fn module(&self, m: &Mapping) -> Option<Module> {
        let bias = self.bias(m)?;
        let info = framehop::ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: self.eh_frame.as_ref().map(|(_, d)| d.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|(_, d)| d.clone()),
            debug_frame: self.debug_frame.clone(),
            ..Default::default()
        };
        Some(framehop::Module::new(
            self.name.clone(),
            m.range(),
            bias,
            info,
        ))
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// (device, inode, mtime in ns): a file's identity without reading it.
type FileKey = (u64, u64, i128);

/// Objects read so far, shared by all target processes.
#[derive(Default)]
pub struct ObjectCache {
    files: HashMap<FileKey, Option<Arc<ObjectInfo>>>,
    vdso: Option<Option<Arc<ObjectInfo>>>,
    /// Files that could not be read, with why (reported once each).
    pub failures: Vec<String>,
}

impl ObjectCache {
    /// The object behind an executable mapping of `pid`, if it is an ELF
    /// file we can read (or the vdso).
    pub fn get(&mut self, pid: u32, m: &Mapping) -> Option<Arc<ObjectInfo>> {
        if m.path == "[vdso]" {
            return self.vdso.get_or_insert_with(own_vdso).clone();
        }
        if !m.is_file() {
            return None;
        }
        // Through the process's root, so a target in another mount
        // namespace (a container) resolves its own paths.
        let rooted = format!("/proc/{pid}/root{}", m.path);
        let path = if std::fs::metadata(&rooted).is_ok() {
            rooted
        } else {
            m.path.clone()
        };
        let meta = std::fs::metadata(&path).ok()?;
        // The path may now name another file (upgraded package): the
        // inode must be the one mapped.
        if meta.ino() != m.inode {
            return None;
        }
        let key = (
            meta.dev(),
            meta.ino(),
            meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        );
        if let Some(hit) = self.files.get(&key) {
            return hit.clone();
        }
        let info = match ObjectInfo::open(&path, &m.path) {
            Ok(info) => Some(Arc::new(info)),
            Err(e) => {
                self.failures.push(e.to_string());
                None
            }
        };
        self.files.insert(key, info.clone());
        info
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The vdso is the same image in every process on this kernel, so read
/// our own (the target's cannot be opened as a file).
fn own_vdso() -> Option<Arc<ObjectInfo>> {
    // SAFETY: getauxval has no preconditions.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    if base == 0 {
        return None;
    }
    let maps = super::maps::read(std::process::id()).ok()?;
    let m = super::maps::find(&maps, base)?;
    if m.path != "[vdso]" || !m.readable {
        return None;
    }
    // SAFETY: the vdso mapping of this process, readable (checked above)
    // and never unmapped; the bytes are copied out by parse().
    let image =
        unsafe { std::slice::from_raw_parts(m.start as *const u8, (m.end - m.start) as usize) };
    ObjectInfo::parse("[vdso]", image).ok().map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_exe_mapping() -> (Mapping, Vec<Mapping>) {
        let maps = super::super::maps::read(std::process::id()).unwrap();
        let m = super::super::maps::find(&maps, own_exe_mapping as *const () as u64)
            .unwrap()
            .clone();
        (m, maps)
    }

    #[test]
    fn our_own_binary_has_cfi_and_its_bias_places_our_code() {
        let (m, _) = own_exe_mapping();
        let info = ObjectInfo::open(&m.path, &m.path).unwrap();
        assert!(info.has_cfi());
        assert!(!info.go);
        assert_eq!(info.arch, Some(Arch::native()));
        let bias = info.bias(&m).unwrap();
        // This function's address, less the bias, lies inside .text.
        let svma = (own_exe_mapping as *const () as u64).wrapping_sub(bias);
        assert!(info.text.as_ref().unwrap().contains(&svma), "{svma:#x}");
    }

    #[test]
    fn bias_comes_from_the_segment_the_mapping_starts_with() {
        // Segments as lld lays them out (and ld for a small debug test
        // binary, seen here): the read-only segment's last bytes share a
        // file page with the start of the executable one.
        let seg = |offset, vaddr, filesz, executable| Segment {
            offset,
            vaddr,
            filesz,
            executable,
        };
        let info = ObjectInfo {
            name: "x".into(),
            arch: Some(Arch::X86_64),
            segments: vec![
                seg(0, 0, 0x30300, false),
                seg(0x30300, 0x31300, 0x927e0, true),
                seg(0xc2ae0, 0xc4ae0, 0x8c58, false),
            ],
            text: None,
            got: None,
            eh_frame: None,
            eh_frame_hdr: None,
            debug_frame: None,
            go: false,
        };
        let map = |start, offset, executable| Mapping {
            start,
            end: start + 0x1000,
            readable: true,
            executable,
            offset,
            dev: (0, 0),
            inode: 1,
            path: "/x".into(),
        };
        let base = 0x5555_0000_0000;
        // r-xp at file page 0x30000 holds vaddr 0x31300 at base + 0x31300.
        let exec = map(base + 0x31000, 0x30000, true);
        assert_eq!(info.bias(&exec), Some(base));
        assert_eq!(info.bias(&map(base, 0, false)), Some(base));
        assert_eq!(info.bias(&map(base + 0xc4000, 0xc2000, false)), Some(base));
    }

    #[test]
    fn cache_reads_a_file_once_and_refuses_what_is_not_elf() {
        let (m, _) = own_exe_mapping();
        let mut cache = ObjectCache::default();
        let a = cache.get(std::process::id(), &m).unwrap();
        let b = cache.get(std::process::id(), &m).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(cache.len(), 1);
        assert!(matches!(
            ObjectInfo::parse("x", b"not an elf"),
            Err(ObjectError::NotElf(..))
        ));
        let mut stale = m.clone();
        stale.inode += 1;
        assert!(
            cache.get(std::process::id(), &stale).is_none(),
            "inode must match"
        );
    }

    #[test]
    fn the_vdso_is_read_from_our_own_memory() {
        let vdso = own_vdso().expect("a vdso");
        assert!(vdso.has_cfi(), "the vdso has .eh_frame");
    }
}
