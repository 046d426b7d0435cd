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

/// Frames for one address, outermost first (a function, then the
/// functions inlined into it at that address).
type Names = Vec<String>;

const UNKNOWN: &str = "[unknown]";

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

/// Symbolizes every stack in `raw` into folded stacks rooted at the
/// process name. `comms` names the processes (read while they were alive).
pub fn fold(raw: &RawProfile, comms: &HashMap<u32, String>, kernel_visible: bool) -> Folded {
    let symbolizer = Symbolizer::builder()
        .enable_inlined_fns(true)
        .enable_code_info(false)
        .build();

    // Unique addresses per process, and for the kernel.
    let mut user_addrs: HashMap<u32, Vec<u64>> = HashMap::new();
    let mut kernel_addrs: Vec<u64> = Vec::new();
    for (key, _) in &raw.counts {
        if let Some(stack) = raw
            .stacks
            .get(&key.user_stack_id)
            .filter(|_| key.user_stack_id >= 0)
        {
            user_addrs
                .entry(key.tgid)
                .or_default()
                .extend(lookup_addrs(stack));
        }
        if let Some(stack) = raw
            .stacks
            .get(&key.kernel_stack_id)
            .filter(|_| key.kernel_stack_id >= 0)
        {
            kernel_addrs.extend(lookup_addrs(stack));
        }
    }

    let mut user_names: HashMap<(u32, u64), Names> = HashMap::new();
    for (pid, mut addrs) in user_addrs {
        addrs.sort_unstable();
        addrs.dedup();
        let mut process = Process::new(Pid::from(pid));
        // Reading /proc/PID/map_files needs CAP_SYS_ADMIN; the maps file
        // is enough for what we symbolize.
        process.map_files = false;
        let src = Source::Process(process);
        let syms = symbolizer
            .symbolize(&src, Input::AbsAddr(&addrs))
            .unwrap_or_default();
        for (addr, sym) in addrs.iter().zip(syms.iter()) {
            user_names.insert((pid, *addr), names_of(sym, ""));
        }
    }

    let mut kernel_names: HashMap<u64, Names> = HashMap::new();
    kernel_addrs.sort_unstable();
    kernel_addrs.dedup();
    if kernel_visible && !kernel_addrs.is_empty() {
        // kallsyms only: searching for a vmlinux image is slow and rarely
        // finds one on production hosts.
        let src = Source::Kernel(Kernel {
            vmlinux: MaybeDefault::None,
            ..Default::default()
        });
        let syms = symbolizer
            .symbolize(&src, Input::AbsAddr(&kernel_addrs))
            .unwrap_or_default();
        for (addr, sym) in kernel_addrs.iter().zip(syms.iter()) {
            kernel_names.insert(*addr, names_of(sym, "_[k]"));
        }
    }

    let mut merged: HashMap<Vec<String>, u64> = HashMap::new();
    for (key, count) in &raw.counts {
        let comm = comms
            .get(&key.tgid)
            .cloned()
            .unwrap_or_else(|| format!("pid {}", key.tgid));
        let mut frames = vec![sanitize(&comm)];
        match raw
            .stacks
            .get(&key.user_stack_id)
            .filter(|_| key.user_stack_id >= 0)
        {
            Some(stack) => {
                let addrs: Vec<u64> = lookup_addrs(stack).collect();
                for addr in addrs.iter().rev() {
                    match user_names.get(&(key.tgid, *addr)) {
                        Some(names) => frames.extend(names.iter().cloned()),
                        None => frames.push(UNKNOWN.to_string()),
                    }
                }
            }
            None => frames.push(UNKNOWN.to_string()),
        }
        if let Some(stack) = raw
            .stacks
            .get(&key.kernel_stack_id)
            .filter(|_| key.kernel_stack_id >= 0)
        {
            let addrs: Vec<u64> = lookup_addrs(stack).collect();
            for addr in addrs.iter().rev() {
                match kernel_names.get(addr) {
                    Some(names) => frames.extend(names.iter().cloned()),
                    None => frames.push(format!("{UNKNOWN}_[k]")),
                }
            }
        }
        *merged.entry(frames).or_default() += count;
    }
    let mut stacks: Vec<_> = merged.into_iter().collect();
    stacks.sort();
    Folded { stacks }
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
