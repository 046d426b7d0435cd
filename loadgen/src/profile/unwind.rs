//! User-space unwinding of DWARF-mode samples: the registers and stack
//! copy the kernel side sent, the process's mappings and the objects'
//! CFI go in; return addresses come out. framehop (samply's unwinder,
//! on gimli) does the CFI work, and falls back to frame pointers where no
//! CFI covers an address, so JIT code named in a perf map (V8, JVMs)
//! unwinds as it does with frame pointers and the walk goes on into the
//! native frames below it.
//!
//! Plain data in and out: [`ProcessUnwinder`] never reads /proc itself,
//! so it is tested on captured samples (`tests/fixtures/unwind/`).

use framehop::aarch64::{CacheAarch64, PtrAuthMask, UnwindRegsAarch64, UnwinderAarch64};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{Error as WalkError, Unwinder};
use std::sync::Arc;

use super::maps::{self, Mapping};
use super::objects::{Arch, Bytes, ObjectInfo};

/// Frames per stack. Deeper than frame-pointer mode's 127 (the kernel's
/// PERF_MAX_STACK_DEPTH): here the limit is only our own time, and
/// interpreters and frameworks run deeper than 127 frames. A 64 KiB copy
/// of 64-byte frames is 1024 of them.
pub const MAX_FRAMES: usize = 1024;

/// User registers at the sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    pub ip: u64,
    pub sp: u64,
    /// rbp on x86_64, x29 on aarch64.
    pub fp: u64,
    /// x30 on aarch64.
    pub lr: u64,
}

/// The stack bytes copied from `sp` up.
#[derive(Debug, Clone, Copy)]
pub struct StackCopy<'a> {
    pub bytes: &'a [u8],
    /// The copy got fewer bytes than asked for: its last pieces could not
    /// be read.
    pub short: bool,
    /// Pieces that could not be read (bit i: piece i; piece 0 runs from sp
    /// to the next page boundary, the others are whole pages).
    pub missing_pieces: u32,
}

impl StackCopy<'_> {
    /// Whether the byte at `offset` from sp was read.
    fn has(&self, sp: u64, offset: usize) -> bool {
        let first = 4096 - (sp % 4096) as usize;
        let piece = if offset < first {
            0
        } else {
            1 + (offset - first) / 4096
        };
        offset < self.bytes.len() && (piece >= 32 || self.missing_pieces & (1 << piece) == 0)
    }
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It reached the outermost frame (`_start`, a thread's start routine).
    Complete,
    /// It needed stack beyond the copy: `--stack-bytes` was too small
    /// for this stack.
    Truncated,
    /// It needed stack the kernel could not read (a page not present).
    ReadFailed,
    /// A frame made no sense (no CFI and no frame pointer, say); the
    /// frames before it are kept.
    Broken,
    /// [`MAX_FRAMES`] reached.
    TooDeep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwound {
    /// The sampled ip, then return addresses, innermost first.
    pub frames: Vec<u64>,
    pub outcome: Outcome,
}

enum Walker {
    X86_64(UnwinderX86_64<Bytes>, Box<CacheX86_64>),
    Aarch64(UnwinderAarch64<Bytes>, Box<CacheAarch64>),
}

/// One process's address space, as far as unwinding is concerned.
pub struct ProcessUnwinder {
    arch: Arch,
    maps: Vec<Mapping>,
    walker: Walker,
    /// Executable mappings with an object behind them.
    modules: usize,
}

impl ProcessUnwinder {
    /// Builds the unwinder for `maps`; `object` finds the object behind an
    /// executable mapping (the file's CFI, or None for anonymous or
    /// unreadable code, which then unwinds with frame pointers).
    pub fn new(
        arch: Arch,
        maps: Vec<Mapping>,
        mut object: impl FnMut(&Mapping) -> Option<Arc<ObjectInfo>>,
    ) -> ProcessUnwinder {
        let mut walker = match arch {
            Arch::X86_64 => Walker::X86_64(UnwinderX86_64::new(), Box::default()),
            Arch::Aarch64 => Walker::Aarch64(UnwinderAarch64::new(), Box::default()),
        };
        let mut modules = 0;
        for m in maps.iter().filter(|m| m.executable) {
            let Some(module) = object(m).and_then(|o| o.module(m)) else {
                continue;
            };
            modules += 1;
            match &mut walker {
                Walker::X86_64(u, _) => u.add_module(module),
                Walker::Aarch64(u, _) => u.add_module(module),
            }
        }
        ProcessUnwinder {
            arch,
            maps,
            walker,
            modules,
        }
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn modules(&self) -> usize {
        self.modules
    }

    /// True when the sample's ip or sp lies outside every known mapping:
    /// the process mapped something since (a thread stack, a library), so
    /// the caller should read its maps again.
    pub fn is_stale_for(&self, regs: &Regs) -> bool {
        regs.ip != 0
            && (maps::find(&self.maps, regs.ip).is_none()
                || maps::find(&self.maps, regs.sp).is_none())
    }

    /// Bytes from `sp` to the end of the mapping that holds it (the top
    /// of its thread's stack): what a copy needs to hold the whole stack.
    pub fn stack_above(&self, sp: u64) -> Option<u64> {
        maps::find(&self.maps, sp).map(|m| m.end - sp)
    }

    /// Walks one sample's stack.
    pub fn unwind(&mut self, regs: &Regs, stack: StackCopy<'_>) -> Unwound {
        let mut frames = Vec::with_capacity(32);
        if regs.ip == 0 {
            // A thread with no user context (an io_uring worker, say).
            return Unwound {
                frames,
                outcome: Outcome::Complete,
            };
        }
        let sp = regs.sp;
        let bytes = stack.bytes;
        let mut hit_missing = false;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = addr.checked_sub(sp).ok_or(())? as usize;
            let word = bytes.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
            if !stack.has(sp, off) || !stack.has(sp, off + 7) {
                hit_missing = true;
                return Err(());
            }
            Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
        };
        let end = match &mut self.walker {
            Walker::X86_64(u, cache) => walk(
                u,
                cache,
                regs.ip,
                UnwindRegsX86_64::new(regs.ip, regs.sp, regs.fp),
                &mut read_stack,
                &mut frames,
            ),
            Walker::Aarch64(u, cache) => {
                // Strip pointer-authentication bits from return addresses:
                // no code lies above the highest mapped module.
                let mask = PtrAuthMask::from_max_known_address(u.max_known_code_address());
                walk(
                    u,
                    cache,
                    regs.ip,
                    UnwindRegsAarch64::new_with_ptr_auth_mask(mask, regs.lr, regs.sp, regs.fp),
                    &mut read_stack,
                    &mut frames,
                )
            }
        };
        let outcome = match end {
            Ok(true) => Outcome::Complete,
            Ok(false) => Outcome::TooDeep,
            Err(WalkError::CouldNotReadStack(_)) if hit_missing => Outcome::ReadFailed,
            Err(WalkError::CouldNotReadStack(addr)) => self.classify_read(addr, regs, stack),
            Err(_) => Outcome::Broken,
        };
        Unwound { frames, outcome }
    }

    /// A failed read past the copy but inside the stack's mapping means
    /// the copy was too short (or its last pages could not be read);
    /// anywhere else, the frame the walk came from was bad.
    fn classify_read(&self, addr: u64, regs: &Regs, stack: StackCopy<'_>) -> Outcome {
        let copy_end = regs.sp.saturating_add(stack.bytes.len() as u64);
        let in_stack = maps::find(&self.maps, regs.sp).is_some_and(|m| addr < m.end);
        if addr >= copy_end && in_stack {
            if stack.short {
                Outcome::ReadFailed
            } else {
                Outcome::Truncated
            }
        } else {
            Outcome::Broken
        }
    }
}

/// Runs framehop's walk; Ok(true) at the end of the stack, Ok(false) at
/// the frame limit.
fn walk<U, F>(
    unwinder: &U,
    cache: &mut U::Cache,
    pc: u64,
    regs: U::UnwindRegs,
    read_stack: &mut F,
    frames: &mut Vec<u64>,
) -> Result<bool, WalkError>
where
    U: Unwinder,
    F: FnMut(u64) -> Result<u64, ()>,
{
    let mut iter = unwinder.iter_frames(pc, regs, cache, read_stack);
    while frames.len() < MAX_FRAMES {
        match iter.next()? {
            Some(frame) => frames.push(frame.address()),
            None => return Ok(true),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    //! On samples the profiler captured from `fixtures/unwind/fixture.c`
    //! (see the README there): real registers, stack bytes and maps.
    use super::*;
    use crate::profile::ringbuf;
    use object::{Object, ObjectSymbol};

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/unwind");

    struct Fixture {
        maps: Vec<Mapping>,
        object: Arc<ObjectInfo>,
        binary: Vec<u8>,
        bin_name: &'static str,
    }

    impl Fixture {
        fn load(arch: &str) -> Fixture {
            let bin_name = if arch == "aarch64" {
                "fixture-aarch64"
            } else {
                "fixture-x86_64"
            };
            let binary = std::fs::read(format!("{DIR}/{bin_name}")).unwrap();
            let text = std::fs::read_to_string(format!("{DIR}/{arch}.maps")).unwrap();
            Fixture {
                maps: maps::parse(&text).unwrap(),
                object: Arc::new(ObjectInfo::parse(bin_name, &binary).unwrap()),
                binary,
                bin_name,
            }
        }

        fn unwinder(&self, arch: Arch) -> ProcessUnwinder {
            ProcessUnwinder::new(arch, self.maps.clone(), |m| {
                m.path.ends_with(self.bin_name).then(|| self.object.clone())
            })
        }

        /// The fixture's function around each frame (return addresses
        /// looked up at ip − 1), or "jit" in the anonymous code mapping.
        fn names(&self, frames: &[u64]) -> Vec<String> {
            let file = object::File::parse(self.binary.as_slice()).unwrap();
            let exec = self
                .maps
                .iter()
                .find(|m| m.executable && m.path.ends_with(self.bin_name))
                .unwrap();
            let bias = self.object.bias(exec).unwrap();
            frames
                .iter()
                .enumerate()
                .map(|(i, &f)| {
                    let addr = if i == 0 { f } else { f - 1 };
                    let m = maps::find(&self.maps, addr).unwrap();
                    if m.path.is_empty() {
                        return "jit".to_string();
                    }
                    let svma = addr - bias;
                    file.symbols()
                        .filter(|s| s.address() <= svma)
                        .max_by_key(|s| s.address())
                        .map_or("?".into(), |s| s.name().unwrap().to_string())
                })
                .collect()
        }
    }

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!("{DIR}/{name}.sample")).unwrap()
    }

    #[test]
    fn x86_64_walks_frames_without_frame_pointers_to_start() {
        let fx = Fixture::load("x86_64");
        let bytes = sample("x86_64-level3");
        let rec = ringbuf::parse(&bytes).unwrap();
        assert_eq!(rec.regs().fp, 0, "no frame pointer in this code");
        let mut u = fx.unwinder(Arch::X86_64);
        assert_eq!(u.modules(), 1);
        assert!(!u.is_stale_for(&rec.regs()));
        let out = u.unwind(&rec.regs(), rec.stack_copy());
        assert_eq!(out.outcome, Outcome::Complete);
        assert_eq!(
            fx.names(&out.frames),
            ["level3", "level2", "level1", "run", "_start"]
        );
        // The same sample again hits framehop's rule cache: same answer.
        assert_eq!(u.unwind(&rec.regs(), rec.stack_copy()), out);
    }

    #[test]
    fn x86_64_jit_frame_unwinds_by_frame_pointer_into_native_frames() {
        let fx = Fixture::load("x86_64");
        let bytes = sample("x86_64-jit");
        let rec = ringbuf::parse(&bytes).unwrap();
        let out = fx
            .unwinder(Arch::X86_64)
            .unwind(&rec.regs(), rec.stack_copy());
        assert_eq!(out.outcome, Outcome::Complete);
        assert_eq!(fx.names(&out.frames), ["jit", "call_jit", "run", "_start"]);
    }

    #[test]
    fn x86_64_stack_cut_mid_frame_keeps_the_inner_frames() {
        let fx = Fixture::load("x86_64");
        let bytes = sample("x86_64-level3");
        let rec = ringbuf::parse(&bytes).unwrap();
        // level1 has a 6000-byte frame: a 4 KiB copy ends inside it.
        let cut = StackCopy {
            bytes: &rec.stack[..4096],
            short: false,
            missing_pieces: 0,
        };
        let out = fx.unwinder(Arch::X86_64).unwind(&rec.regs(), cut);
        assert_eq!(out.outcome, Outcome::Truncated);
        assert_eq!(fx.names(&out.frames), ["level3", "level2", "level1"]);
    }

    #[test]
    fn x86_64_unreadable_page_costs_only_what_lies_beyond_it() {
        let fx = Fixture::load("x86_64");
        let bytes = sample("x86_64-level3");
        let rec = ringbuf::parse(&bytes).unwrap();
        // As if the pages inside level1's frame had never been touched (not
        // present, so the kernel side could not read them).
        let holes = StackCopy {
            missing_pieces: rec.header.missing_pieces | 0b110,
            ..rec.stack_copy()
        };
        let out = fx.unwinder(Arch::X86_64).unwind(&rec.regs(), holes);
        assert_eq!(out.outcome, Outcome::ReadFailed);
        assert_eq!(fx.names(&out.frames), ["level3", "level2", "level1"]);
    }

    #[test]
    fn aarch64_walks_frames_without_frame_pointers_to_start() {
        let fx = Fixture::load("aarch64");
        let bytes = sample("aarch64-level3");
        let rec = ringbuf::parse(&bytes).unwrap();
        let mut u = fx.unwinder(Arch::Aarch64);
        assert_eq!(u.arch(), Arch::Aarch64);
        assert_eq!(u.modules(), 1);
        let out = u.unwind(&rec.regs(), rec.stack_copy());
        assert_eq!(out.outcome, Outcome::Complete);
        assert_eq!(
            fx.names(&out.frames),
            ["capture", "level3", "level2", "level1", "run", "_start"]
        );
    }

    #[test]
    fn aarch64_jit_frame_unwinds_by_frame_record_into_native_frames() {
        let fx = Fixture::load("aarch64");
        let bytes = sample("aarch64-jit");
        let rec = ringbuf::parse(&bytes).unwrap();
        let out = fx
            .unwinder(Arch::Aarch64)
            .unwind(&rec.regs(), rec.stack_copy());
        assert_eq!(out.outcome, Outcome::Complete);
        assert_eq!(
            fx.names(&out.frames),
            ["capture", "jit", "call_jit", "run", "_start"]
        );
    }

    #[test]
    fn aarch64_stack_cut_mid_frame_keeps_the_inner_frames() {
        let fx = Fixture::load("aarch64");
        let bytes = sample("aarch64-level3");
        let rec = ringbuf::parse(&bytes).unwrap();
        let cut = StackCopy {
            bytes: &rec.stack[..4096],
            short: false,
            missing_pieces: 0,
        };
        let out = fx.unwinder(Arch::Aarch64).unwind(&rec.regs(), cut);
        assert_eq!(out.outcome, Outcome::Truncated);
        // aarch64 keeps a frame's saved lr at its bottom, so level1's
        // return into run is inside the copy; run's own is not.
        assert_eq!(
            fx.names(&out.frames),
            ["capture", "level3", "level2", "level1", "run"]
        );
    }

    #[test]
    fn a_sample_outside_the_known_maps_asks_for_a_refresh_and_no_ip_is_empty() {
        let fx = Fixture::load("x86_64");
        let mut u = fx.unwinder(Arch::X86_64);
        let regs = Regs {
            ip: 0x1234,
            sp: 0x7fff_0000,
            ..Default::default()
        };
        assert!(u.is_stale_for(&regs));
        let none = Regs::default();
        assert!(!u.is_stale_for(&none));
        let out = u.unwind(
            &none,
            StackCopy {
                bytes: &[],
                short: true,
                missing_pieces: 0,
            },
        );
        assert_eq!(out.frames, Vec::<u64>::new());
    }
}
