//! The reader thread: while the load runs it drains the DWARF samples'
//! ring buffer, unwinding each sample at once (so only the aggregated
//! stacks are kept, not megabytes of stack copies), and, with
//! `--off-cpu`, the scheduler ring (events and stack copies, see
//! `sched.rs`). It also notes the on-CPU samples of each second, and keeps
//! the stacks the scheduler programs take within a budget. It hands back
//! what it aggregated when sampling stops. Symbolizing stays on the main
//! thread (blazesym's symbolizer is not `Send`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use loadgen_ebpf_common::{
    PY_FRAME_BYTES, PyFrame, SAMPLE_HEADER_BYTES, SampleHeader, SchedConfig, TargetConfig, mode,
    sample_flags, stat,
};

use super::copy_size::CopySizes;
use super::maps;
use super::objects::{Arch, ObjectCache};
use super::python::PythonTargets;
use super::sched::{self, SchedAggregator, SchedRecord, Timeline};
use super::unwind::{Outcome, ProcessUnwinder, Regs, StackCopy, Unwound};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("ring-buffer record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("ring-buffer record says {said} stack bytes but carries {has}")]
    StackLength { said: usize, has: usize },
    #[error("ring-buffer record says {0} Python frames but does not carry them")]
    PythonLength(usize),
    #[error("ring-buffer record of unknown kind {0}")]
    Kind(u32),
}

/// One sample as the kernel side sent it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub header: SampleHeader,
    pub stack: &'a [u8],
    /// A CPython thread's Python stack: `header.py_frames` [`PyFrame`]s.
    pub python: &'a [u8],
}

impl Record<'_> {
    pub fn regs(&self) -> Regs {
        Regs {
            ip: self.header.ip,
            sp: self.header.sp,
            fp: self.header.fp,
            lr: self.header.lr,
        }
    }

    /// The Python frames, innermost first.
    pub fn python_frames(&self) -> impl Iterator<Item = PyFrame> + '_ {
        self.python.chunks_exact(PY_FRAME_BYTES).map(|c| PyFrame {
            code: u64::from_ne_bytes(c[..8].try_into().unwrap_or([0; 8])),
            instr: u64::from_ne_bytes(c[8..].try_into().unwrap_or([0; 8])),
        })
    }

    pub fn stack_copy(&self) -> StackCopy<'_> {
        StackCopy {
            bytes: self.stack,
            short: self.header.flags & sample_flags::SHORT != 0,
            missing_pieces: self.header.missing_pieces,
        }
    }
}

/// Parses a record: the header (native byte order, as the kernel wrote
/// it), then `stack_len` bytes. The ring may pad a record to 8 bytes.
pub fn parse(bytes: &[u8]) -> Result<Record<'_>, RecordError> {
    if bytes.len() < SAMPLE_HEADER_BYTES {
        return Err(RecordError::Short(bytes.len()));
    }
    let word = |i: usize| u64::from_ne_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
    let half = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().unwrap_or([0; 4]));
    let header = SampleHeader {
        tgid: half(0),
        kernel_stack_id: half(4) as i32,
        flags: half(8),
        stack_len: half(12),
        missing_pieces: half(16),
        py_frames: half(20),
        ip: word(24),
        sp: word(32),
        fp: word(40),
        lr: word(48),
    };
    let said = header.stack_len as usize;
    let stack = bytes[SAMPLE_HEADER_BYTES..]
        .get(..said)
        .ok_or(RecordError::StackLength {
            said,
            has: bytes.len() - SAMPLE_HEADER_BYTES,
        })?;
    // The Python frames start at the next multiple of 8 after the stack.
    let python = match header.py_frames as usize {
        0 => &[][..],
        n => {
            let at = SAMPLE_HEADER_BYTES + said.next_multiple_of(8);
            bytes
                .get(at..at + n * PY_FRAME_BYTES)
                .ok_or(RecordError::PythonLength(n))?
        }
    };
    Ok(Record {
        header,
        stack,
        python,
    })
}

/// What happened to the DWARF-mode samples.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnwindCounts {
    pub samples: u64,
    pub complete: u64,
    pub truncated: u64,
    pub read_failed: u64,
    pub broken: u64,
    pub too_deep: u64,
    pub bad_records: u64,
}

/// Stacks keyed by (tgid, user frames innermost first, kernel stack id).
pub type StackCounts = HashMap<(u32, Vec<u64>, i32), u64>;

#[derive(Debug, Default)]
pub struct Collected {
    pub stacks: StackCounts,
    pub counts: UnwindCounts,
    /// CPU time of the reader thread: draining, parsing, unwinding.
    pub cpu_time: Duration,
    /// Auto mode gave up on DWARF after this long into the window, when
    /// this many samples had found the ring full.
    pub switched_to_fp: Option<(Duration, u64)>,
    /// Objects that could not be read (their code unwinds with frame
    /// pointers).
    pub object_failures: Vec<String>,
    /// On-CPU samples (and, with the scheduler programs, waits and
    /// run-queue latency) by second of the window.
    pub timeline: Option<Timeline>,
    /// `--off-cpu`: what the scheduler ring brought.
    pub sched: Option<SchedAggregator>,
    /// The largest 1-in-N the stack budget needed.
    pub sample_every_max: u32,
    /// Each process's stack copy, raised for deep stacks.
    pub copy: CopySizes,
    /// CPython targets: the names of the Python frames in `stacks`.
    pub python: PythonTargets,
}

/// Per-sample aggregation, the part of the reader that needs no kernel.
pub struct Aggregator {
    pub procs: HashMap<u32, ProcessUnwinder>,
    pub objects: ObjectCache,
    /// CPython targets, whose Python frames go into their stacks.
    pub python: PythonTargets,
    arch: Arch,
    refreshed: HashMap<u32, Instant>,
    pub out: Collected,
    /// `LOADGEN_UNWIND_CAPTURE=DIR`: where to write the first raw samples
    /// of each process and its maps, to debug an unwind or make a test
    /// fixture from it (tests/fixtures/unwind/).
    capture: Option<(std::path::PathBuf, HashMap<u32, usize>)>,
}

/// Raw samples written per process with `LOADGEN_UNWIND_CAPTURE`.
const CAPTURE_PER_PROCESS: usize = 32;

impl Aggregator {
    pub fn new(
        arch: Arch,
        procs: HashMap<u32, ProcessUnwinder>,
        objects: ObjectCache,
        copy: CopySizes,
    ) -> Self {
        Aggregator {
            procs,
            objects,
            python: PythonTargets::default(),
            arch,
            refreshed: HashMap::new(),
            out: Collected {
                copy,
                ..Default::default()
            },
            capture: std::env::var_os("LOADGEN_UNWIND_CAPTURE").map(|d| (d.into(), HashMap::new())),
        }
    }

    /// With the CPython targets whose Python frames go into their stacks.
    pub fn with_python(mut self, python: PythonTargets) -> Self {
        self.python = python;
        self
    }

    fn capture(&mut self, pid: u32, bytes: &[u8]) {
        let Some((dir, seen)) = &mut self.capture else {
            return;
        };
        let n = seen.entry(pid).or_default();
        if *n >= CAPTURE_PER_PROCESS {
            return;
        }
        if *n == 0 {
            let _ = std::fs::create_dir_all(&*dir);
            let _ = std::fs::copy(format!("/proc/{pid}/maps"), dir.join(format!("{pid}.maps")));
        }
        let _ = std::fs::write(dir.join(format!("{pid}.{n}.sample")), bytes);
        *n += 1;
    }

    /// Unwinds one record and counts its stack.
    pub fn add(&mut self, bytes: &[u8]) {
        let Ok(rec) = parse(bytes) else {
            self.out.counts.bad_records += 1;
            return;
        };
        let pid = rec.header.tgid;
        self.capture(pid, bytes);
        let Some(unwound) = self.unwind(&rec) else {
            self.out.counts.bad_records += 1;
            return;
        };
        let c = &mut self.out.counts;
        c.samples += 1;
        match unwound.outcome {
            Outcome::Complete => c.complete += 1,
            Outcome::Truncated => c.truncated += 1,
            Outcome::ReadFailed => c.read_failed += 1,
            Outcome::Broken => c.broken += 1,
            Outcome::TooDeep => c.too_deep += 1,
        }
        *self
            .out
            .stacks
            .entry((pid, unwound.frames, rec.header.kernel_stack_id.max(-1)))
            .or_default() += 1;
    }

    /// Unwinds a record's stack with its process's unwinder (None: not a
    /// DWARF-mode target), with its Python frames in place. A walk that
    /// ran off the copy's end raises the process's copy (`copy_size`).
    pub fn unwind(&mut self, rec: &Record<'_>) -> Option<Unwound> {
        let pid = rec.header.tgid;
        let regs = rec.regs();
        self.refresh_if_stale(pid, &regs);
        let unwinder = self.procs.get_mut(&pid)?;
        let mut unwound = unwinder.unwind(&regs, rec.stack_copy());
        if unwound.outcome == Outcome::Truncated {
            let need = unwinder.stack_above(regs.sp);
            self.out.copy.truncated(pid, rec.header.stack_len, need);
        }
        if rec.header.py_frames > 0 {
            let python: Vec<PyFrame> = rec.python_frames().collect();
            unwound.frames = self
                .python
                .merge(pid, std::mem::take(&mut unwound.frames), &python);
        }
        Some(unwound)
    }

    /// Reads the maps again when a sample falls outside them (a new
    /// thread stack, a dlopen'ed library), at most every 100 ms per
    /// process.
    fn refresh_if_stale(&mut self, pid: u32, regs: &Regs) {
        let stale = self.procs.get(&pid).is_none_or(|u| u.is_stale_for(regs));
        if !stale {
            return;
        }
        let now = Instant::now();
        if self
            .refreshed
            .get(&pid)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_millis(100))
        {
            return;
        }
        self.refreshed.insert(pid, now);
        if let Ok(m) = maps::read(pid) {
            let objects = &mut self.objects;
            let u = ProcessUnwinder::new(self.arch, m, |m| objects.get(pid, m));
            self.procs.insert(pid, u);
        }
    }
}

/// The kernel-facing half: the rings, and the maps to watch drops, to
/// switch targets to frame pointers and to set the scheduler programs'
/// sampling.
pub struct Reader {
    /// DWARF samples (when some target uses DWARF).
    pub ring: Option<RingBuf<MapData>>,
    pub targets: BpfHashMap<MapData, u32, TargetConfig>,
    pub stats: PerCpuArray<MapData, u64>,
    /// Auto mode: fall back to frame pointers when the ring overflows.
    pub fallback: bool,
    /// `--off-cpu`: the scheduler ring and settings.
    pub sched: Option<(RingBuf<MapData>, Array<MapData, SchedConfig>)>,
}

/// What the reader does with the scheduler programs.
pub struct SchedPlan {
    pub agg: SchedAggregator,
    /// The settings the programs were loaded with.
    pub config: SchedConfig,
    /// Stacks a second to keep to (1 in N of the switch-outs above it).
    pub stacks_per_s: f64,
}

/// How often the reader drains the rings (records are sent without a
/// wakeup, so this bounds the rings' fill, not the latency of anything).
const DRAIN_EVERY: Duration = Duration::from_millis(10);
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How often the switch-out rate is looked at to set the sampling.
const SAMPLING_EVERY: Duration = Duration::from_millis(50);

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Reader {
    /// Starts the reader thread; it drains until `stop` is set, then
    /// once more, and returns what it aggregated. `start_ns` is the
    /// window's start (monotonic), where its seconds count from.
    pub fn spawn(
        mut self,
        mut agg: Aggregator,
        mut sched: Option<SchedPlan>,
        start_ns: u64,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<Collected>> {
        std::thread::Builder::new()
            .name("loadgen-unwind".into())
            .spawn(move || {
                let cpu_start = thread_cpu_time();
                let started = Instant::now();
                let mut timeline = Timeline::new(start_ns);
                let mut last_check = started;
                let mut last = (0u64, 0u64);
                let mut samples_seen = self.stat(stat::SAMPLES);
                let mut sampling = (
                    started,
                    self.stat(stat::SWITCH_OUT),
                    self.stat(stat::LONG_WAIT_STACKS),
                );
                let mut every_max = sched.as_ref().map_or(1, |p| p.config.sample_every);
                loop {
                    let stopping = stop.load(Ordering::Acquire);
                    if let Some(ring) = &mut self.ring {
                        while let Some(item) = ring.next() {
                            agg.add(&item);
                        }
                    }
                    if let (Some((ring, _)), Some(plan)) = (&mut self.sched, &mut sched) {
                        while let Some(item) = ring.next() {
                            sched_record(&item, &mut agg, &mut plan.agg, &mut timeline);
                        }
                    }
                    self.raise_copies(agg.out.copy.take_pending());
                    let samples = self.stat(stat::SAMPLES);
                    timeline.add_on_cpu(monotonic_ns(), samples.saturating_sub(samples_seen));
                    samples_seen = samples;
                    if stopping {
                        break;
                    }
                    if self.fallback
                        && self.ring.is_some()
                        && agg.out.switched_to_fp.is_none()
                        && last_check.elapsed() >= CHECK_EVERY
                    {
                        last_check = Instant::now();
                        let now = (self.stat(stat::RING_FULL), self.stat(stat::RING_SAMPLES));
                        let (full, sent) = (now.0 - last.0, now.1 - last.1);
                        last = now;
                        if overflowing(full, sent) {
                            self.switch_to_fp();
                            agg.out.switched_to_fp = Some((started.elapsed(), now.0));
                        }
                    }
                    if let Some(plan) = &mut sched
                        && sampling.0.elapsed() >= SAMPLING_EVERY
                    {
                        let (outs, long) = (
                            self.stat(stat::SWITCH_OUT),
                            self.stat(stat::LONG_WAIT_STACKS),
                        );
                        let dt = sampling.0.elapsed().as_secs_f64();
                        let rate = outs.saturating_sub(sampling.1) as f64 / dt;
                        let long_rate = long.saturating_sub(sampling.2) as f64 / dt;
                        sampling = (Instant::now(), outs, long);
                        let mut next = plan.config;
                        next.sample_every = sched::sample_every(rate, plan.stacks_per_s);
                        next.long_wait_ns =
                            sched::long_wait_ns(next.long_wait_ns, long_rate, plan.stacks_per_s);
                        if next != plan.config
                            && let Some((_, cfg)) = &mut self.sched
                            && cfg.set(0, next, 0).is_ok()
                        {
                            plan.config = next;
                            every_max = every_max.max(next.sample_every);
                        }
                    }
                    std::thread::sleep(DRAIN_EVERY);
                }
                agg.out.cpu_time = thread_cpu_time().saturating_sub(cpu_start);
                agg.out.object_failures = std::mem::take(&mut agg.objects.failures);
                agg.out.timeline = Some(timeline);
                agg.out.sched = sched.map(|p| p.agg);
                agg.out.sample_every_max = every_max;
                agg.out.python = std::mem::take(&mut agg.python);
                agg.out
            })
    }

    fn stat(&self, index: u32) -> u64 {
        self.stats
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Writes raised stack copies to the target map (a target switched
    /// to frame pointers keeps its mode).
    fn raise_copies(&mut self, raises: Vec<(u32, u32)>) {
        for (pid, bytes) in raises {
            if let Ok(mut cfg) = self.targets.get(&pid, 0) {
                cfg.stack_bytes = bytes;
                let _ = self.targets.insert(pid, cfg, 0);
            }
        }
    }

    fn switch_to_fp(&mut self) {
        let keys: Vec<u32> = self.targets.keys().filter_map(Result::ok).collect();
        for pid in keys {
            if let Ok(mut cfg) = self.targets.get(&pid, 0)
                && cfg.mode == mode::DWARF
            {
                cfg.mode = mode::FP;
                let _ = self.targets.insert(pid, cfg, 0);
            }
        }
    }
}

/// One record of the scheduler ring: events go to the aggregator, stack
/// copies are unwound first.
pub fn sched_record(
    bytes: &[u8],
    agg: &mut Aggregator,
    sched: &mut SchedAggregator,
    timeline: &mut Timeline,
) {
    match sched::parse(bytes) {
        Ok(SchedRecord::Switch(ev)) => sched.add_switch(&ev, timeline),
        Ok(SchedRecord::Copy { copy, sample, .. }) => {
            let frames = agg.unwind(&sample).map(|u| u.frames).unwrap_or_default();
            sched.add_copy(copy, sample.header.tgid, frames);
        }
        Err(_) => sched.counts.bad_records += 1,
    }
}

/// More than 1 % of an interval's samples found the ring full: the ring
/// (or the thread draining it) cannot keep up.
fn overflowing(full: u64, sent: u64) -> bool {
    full > 0 && full * 100 > full + sent
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(h: SampleHeader, stack: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [
            h.tgid,
            h.kernel_stack_id as u32,
            h.flags,
            h.stack_len,
            h.missing_pieces,
            0,
        ] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        for x in [h.ip, h.sp, h.fp, h.lr] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        v.extend_from_slice(stack);
        v
    }

    #[test]
    fn parses_a_record_and_ignores_ring_padding() {
        let h = SampleHeader {
            tgid: 42,
            kernel_stack_id: -14,
            flags: sample_flags::SHORT,
            stack_len: 5,
            missing_pieces: 0b10,
            py_frames: 0,
            ip: 0x1000,
            sp: 0x7fff_0000,
            fp: 0x7fff_0100,
            lr: 0,
        };
        let mut bytes = record(h, b"abcde");
        bytes.extend_from_slice(&[0, 0, 0]);
        let r = parse(&bytes).unwrap();
        assert_eq!(r.header, h);
        assert_eq!(r.stack, b"abcde");
        assert!(r.stack_copy().short);
        assert_eq!(r.regs().sp, 0x7fff_0000);
    }

    #[test]
    fn overflow_is_more_than_one_percent_dropped() {
        assert!(!overflowing(0, 0));
        assert!(!overflowing(0, 1000));
        assert!(!overflowing(1, 99));
        assert!(overflowing(2, 99));
        assert!(overflowing(5, 0));
    }

    #[test]
    fn rejects_short_records() {
        assert_eq!(parse(&[0; 10]).unwrap_err(), RecordError::Short(10));
        let h = SampleHeader {
            stack_len: 100,
            ..Default::default()
        };
        assert_eq!(
            parse(&record(h, &[1; 10])).unwrap_err(),
            RecordError::StackLength { said: 100, has: 10 }
        );
    }
}
