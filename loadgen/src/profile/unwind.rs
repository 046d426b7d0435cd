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

/// Frames per stack, as in frame-pointer mode (the kernel's default
/// PERF_MAX_STACK_DEPTH).
pub const MAX_FRAMES: usize = loadgen_ebpf_common::MAX_DEPTH;

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
    /// The copy stopped early because a page could not be read.
    pub short: bool,
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
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = addr.checked_sub(sp).ok_or(())? as usize;
            let word = bytes.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
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
            Err(WalkError::CouldNotReadStack(addr)) => self.classify_read(addr, regs, stack),
            Err(_) => Outcome::Broken,
        };
        Unwound { frames, outcome }
    }

    /// A failed read past the copy but inside the stack's mapping means
    /// the copy was too short (or a page could not be read); anywhere
    /// else, the frame the walk came from was bad.
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
