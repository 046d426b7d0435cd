//! The profiler's user side on real stacks: this process captures its own
//! registers and stack (as the BPF side would) at 16 points, 12 to 40
//! frames deep, some through glibc (`qsort` calling back into Rust); then
//! the benchmarks unwind them with the production unwinder (CFI of this
//! binary and of libc) and symbolize them as a finished profile does.
//!
//! Throughput is in samples: `unwind` is the reader thread's work per
//! sample, `unwind+symbolize` a whole profile of 10 000 samples from a
//! cold symbolizer (the end-of-run cost).

use std::collections::HashMap;

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use loadgen::profile::maps;
use loadgen::profile::objects::{Arch, ObjectCache};
use loadgen::profile::ringbuf::StackCounts;
use loadgen::profile::unwind::{ProcessUnwinder, Regs, StackCopy};

struct Captured {
    regs: Regs,
    stack: Vec<u8>,
}

/// The top of this thread's stack mapping.
fn stack_end() -> u64 {
    let here = 0u8;
    let m = maps::read(std::process::id()).expect("own maps");
    maps::find(&m, &here as *const u8 as u64)
        .expect("the stack is mapped")
        .end
}

#[inline(never)]
fn capture(out: &mut Vec<Captured>, end: u64) {
    let (ip, sp, fp): (u64, u64, u64);
    // SAFETY: reads three registers; no memory is touched.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {fp}, rbp",
            ip = out(reg) ip, sp = out(reg) sp, fp = out(reg) fp)
    };
    #[cfg(target_arch = "aarch64")]
    let lr: u64;
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("adr {ip}, .", "mov {sp}, sp", "mov {fp}, x29", "mov {lr}, x30",
            ip = out(reg) ip, sp = out(reg) sp, fp = out(reg) fp, lr = out(reg) lr)
    };
    #[cfg(target_arch = "x86_64")]
    let lr = 0;
    let len = (end - sp).min(16384) as usize;
    // SAFETY: [sp, sp + len) is this thread's live stack, mapped and
    // readable (len stops at the mapping's end); copied at once.
    let stack = unsafe { std::slice::from_raw_parts(sp as *const u8, len) }.to_vec();
    out.push(Captured {
        regs: Regs { ip, sp, fp, lr },
        stack,
    });
}

fn copy(s: &Captured) -> StackCopy<'_> {
    StackCopy {
        bytes: &s.stack,
        short: true,
        missing_pieces: 0,
    }
}

struct Ctx<'a> {
    out: &'a mut Vec<Captured>,
    end: u64,
}

extern "C" fn compare(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    // SAFETY: qsort passes pointers into the array below: two elements,
    // each a pointer to the same Ctx.
    let ctx = unsafe { &mut **(a as *const *mut Ctx<'_>) };
    capture(ctx.out, ctx.end);
    let _ = b;
    0
}

#[inline(never)]
fn deep(n: usize, via_libc: bool, out: &mut Vec<Captured>, end: u64) -> usize {
    if n == 0 {
        if via_libc {
            let mut ctx = Ctx { out, end };
            let p: *mut Ctx<'_> = &mut ctx;
            let mut arr = [p, p];
            // SAFETY: a two-element array of pointers, the element size
            // given, a comparator that only reads them.
            unsafe {
                libc::qsort(
                    arr.as_mut_ptr().cast(),
                    2,
                    std::mem::size_of::<*mut Ctx<'_>>(),
                    Some(compare),
                )
            };
        } else {
            capture(out, end);
        }
        return 0;
    }
    black_box(deep(n - 1, via_libc, out, end)) + 1
}

fn captures() -> Vec<Captured> {
    let end = stack_end();
    let mut out = Vec::new();
    for i in 0..16 {
        let before = out.len();
        deep(10 + 2 * i, i % 2 == 1, &mut out, end);
        out.truncate(before + 1);
    }
    out
}

fn bench(c: &mut Criterion) {
    let samples = captures();
    let pid = std::process::id();
    let m = maps::read(pid).expect("own maps");
    let mut objects = ObjectCache::default();
    let mut u = ProcessUnwinder::new(Arch::native(), m, |mm| objects.get(pid, mm));
    let depth: Vec<usize> = samples
        .iter()
        .map(|s| u.unwind(&s.regs, copy(s)).frames.len())
        .collect();
    eprintln!("captured stacks, frames each: {depth:?}");
    assert!(
        depth.len() == 16 && depth.iter().all(|&d| d >= 12),
        "shallow unwind: {depth:?}"
    );

    let mut g = c.benchmark_group("profile");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("unwind", |b| {
        b.iter(|| {
            for s in &samples {
                black_box(u.unwind(&s.regs, copy(s)));
            }
        })
    });
    const PROFILE: u64 = 10_000;
    let comms = HashMap::from([(pid, "bench".to_string())]);
    g.throughput(Throughput::Elements(PROFILE));
    g.sample_size(10);
    g.bench_function("unwind+symbolize 10k samples", |b| {
        b.iter(|| {
            let mut stacks = StackCounts::new();
            for i in 0..PROFILE as usize {
                let s = &samples[i % samples.len()];
                let out = u.unwind(&s.regs, copy(s));
                *stacks.entry((pid, out.frames, -1)).or_default() += 1;
            }
            black_box(loadgen::profile::fold_unwound(&stacks, &comms))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
