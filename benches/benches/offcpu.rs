//! The off-CPU profiler's user side: the reader thread's work per
//! scheduler event (parse the ring record, add it to the exact totals,
//! the run-queue histogram and the per-second buckets, and to the sampled
//! stacks), and the end-of-run views (folded µs, the blocking table,
//! wakers, functions) of a profile with 2000 distinct waits.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use loadgen::profile::OffCpu;
use loadgen::profile::offcpu::{OffCpuLost, Wait, Waker};
use loadgen::profile::sched::{self, SchedAggregator, Timeline, Totals};

const EVENTS: usize = 100_000;

/// Ring records as the kernel writes them: switch-ins 0.1 ms apart, waits
/// of 10 µs to 5 ms, one in 8 sampled with one of 64 stacks.
fn records() -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..EVENTS)
        .map(|i| {
            let r = next();
            let sampled = r % 8 == 0;
            let words32 = |v: &mut Vec<u8>, xs: &[u32]| {
                xs.iter()
                    .for_each(|x| v.extend_from_slice(&x.to_ne_bytes()))
            };
            let mut v = Vec::with_capacity(88);
            words32(&mut v, &[1, 1000, 1000 + (r % 16) as u32, (r % 3) as u32]);
            for x in [
                1_000_000_000 + i as u64 * 100_000,
                10_000 + r % 5_000_000,
                r % 200_000,
            ] {
                v.extend_from_slice(&x.to_ne_bytes());
            }
            words32(
                &mut v,
                &[if sampled { 8 } else { 0 }, 2 | u32::from(r % 2 == 0)],
            );
            v.extend_from_slice(&[0u8; 16]);
            words32(
                &mut v,
                &[
                    (r % 64) as u32,
                    (r >> 8) as u32 % 64,
                    0,
                    (r >> 16) as u32 % 32,
                    (r >> 24) as u32 % 32,
                    0,
                ],
            );
            v
        })
        .collect()
}

fn waits() -> Vec<Wait> {
    let kernel = |site: &str| -> Vec<String> {
        [
            "entry_SYSCALL_64_after_hwframe_[k]",
            "do_syscall_64_[k]",
            site,
            "schedule_[k]",
            "__schedule_[k]",
            "bpf_prog_x_[k]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    (0..2000)
        .map(|i| {
            let user: Vec<String> = (0..20).map(|d| format!("fn_{}_{d}", i % 97)).collect();
            let waker = Waker::new(
                "client",
                Some((0..10).map(|d| format!("w_{}_{d}", i % 13)).collect()),
                kernel(&format!("wake_site_{}_[k]", i % 7)),
            );
            Wait::new(
                "server",
                Some(user),
                kernel(&format!("site_{}_[k]", i % 31)),
                (i % 3) as u32,
                Some(waker),
                (1_000_000 + i as u64, 3),
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let mut g = c.benchmark_group("offcpu");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("switch events", |b| {
        b.iter(|| {
            let mut agg = SchedAggregator::new(1000);
            let mut tl = Timeline::new(1_000_000_000);
            for r in &recs {
                if let Ok(sched::SchedRecord::Switch(ev)) = sched::parse(r) {
                    agg.add_switch(&ev, &mut tl);
                }
            }
            black_box((agg.totals.waits, tl.seconds(10).len()))
        })
    });
    let profile = OffCpu {
        waits: waits(),
        totals: Totals::default(),
        wakeups: 0,
        preemptions: 0,
        switch_outs: 0,
        stacks_taken: 0,
        min_ns: 1000,
        sample_every_max: 1,
        lost: OffCpuLost::default(),
    };
    g.throughput(Throughput::Elements(profile.waits.len() as u64));
    g.bench_function("views of 2000 waits", |b| {
        b.iter(|| {
            black_box((
                profile.folded().lines().len(),
                profile.blocking(15).len(),
                profile.wakers(15).len(),
                profile.functions(15).len(),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
