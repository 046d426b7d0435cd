//! The user side of `--off-cpu`, without the kernel: the scheduler ring's
//! records parsed, switch-in events turned into exact totals (off-CPU time
//! by state, run-queue latency in an HdrHistogram, per-second buckets),
//! and the sampled waits' stacks aggregated by (where it waited, how, what
//! woke it). Frame-pointer targets' stacks are aggregated in the kernel;
//! DWARF targets' come here as stack copies, which the reader unwinds and
//! this joins with the events that refer to them.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use loadgen_ebpf_common::{
    COPY_HEADER_BYTES, OffCpuKey, SWITCH_EVENT_BYTES, SwitchEvent, ThreadState, off_state,
    sched_record, thread_flags,
};

use super::ringbuf::{self, Record, RecordError};

/// One record of the scheduler ring.
#[derive(Debug, Clone, Copy)]
pub enum SchedRecord<'a> {
    Switch(SwitchEvent),
    /// A user-stack copy: of a switched-out thread, or of a waker.
    Copy {
        copy: u64,
        waker: bool,
        sample: Record<'a>,
    },
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]))
}

/// Parses a record (native byte order, as the kernel wrote it).
pub fn parse(bytes: &[u8]) -> Result<SchedRecord<'_>, RecordError> {
    if bytes.len() < 4 {
        return Err(RecordError::Short(bytes.len()));
    }
    match u32_at(bytes, 0) {
        sched_record::SWITCH_IN => {
            if bytes.len() < SWITCH_EVENT_BYTES {
                return Err(RecordError::Short(bytes.len()));
            }
            let w = |i| u32_at(bytes, i);
            Ok(SchedRecord::Switch(SwitchEvent {
                kind: w(0),
                tgid: w(4),
                tid: w(8),
                state: w(12),
                at: u64_at(bytes, 16),
                off_ns: u64_at(bytes, 24),
                queued_ns: u64_at(bytes, 32),
                weight: w(40),
                flags: w(44),
                copy: u64_at(bytes, 48),
                waker_copy: u64_at(bytes, 56),
                user_stack: w(64) as i32,
                kernel_stack: w(68) as i32,
                waker_tgid: w(72),
                waker_user: w(76) as i32,
                waker_kernel: w(80) as i32,
                _pad: 0,
            }))
        }
        kind @ (sched_record::STACK | sched_record::WAKER_STACK) => {
            if bytes.len() < COPY_HEADER_BYTES {
                return Err(RecordError::Short(bytes.len()));
            }
            Ok(SchedRecord::Copy {
                copy: u64_at(bytes, 8),
                waker: kind == sched_record::WAKER_STACK,
                sample: ringbuf::parse(&bytes[COPY_HEADER_BYTES..])?,
            })
        }
        other => Err(RecordError::Kind(other)),
    }
}

/// A user stack: a frame-pointer stack id (in the kernel's stack map), or
/// frames unwound from a copy, innermost first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stack {
    None,
    Id(i32),
    Frames(Vec<u64>),
}

impl Stack {
    fn id(id: i32) -> Stack {
        if id >= 0 { Stack::Id(id) } else { Stack::None }
    }
}

/// What woke a wait: the waker's process and its stacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WakerKey {
    pub tgid: u32,
    pub user: Stack,
    /// Kernel stack id (negative: none).
    pub kernel: i32,
}

/// Where a wait happened, in which state, and what ended it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitKey {
    pub tgid: u32,
    pub user: Stack,
    pub kernel: i32,
    /// One of `off_state`.
    pub state: u32,
    pub waker: Option<WakerKey>,
}

impl WaitKey {
    /// The key of an in-kernel (frame-pointer) aggregate.
    pub fn of_kernel(k: &OffCpuKey) -> WaitKey {
        WaitKey {
            tgid: k.tgid,
            user: Stack::id(k.user_stack),
            kernel: k.kernel_stack,
            state: k.state,
            waker: (k.flags & thread_flags::WOKEN != 0).then(|| WakerKey {
                tgid: k.waker_tgid,
                user: Stack::id(k.waker_user),
                kernel: k.waker_kernel,
            }),
        }
    }
}

/// Time and number of waits, weighted by the sampling (estimates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weighted {
    pub ns: u64,
    pub waits: u64,
}

impl Weighted {
    pub fn add(&mut self, o: Weighted) {
        self.ns += o.ns;
        self.waits += o.waits;
    }
}

/// What the target did in one second of the profile's window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TargetSecond {
    /// On-CPU samples taken in the second.
    pub on_cpu_samples: u64,
    /// Time the target's threads spent off the CPU in the second, summed
    /// over threads (waits of at least `--off-cpu-min`), ms.
    pub off_cpu_ms: f64,
    /// Run-queue latency p99 of the threads that got a CPU in the second.
    pub runq_p99_us: Option<u64>,
}

/// Per-second buckets from the window's start (monotonic ns). Run-queue
/// histograms are kept only for the last seconds (events from different
/// CPUs arrive a little out of order) and reduced to their p99 after.
#[derive(Debug, Clone)]
pub struct Timeline {
    start_ns: u64,
    on_cpu: Vec<u64>,
    off_ns: Vec<u64>,
    runq_p99: Vec<Option<u64>>,
    open: BTreeMap<usize, Histogram<u64>>,
}

/// Seconds behind the newest whose run-queue histogram stays open.
const OPEN_SECONDS: usize = 2;
const NS: u64 = 1_000_000_000;

impl Timeline {
    pub fn new(start_ns: u64) -> Timeline {
        Timeline {
            start_ns,
            on_cpu: Vec::new(),
            off_ns: Vec::new(),
            runq_p99: Vec::new(),
            open: BTreeMap::new(),
        }
    }

    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    fn second(&self, at: u64) -> Option<usize> {
        let s = (at.checked_sub(self.start_ns)? / NS) as usize;
        // More than a day of seconds is a clock problem, not a run.
        (s < 86_400).then_some(s)
    }

    fn grow(v: &mut Vec<u64>, len: usize) {
        if v.len() < len {
            v.resize(len, 0);
        }
    }

    pub fn add_on_cpu(&mut self, at: u64, samples: u64) {
        if let Some(s) = self.second(at) {
            Self::grow(&mut self.on_cpu, s + 1);
            self.on_cpu[s] += samples;
        }
    }

    /// Adds the wait `[from, to)`, split over the seconds it spans (the
    /// part before the window's start is not counted).
    pub fn add_off(&mut self, from: u64, to: u64) {
        let from = from.max(self.start_ns);
        if to <= from {
            return;
        }
        let Some(last) = self.second(to - 1) else {
            return;
        };
        let first = ((from - self.start_ns) / NS) as usize;
        Self::grow(&mut self.off_ns, last + 1);
        for s in first..=last {
            let lo = from.max(self.start_ns + s as u64 * NS);
            let hi = to.min(self.start_ns + (s as u64 + 1) * NS);
            self.off_ns[s] += hi.saturating_sub(lo);
        }
    }

    pub fn add_runq(&mut self, at: u64, us: u64) {
        let Some(s) = self.second(at) else {
            return;
        };
        if s < self.runq_p99.len() {
            // That second was closed already: too late to count.
            return;
        }
        self.open
            .entry(s)
            .or_insert_with(runq_histogram)
            .saturating_record(us.max(1));
        let newest = *self.open.keys().next_back().unwrap_or(&s);
        while let Some((&old, _)) = self.open.first_key_value() {
            if old + OPEN_SECONDS >= newest {
                break;
            }
            self.close(old);
        }
    }

    fn close(&mut self, s: usize) {
        let h = self.open.remove(&s);
        if self.runq_p99.len() <= s {
            self.runq_p99.resize(s + 1, None);
        }
        self.runq_p99[s] = h
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99));
    }

    /// The seconds, closing every open one. `len` seconds at least (the
    /// window's length), more if events came later.
    pub fn seconds(mut self, len: usize) -> Vec<TargetSecond> {
        let open: Vec<usize> = self.open.keys().copied().collect();
        for s in open {
            self.close(s);
        }
        let n = len
            .max(self.on_cpu.len())
            .max(self.off_ns.len())
            .max(self.runq_p99.len());
        (0..n)
            .map(|s| TargetSecond {
                on_cpu_samples: self.on_cpu.get(s).copied().unwrap_or(0),
                off_cpu_ms: self.off_ns.get(s).copied().unwrap_or(0) as f64 / 1e6,
                runq_p99_us: self.runq_p99.get(s).copied().flatten(),
            })
            .collect()
    }
}

/// µs, 1 µs to an hour, 3 significant digits (as the client's latency).
pub fn runq_histogram() -> Histogram<u64> {
    crate::histogram::new_latency_histogram()
}

/// Exact figures, from every switch-in of a target thread.
#[derive(Debug, Clone)]
pub struct Totals {
    /// Off-CPU time by `off_state` of the waits of at least the minimum.
    pub by_state_ns: [u64; off_state::LEN],
    pub waits: u64,
    /// Wakeup (or preemption) → running, µs.
    pub runq: Histogram<u64>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            by_state_ns: [0; off_state::LEN],
            waits: 0,
            runq: runq_histogram(),
        }
    }
}

impl Totals {
    pub fn total_ns(&self) -> u64 {
        self.by_state_ns.iter().sum()
    }

    pub fn add(&mut self, o: &Totals) {
        for (a, b) in self.by_state_ns.iter_mut().zip(o.by_state_ns) {
            *a += b;
        }
        self.waits += o.waits;
        crate::histogram::add(&mut self.runq, &o.runq);
    }
}

/// Bookkeeping of the records themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub events: u64,
    pub copies: u64,
    /// Events whose stack copy never arrived (the ring was full).
    pub copies_missing: u64,
    /// Copies dropped unjoined to bound memory (their event was lost).
    pub copies_dropped: u64,
    pub bad_records: u64,
}

/// Copies kept waiting for their event; beyond this the oldest are
/// dropped (each thread has at most two outstanding, so only lost events
/// leave copies behind).
const MAX_PENDING: usize = 1 << 16;

/// Aggregates the scheduler ring's records.
#[derive(Debug)]
pub struct SchedAggregator {
    min_off_ns: u64,
    pub totals: Totals,
    /// Sampled waits that were not aggregated in the kernel.
    pub waits: HashMap<WaitKey, Weighted>,
    pending: HashMap<u64, (u32, Vec<u64>)>,
    pub counts: RecordCounts,
}

impl SchedAggregator {
    pub fn new(min_off_ns: u64) -> SchedAggregator {
        SchedAggregator {
            min_off_ns: min_off_ns.max(1),
            totals: Totals::default(),
            waits: HashMap::new(),
            pending: HashMap::new(),
            counts: RecordCounts::default(),
        }
    }

    /// A stack copy, unwound (its frames, innermost first).
    pub fn add_copy(&mut self, copy: u64, tgid: u32, frames: Vec<u64>) {
        self.counts.copies += 1;
        if self.pending.len() >= MAX_PENDING {
            // Copies are numbered per CPU in the high bits: the smallest
            // are the oldest of their CPU.
            let mut ids: Vec<u64> = self.pending.keys().copied().collect();
            ids.sort_unstable_by_key(|c| c >> 12);
            for id in &ids[..ids.len() / 2] {
                self.pending.remove(id);
            }
            self.counts.copies_dropped += (ids.len() / 2) as u64;
        }
        self.pending.insert(copy, (tgid, frames));
    }

    fn take_copy(&mut self, copy: u64) -> Stack {
        if copy == 0 {
            return Stack::None;
        }
        match self.pending.remove(&copy) {
            Some((_, frames)) if !frames.is_empty() => Stack::Frames(frames),
            Some(_) => Stack::None,
            None => {
                self.counts.copies_missing += 1;
                Stack::None
            }
        }
    }

    /// A target thread got the CPU back.
    pub fn add_switch(&mut self, ev: &SwitchEvent, tl: &mut Timeline) {
        self.counts.events += 1;
        // Frame-pointer stacks were added in the kernel already.
        let here = ev.flags & thread_flags::FP_STACK == 0;
        self.add_wait(ev, here, tl);
    }

    /// A thread still off the CPU when the window closed at `end_ns`: its
    /// wait so far counts (it has no run-queue latency yet).
    pub fn add_unfinished(&mut self, tid: u32, t: &ThreadState, end_ns: u64, tl: &mut Timeline) {
        if t.off_since == 0 || end_ns <= t.off_since {
            return;
        }
        let ev = SwitchEvent {
            kind: sched_record::SWITCH_IN,
            tgid: t.tgid,
            tid,
            state: t.state,
            at: end_ns,
            off_ns: end_ns - t.off_since,
            queued_ns: 0,
            weight: t.weight,
            flags: t.flags,
            copy: t.copy,
            waker_copy: t.waker_copy,
            user_stack: t.user_stack,
            kernel_stack: t.kernel_stack,
            waker_tgid: t.waker_tgid,
            waker_user: t.waker_user,
            waker_kernel: t.waker_kernel,
            _pad: 0,
        };
        self.add_wait(&ev, true, tl);
    }

    fn add_wait(&mut self, ev: &SwitchEvent, stacks_here: bool, tl: &mut Timeline) {
        if ev.queued_ns > 0 {
            let us = ev.queued_ns.div_ceil(1000);
            self.totals.runq.saturating_record(us.max(1));
            tl.add_runq(ev.at, us);
        }
        let counted = ev.off_ns > 0 && ev.off_ns >= self.min_off_ns;
        if counted {
            if let Some(slot) = self.totals.by_state_ns.get_mut(ev.state as usize) {
                *slot += ev.off_ns;
            }
            self.totals.waits += 1;
            tl.add_off(ev.at - ev.off_ns, ev.at);
        }
        // Copies are taken out even for a wait too short to count, so none
        // is left behind.
        let fp = ev.flags & thread_flags::FP_STACK != 0;
        let user = if fp {
            Stack::id(ev.user_stack)
        } else {
            self.take_copy(ev.copy)
        };
        let woken = ev.flags & thread_flags::WOKEN != 0;
        let waker_user = if ev.waker_copy != 0 {
            self.take_copy(ev.waker_copy)
        } else {
            Stack::id(ev.waker_user)
        };
        if !(counted && stacks_here && ev.weight > 0) {
            return;
        }
        let key = WaitKey {
            tgid: ev.tgid,
            user,
            kernel: ev.kernel_stack,
            state: ev.state,
            waker: woken.then_some(WakerKey {
                tgid: ev.waker_tgid,
                user: waker_user,
                kernel: ev.waker_kernel,
            }),
        };
        let w = ev.weight as u64;
        self.waits.entry(key).or_default().add(Weighted {
            ns: ev.off_ns * w,
            waits: w,
        });
    }
}

/// Where a wait starts to count as long (its thread's next switch-out
/// has its stacks taken whatever the sampling), until long waits take more
/// than half the stack budget.
pub const LONG_WAIT_NS: u64 = 10_000_000;

/// The long-wait threshold for the next interval: doubled while the
/// stacks taken for long waits exceed half the budget, halved back
/// towards [`LONG_WAIT_NS`] when they use less than an eighth.
pub fn long_wait_ns(current: u64, long_stacks_per_s: f64, budget: f64) -> u64 {
    if long_stacks_per_s > budget / 2.0 {
        (current.saturating_mul(2)).min(3_600 * 1_000_000_000)
    } else if long_stacks_per_s < budget / 8.0 && current > LONG_WAIT_NS {
        (current / 2).max(LONG_WAIT_NS)
    } else {
        current
    }
}

/// 1 in how many switch-outs to take stacks of, to keep to `budget`
/// stacks a second at `switch_outs_per_s`.
pub fn sample_every(switch_outs_per_s: f64, budget: f64) -> u32 {
    if budget <= 0.0 || switch_outs_per_s <= budget {
        return 1;
    }
    (switch_outs_per_s / budget).ceil().min(65_536.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn ev(at: u64, off: u64, queued: u64) -> SwitchEvent {
        SwitchEvent {
            kind: sched_record::SWITCH_IN,
            tgid: 7,
            tid: 8,
            state: off_state::SLEEP,
            at,
            off_ns: off,
            queued_ns: queued,
            weight: 1,
            flags: 0,
            user_stack: -1,
            kernel_stack: 3,
            waker_user: -1,
            waker_kernel: -1,
            ..Default::default()
        }
    }

    fn bytes(e: &SwitchEvent) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [e.kind, e.tgid, e.tid, e.state] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        for x in [e.at, e.off_ns, e.queued_ns] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        for x in [e.weight, e.flags] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        for x in [e.copy, e.waker_copy] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        for x in [
            e.user_stack as u32,
            e.kernel_stack as u32,
            e.waker_tgid,
            e.waker_user as u32,
            e.waker_kernel as u32,
            0,
        ] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        v
    }

    #[test]
    fn parses_events_copies_and_rejects_junk() {
        let e = SwitchEvent {
            copy: 0x5001,
            waker_tgid: 99,
            waker_kernel: 12,
            flags: thread_flags::WOKEN,
            ..ev(5 * S, 3 * MS, 20_000)
        };
        let b = bytes(&e);
        assert_eq!(b.len(), SWITCH_EVENT_BYTES);
        match parse(&b).unwrap() {
            SchedRecord::Switch(p) => assert_eq!(p, e),
            other => panic!("{other:?}"),
        }
        let mut c = Vec::new();
        c.extend_from_slice(&sched_record::WAKER_STACK.to_ne_bytes());
        c.extend_from_slice(&0u32.to_ne_bytes());
        c.extend_from_slice(&0x7002u64.to_ne_bytes());
        c.extend_from_slice(&[0u8; loadgen_ebpf_common::SAMPLE_HEADER_BYTES]);
        match parse(&c).unwrap() {
            SchedRecord::Copy {
                copy,
                waker,
                sample,
            } => {
                assert_eq!((copy, waker, sample.stack.len()), (0x7002, true, 0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(&b[..40]).unwrap_err(), RecordError::Short(40));
        assert_eq!(parse(&[9, 0, 0, 0]).unwrap_err(), RecordError::Kind(9));
        assert!(parse(&c[..20]).is_err());
    }

    #[test]
    fn totals_are_exact_and_stacks_weighted() {
        let mut a = SchedAggregator::new(1000);
        let tl = &mut Timeline::new(0);
        // A sampled 4 ms sleep (1 in 4), an unsampled 2 ms sleep, a
        // preemption of 300 µs, and a wait below the minimum.
        a.add_switch(
            &SwitchEvent {
                weight: 4,
                ..ev(S, 4 * MS, 50_000)
            },
            tl,
        );
        a.add_switch(
            &SwitchEvent {
                weight: 0,
                ..ev(S + 10 * MS, 2 * MS, 10_000)
            },
            tl,
        );
        a.add_switch(
            &SwitchEvent {
                state: off_state::RUNNABLE,
                ..ev(S + 20 * MS, 300_000, 300_000)
            },
            tl,
        );
        a.add_switch(&ev(S + 30 * MS, 500, 400), tl);
        let t = &a.totals;
        assert_eq!(t.by_state_ns[off_state::SLEEP as usize], 6 * MS);
        assert_eq!(t.by_state_ns[off_state::RUNNABLE as usize], 300_000);
        assert_eq!(t.waits, 3);
        // Every switch-in with a queue time counts, short waits too.
        assert_eq!(t.runq.len(), 4);
        assert_eq!((t.runq.min(), t.runq.max()), (1, 300));
        assert_eq!(a.waits.len(), 2);
        let sleep = a
            .waits
            .iter()
            .find(|(k, _)| k.state == off_state::SLEEP)
            .unwrap()
            .1;
        assert_eq!(
            *sleep,
            Weighted {
                ns: 16 * MS,
                waits: 4
            }
        );
    }

    #[test]
    fn dwarf_copies_join_their_events_and_frame_pointer_ones_stay_in_the_kernel() {
        let mut a = SchedAggregator::new(1);
        let tl = &mut Timeline::new(0);
        a.add_copy(0x1001, 7, vec![0x10, 0x20]);
        a.add_copy(0x2001, 9, vec![0x90]);
        a.add_switch(
            &SwitchEvent {
                copy: 0x1001,
                waker_copy: 0x2001,
                waker_tgid: 9,
                waker_kernel: 5,
                flags: thread_flags::WOKEN,
                ..ev(S, MS, 0)
            },
            tl,
        );
        let (k, w) = a.waits.iter().next().unwrap();
        assert_eq!(k.user, Stack::Frames(vec![0x10, 0x20]));
        let waker = k.waker.as_ref().unwrap();
        assert_eq!(
            (waker.tgid, &waker.user, waker.kernel),
            (9, &Stack::Frames(vec![0x90]), 5)
        );
        assert_eq!(w.ns, MS);
        // A copy that never came is counted, and the wait keeps its kernel
        // stack.
        a.add_switch(
            &SwitchEvent {
                copy: 0x3001,
                ..ev(2 * S, MS, 0)
            },
            tl,
        );
        assert_eq!(a.counts.copies_missing, 1);
        // Frame-pointer waits are the kernel's to add.
        a.add_switch(
            &SwitchEvent {
                flags: thread_flags::FP_STACK,
                user_stack: 4,
                ..ev(3 * S, MS, 0)
            },
            tl,
        );
        assert_eq!(a.waits.len(), 2);
        assert_eq!(a.totals.waits, 3);
        // Unless the window closed on them.
        let t = ThreadState {
            off_since: 3 * S + MS,
            tgid: 7,
            state: off_state::DISK,
            weight: 2,
            user_stack: 4,
            kernel_stack: 6,
            flags: thread_flags::FP_STACK,
            ..Default::default()
        };
        a.add_unfinished(8, &t, 3 * S + 11 * MS, tl);
        let k = WaitKey {
            tgid: 7,
            user: Stack::Id(4),
            kernel: 6,
            state: off_state::DISK,
            waker: None,
        };
        assert_eq!(
            a.waits[&k],
            Weighted {
                ns: 20 * MS,
                waits: 2
            }
        );
        assert_eq!(a.totals.by_state_ns[off_state::DISK as usize], 10 * MS);
    }

    #[test]
    fn kernel_keys_convert() {
        let k = OffCpuKey {
            tgid: 1,
            user_stack: -14,
            kernel_stack: 2,
            state: off_state::SLEEP,
            flags: thread_flags::FP_STACK | thread_flags::WOKEN,
            waker_tgid: 0,
            waker_user: -1,
            waker_kernel: 8,
        };
        let w = WaitKey::of_kernel(&k);
        assert_eq!(w.user, Stack::None);
        assert_eq!(w.waker.unwrap().kernel, 8);
        let k = OffCpuKey { flags: 0, ..k };
        assert!(WaitKey::of_kernel(&k).waker.is_none());
    }

    #[test]
    fn timeline_splits_waits_over_seconds_and_keeps_p99_per_second() {
        let mut t = Timeline::new(10 * S);
        // 1.5 s of wait from 10.5 s to 12 s: half in second 0, all of 1.
        t.add_off(10 * S + S / 2, 12 * S);
        // A wait that began before the window: only its part inside.
        t.add_off(9 * S, 10 * S + 100 * MS);
        t.add_on_cpu(10 * S + 1, 3);
        t.add_on_cpu(12 * S + 1, 2);
        t.add_on_cpu(5 * S, 100);
        for i in 0..100u64 {
            t.add_runq(10 * S + i * MS, if i == 99 { 5000 } else { 10 });
        }
        for s in 1..6u64 {
            t.add_runq(10 * S + s * S, 100 * s);
        }
        // Second 0 was closed by now: a straggler is not counted.
        t.add_runq(10 * S + 5, 1_000_000);
        let secs = t.seconds(7);
        assert_eq!(secs.len(), 7);
        assert!((secs[0].off_cpu_ms - 600.0).abs() < 1e-9, "{secs:?}");
        assert!((secs[1].off_cpu_ms - 1000.0).abs() < 1e-9);
        assert_eq!(secs[2].off_cpu_ms, 0.0);
        assert_eq!((secs[0].on_cpu_samples, secs[2].on_cpu_samples), (3, 2));
        assert_eq!(secs[0].runq_p99_us, Some(10));
        assert_eq!(secs[3].runq_p99_us, Some(300));
        assert_eq!(secs[6].runq_p99_us, None);
    }

    #[test]
    fn long_waits_stay_within_half_the_budget() {
        assert_eq!(long_wait_ns(LONG_WAIT_NS, 100.0, 1000.0), LONG_WAIT_NS);
        assert_eq!(long_wait_ns(LONG_WAIT_NS, 600.0, 1000.0), 2 * LONG_WAIT_NS);
        assert_eq!(
            long_wait_ns(8 * LONG_WAIT_NS, 10.0, 1000.0),
            4 * LONG_WAIT_NS
        );
        assert_eq!(long_wait_ns(LONG_WAIT_NS, 0.0, 1000.0), LONG_WAIT_NS);
        assert_eq!(long_wait_ns(u64::MAX / 2, 1e9, 1.0), 3_600_000_000_000);
    }

    #[test]
    fn sampling_keeps_to_the_budget() {
        assert_eq!(sample_every(500.0, 1000.0), 1);
        assert_eq!(sample_every(1000.0, 1000.0), 1);
        assert_eq!(sample_every(1001.0, 1000.0), 2);
        assert_eq!(sample_every(50_000.0, 1000.0), 50);
        assert_eq!(sample_every(1e12, 1.0), 65_536);
        assert_eq!(sample_every(1e6, 0.0), 1);
    }
}
