//! Raw addresses → folded stacks. User frames are symbolized per process
//! with blazesym (ELF symbols, DWARF with inlined functions, Rust and C++
//! demangling, `/tmp/perf-PID.map` for JIT runtimes); kernel frames from
//! kallsyms. Every frame but the leaf is a return address, so it is looked
//! up at `ip − 1` (the call instruction), not at the instruction after it.

use std::collections::HashMap;

use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use blazesym::{MaybeDefault, Pid};

use super::bpf::RawProfile;
use super::folded::{Folded, sanitize};
use super::python::merge::{id_of, is_python};
use super::python::targets::UNREADABLE;

/// Frames for one address, outermost first (a function, then the
/// functions inlined into it at that address).
type Names = Vec<String>;

pub const UNKNOWN: &str = "[unknown]";

/// Whether /proc/kallsyms shows real addresses to us (it shows zeros
/// without CAP_SYSLOG or with kptr_restrict).
pub fn kernel_symbols_visible() -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .ok()
        .and_then(|s| {
            s.lines()
                .take(64)
                .find_map(|l| {
                    l.split_whitespace()
                        .next()
                        .map(|a| a.trim_start_matches('0').to_string())
                })
                .map(|a| !a.is_empty())
        })
        .unwrap_or(false)
}

/// Addresses to look up for a stack (leaf first): the leaf as sampled,
/// the rest minus one.
fn lookup_addrs(stack: &[u64]) -> impl Iterator<Item = u64> + '_ {
    stack
        .iter()
        .enumerate()
        .map(|(i, &ip)| if i == 0 { ip } else { ip.saturating_sub(1) })
}

/// [`lookup_addrs`] for a user stack, whose Python frames (tagged ids,
/// which no user address looks like; kernel addresses do) stay as they
/// are.
fn user_lookup_addrs(stack: &[u64]) -> impl Iterator<Item = u64> + '_ {
    stack
        .iter()
        .zip(lookup_addrs(stack))
        .map(|(&ip, a)| if is_python(ip) { ip } else { a })
}

fn names_of(sym: &Symbolized<'_>, suffix: &str) -> Names {
    match sym {
        Symbolized::Sym(s) => {
            // blazesym names the file a user symbol came from (ELF path,
            // `[vdso]`); symbols from /tmp/perf-PID.map come with none.
            let jit = suffix.is_empty() && s.module.is_none();
            let suffix = if jit { "_[j]" } else { suffix };
            std::iter::once(s.name.as_ref())
                .chain(s.inlined.iter().map(|f| f.name.as_ref()))
                .map(|n| format!("{}{suffix}", sanitize(n)))
                .collect()
        }
        Symbolized::Unknown(_) => vec![format!("{UNKNOWN}{suffix}")],
    }
}

/// Addresses to symbolize, collected first so that each process and the
/// kernel are looked up once, in one batch.
#[derive(Debug, Default)]
pub struct Lookup {
    user: HashMap<u32, Vec<u64>>,
    kernel: Vec<u64>,
}

/// Names of the addresses a [`Lookup`] collected.
#[derive(Debug, Default)]
pub struct Symbols {
    user: HashMap<(u32, u64), Names>,
    kernel: HashMap<u64, Names>,
    /// Python frames (tagged ids in user stacks, named by the reader).
    python: Vec<String>,
}

impl Lookup {
    /// A user stack of process `pid`, leaf first.
    pub fn user(&mut self, pid: u32, stack: &[u64]) {
        self.user
            .entry(pid)
            .or_default()
            .extend(user_lookup_addrs(stack).filter(|&a| !is_python(a)));
    }

    /// A kernel stack, leaf first.
    pub fn kernel(&mut self, stack: &[u64]) {
        self.kernel.extend(lookup_addrs(stack));
    }

    pub fn resolve(self, kernel_visible: bool) -> Symbols {
        let symbolizer = Symbolizer::builder()
            .enable_inlined_fns(true)
            .enable_code_info(false)
            .build();
        let mut out = Symbols::default();
        for (pid, mut addrs) in self.user {
            addrs.sort_unstable();
            addrs.dedup();
            let mut process = Process::new(Pid::from(pid));
            // Reading /proc/PID/map_files needs CAP_SYS_ADMIN; the maps
            // file is enough for what we symbolize.
            process.map_files = false;
            let src = Source::Process(process);
            let syms = symbolizer
                .symbolize(&src, Input::AbsAddr(&addrs))
                .unwrap_or_default();
            for (addr, sym) in addrs.iter().zip(syms.iter()) {
                out.user.insert((pid, *addr), names_of(sym, ""));
            }
        }
        let mut kernel = self.kernel;
        kernel.sort_unstable();
        kernel.dedup();
        if kernel_visible && !kernel.is_empty() {
            // kallsyms only: searching for a vmlinux image is slow and
            // rarely finds one on production hosts.
            let src = Source::Kernel(Kernel {
                vmlinux: MaybeDefault::None,
                ..Default::default()
            });
            let syms = symbolizer
                .symbolize(&src, Input::AbsAddr(&kernel))
                .unwrap_or_default();
            for (addr, sym) in kernel.iter().zip(syms.iter()) {
                out.kernel.insert(*addr, names_of(sym, "_[k]"));
            }
        }
        out
    }
}

impl Symbols {
    /// Names the Python frames of the user stacks by `names` (tagged id
    /// i + 1 is `names[i]`).
    pub fn with_python(mut self, names: &[String]) -> Symbols {
        self.python = names.to_vec();
        self
    }

    /// Frames of a user stack (leaf first), root first.
    pub fn user_frames(&self, pid: u32, stack: &[u64]) -> Vec<String> {
        let addrs: Vec<u64> = user_lookup_addrs(stack).collect();
        let mut frames = Vec::with_capacity(addrs.len());
        for addr in addrs.iter().rev() {
            if is_python(*addr) {
                let name = id_of(*addr).checked_sub(1).and_then(|i| self.python.get(i));
                frames.push(name.map_or(UNREADABLE.to_string(), |n| sanitize(n)));
                continue;
            }
            match self.user.get(&(pid, *addr)) {
                Some(names) => frames.extend(names.iter().cloned()),
                None => frames.push(UNKNOWN.to_string()),
            }
        }
        frames
    }

    /// Frames of a kernel stack (leaf first), root first.
    pub fn kernel_frames(&self, stack: &[u64]) -> Vec<String> {
        let addrs: Vec<u64> = lookup_addrs(stack).collect();
        let mut frames = Vec::with_capacity(addrs.len());
        for addr in addrs.iter().rev() {
            match self.kernel.get(addr) {
                Some(names) => frames.extend(names.iter().cloned()),
                None => frames.push(format!("{UNKNOWN}_[k]")),
            }
        }
        frames
    }
}

/// Symbolizes every stack in `raw` into folded stacks rooted at the
/// process name. `comms` names the processes (read while they were alive).
pub fn fold(raw: &RawProfile, comms: &HashMap<u32, String>, kernel_visible: bool) -> Folded {
    let stack = |id: i32| raw.stacks.get(&id).filter(|_| id >= 0);
    let mut lookup = Lookup::default();
    for (key, _) in &raw.counts {
        if let Some(s) = stack(key.user_stack_id) {
            lookup.user(key.tgid, s);
        }
        if let Some(s) = stack(key.kernel_stack_id) {
            lookup.kernel(s);
        }
    }
    let symbols = lookup
        .resolve(kernel_visible)
        .with_python(&raw.python_names);
    let mut merged: HashMap<Vec<String>, u64> = HashMap::new();
    for (key, count) in &raw.counts {
        let mut frames = vec![sanitize(&comm_of(comms, key.tgid))];
        match stack(key.user_stack_id) {
            Some(s) => frames.extend(symbols.user_frames(key.tgid, s)),
            None => frames.push(UNKNOWN.to_string()),
        }
        if let Some(s) = stack(key.kernel_stack_id) {
            frames.extend(symbols.kernel_frames(s));
        }
        *merged.entry(frames).or_default() += count;
    }
    let mut stacks: Vec<_> = merged.into_iter().collect();
    stacks.sort();
    Folded { stacks }
}

/// A process's name as read while it was alive, or `pid N`.
pub fn comm_of(comms: &HashMap<u32, String>, pid: u32) -> String {
    comms
        .get(&pid)
        .cloned()
        .unwrap_or_else(|| format!("pid {pid}"))
}

/// Samples whose user stack has `limit` frames or more: the kernel's
/// walk stopped at its limit, so their outermost frames are cut.
pub fn user_stacks_at_limit(raw: &RawProfile, limit: usize) -> u64 {
    raw.counts
        .iter()
        .filter(|(k, _)| {
            raw.stacks
                .get(&k.user_stack_id)
                .is_some_and(|s| s.len() >= limit)
        })
        .map(|(_, n)| n)
        .sum()
}

/// Fraction of samples whose user stack had at most one frame: a target
/// built without frame pointers.
pub fn shallow_user_share(raw: &RawProfile) -> f64 {
    let total: u64 = raw.counts.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return 0.0;
    }
    let shallow: u64 = raw
        .counts
        .iter()
        .filter(|(k, _)| {
            raw.stacks
                .get(&k.user_stack_id)
                .is_none_or(|s| s.len() <= 1)
        })
        .map(|(_, n)| n)
        .sum();
    shallow as f64 / total as f64
}
