//! One profile over one measured window: plan each target's unwinding,
//! load the programs, run the reader while sampling, then merge,
//! symbolize and account for the cost.

mod collect;
mod warnings;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use loadgen_ebpf_common::{SchedConfig, TargetConfig, mode, stat};

use super::bpf::{RunStats, Sampler, SchedLoad};
use super::copy_size::CopySizes;
use super::objects::{Arch, ObjectCache};
use super::plan::{self, Code, TargetPlan, UnwindMode};
use super::python::{self, PythonTargets};
use super::report::{Cost, LostDetail, PythonCost, SchedCost};
use super::ringbuf::{Aggregator, Collected, Reader, SchedPlan, monotonic_ns};
use super::sched::SchedAggregator;
use super::unwind::ProcessUnwinder;
use super::{Profile, ProfileConfig, ProfileError, comm, maps, missing_capabilities};
use collect::Collection;
pub use collect::fold_unwound;

pub struct Session {
    sampler: Sampler,
    cfg: ProfileConfig,
    comms: HashMap<u32, String>,
    plans: Vec<TargetPlan>,
    /// The reader, before and after it starts.
    pending: Option<(Reader, Aggregator, Option<SchedPlan>)>,
    running: Option<JoinHandle<Collected>>,
    stop: Arc<AtomicBool>,
    attached_at: Option<Instant>,
    attached_wall: Option<SystemTime>,
    start_ns: u64,
    runs_before: RunStats,
    sched_runs_before: RunStats,
    stats_note: Option<String>,
    /// Why `--off-cpu` gives nothing, when it does not.
    off_cpu_note: Option<String>,
    /// CPython targets whose Python frames are not in the profile, and why.
    python_notes: Vec<String>,
}

/// Stacks taken per second at most by default. A sampled wait costs
/// about 12 µs of BPF time with frame pointers (four `get_stackid` walks:
/// the thread's and its waker's, kernel and user) and 15 µs with DWARF
/// (a 16 KiB copy instead of the user walk), measured here: so about
/// 0.5 % of a CPU at these rates, and at 10 000 switches a second the
/// stacks cost the target less than the switches themselves
/// (BENCHMARKS.md, "Off-CPU overhead").
pub const STACKS_PER_S_DWARF: f64 = 250.0;
pub const STACKS_PER_S_FP: f64 = 500.0;
/// The scheduler ring: 8 MiB holds 0.1 s of events at 1M switches/s.
const SCHED_RING_BYTES: u32 = 8 << 20;

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(1, |d| d.count())
}

impl Session {
    pub fn start(cfg: &ProfileConfig) -> Result<Session, ProfileError> {
        if let Some(missing) = missing_capabilities() {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "loadgen".into());
            return Err(ProfileError::Capability(missing, exe));
        }
        let mut comms = HashMap::new();
        for &pid in &cfg.pids {
            let name = comm(pid).ok_or(ProfileError::NoProcess(pid))?;
            comms.insert(pid, name);
        }
        let cpus = aya::util::online_cpus().map_or(1, |c| c.len());
        let threads: usize = cfg.pids.iter().map(|&p| thread_count(p)).sum();
        let start_bytes = cfg.start_stack_bytes();
        let bytes_per_s = plan::worst_case_bytes_per_s(cfg.freq, cpus, threads, start_bytes);
        let copy = CopySizes::new(
            start_bytes,
            plan::copy_ceiling(cfg.freq, cpus, threads),
            cfg.stack_bytes.is_none(),
        );
        let arch = Arch::native();
        let mut objects = ObjectCache::default();
        let mut procs = HashMap::new();
        let mut plans = Vec::new();
        for &pid in &cfg.pids {
            // Reading the objects now, before the load, keeps that I/O out
            // of the measured window.
            let mappings = maps::read(pid).unwrap_or_default();
            let (mut has_cfi, mut go) = (false, false);
            let unwinder = ProcessUnwinder::new(arch, mappings, |m| {
                let o = objects.get(pid, m);
                if let Some(o) = o.as_ref().filter(|_| m.path != "[vdso]") {
                    has_cfi |= o.has_cfi();
                    go |= o.go;
                }
                o
            });
            let code = match (go, has_cfi) {
                (true, _) => Code::Go,
                (false, true) => Code::Cfi,
                (false, false) => Code::NoCfi,
            };
            let p = plan::plan(cfg.unwind, pid, code, bytes_per_s);
            if p.mode == mode::DWARF {
                procs.insert(pid, unwinder);
            }
            plans.push(p);
        }
        let any_dwarf = plans.iter().any(|p| p.mode == mode::DWARF);
        let targets: Vec<(u32, TargetConfig)> = plans
            .iter()
            .map(|p| {
                (
                    p.pid,
                    TargetConfig {
                        mode: p.mode,
                        stack_bytes: start_bytes,
                    },
                )
            })
            .collect();
        let mut off_cpu_note = None;
        let stacks_per_s = cfg.off_cpu.map(|o| {
            o.stacks_per_s.unwrap_or(if any_dwarf {
                STACKS_PER_S_DWARF
            } else {
                STACKS_PER_S_FP
            })
        });
        let sched_config = cfg.off_cpu.map(|o| SchedConfig {
            min_off_ns: o.min.as_nanos() as u64,
            // Until the reader has seen the switch rate: copies of a busy
            // target would otherwise fill the ring in the first 50 ms.
            sample_every: if any_dwarf { 8 } else { 1 },
            long_wait_ns: super::sched::LONG_WAIT_NS,
            _pad: 0,
        });
        let sched = match sched_config.map(|c| super::btf::task_offsets().map(|o| (o, c))) {
            Some(Ok((offsets, config))) => Some(SchedLoad {
                offsets,
                config,
                ring_bytes: SCHED_RING_BYTES,
            }),
            Some(Err(e)) => {
                off_cpu_note = Some(format!("no off-CPU profile: {e}"));
                None
            }
            None => None,
        };
        // Room for the largest copy a target may be raised to.
        let ring_rate = plan::worst_case_bytes_per_s(cfg.freq, cpus, threads, copy.ceiling());
        let (mut sampler, sched_error) =
            Sampler::load(&targets, plan::ring_bytes(any_dwarf, ring_rate), sched)?;
        let mut python = PythonTargets::default();
        let mut python_notes = Vec::new();
        if cfg.interpreter_frames {
            for p in &plans {
                let (py, note) = python::for_target(p.pid, p.mode == mode::DWARF);
                python_notes.extend(note);
                if let Some(py) = py {
                    sampler.set_python(p.pid, python::targets::bpf_config(&py))?;
                    python.add(py);
                }
            }
        }
        if let Some(e) = sched_error {
            off_cpu_note = Some(e.to_string());
        }
        let reader = sampler.reader(any_dwarf, cfg.unwind == UnwindMode::Auto)?;
        let sched_plan = match (sampler.has_sched(), sched_config, stacks_per_s) {
            (true, Some(config), Some(stacks_per_s)) => Some(SchedPlan {
                agg: SchedAggregator::new(config.min_off_ns),
                config,
                stacks_per_s,
            }),
            _ => None,
        };
        Ok(Session {
            sampler,
            cfg: cfg.clone(),
            comms,
            plans,
            pending: Some((
                reader,
                Aggregator::new(arch, procs, objects, copy).with_python(python),
                sched_plan,
            )),
            running: None,
            stop: Arc::new(AtomicBool::new(false)),
            attached_at: None,
            attached_wall: None,
            start_ns: 0,
            runs_before: RunStats::default(),
            sched_runs_before: RunStats::default(),
            stats_note: None,
            off_cpu_note,
            python_notes,
        })
    }

    /// Starts sampling (call when the measured window starts).
    pub fn attach(&mut self) -> Result<(), ProfileError> {
        if let Err(e) = self.sampler.enable_run_stats() {
            self.stats_note = Some(format!("BPF_ENABLE_STATS needs CAP_SYS_ADMIN: {e}"));
        }
        self.runs_before = self.sampler.run_stats();
        self.sched_runs_before = self.sampler.sched_run_stats();
        self.start_ns = monotonic_ns();
        self.attached_wall = Some(SystemTime::now());
        if let Some((reader, agg, sched)) = self.pending.take() {
            let reader = reader
                .spawn(agg, sched, self.start_ns, self.stop.clone())
                .map_err(|e| {
                    ProfileError::Attach(format!("cannot start the reader thread: {e}"))
                })?;
            self.running = Some(reader);
        }
        if let Err(e) = self.sampler.attach_sched() {
            self.off_cpu_note = Some(e.to_string());
        }
        self.sampler.attach(self.cfg.freq)?;
        self.attached_at = Some(Instant::now());
        Ok(())
    }

    /// Stops sampling and turns the counts into a symbolized profile.
    pub fn finish(mut self) -> Result<Profile, ProfileError> {
        let (stopped, reader) = self.stop();
        let mut c = self.collect(reader, stopped.end_ns)?;
        let st = |i: u32| c.raw.stats[i as usize];
        let lost_detail = LostDetail {
            user_stack_collisions: st(stat::USER_COLLISION),
            kernel_stack_collisions: st(stat::KERNEL_COLLISION),
            user_stack_missing: st(stat::USER_MISSING),
            map_full: st(stat::MAP_FULL),
            ring_full: st(stat::RING_FULL),
            stack_read_failed: c.reader.counts.read_failed + st(stat::STACK_UNREADABLE),
            stack_truncated: c.reader.counts.truncated,
        };
        let lost = lost_detail.user_stack_collisions
            + lost_detail.kernel_stack_collisions
            + lost_detail.map_full
            + lost_detail.ring_full;
        let samples: u64 = c.raw.counts.iter().map(|(_, n)| n).sum();
        let warnings = self.warnings(&c, samples, stopped.reader_failed, &lost_detail);
        let cost = self.cost(&c, &stopped);
        let window_s = stopped.window.as_secs_f64();
        let seconds = c.timeline.seconds(window_s.ceil() as usize);
        let top = c.folded.top_functions(15, true);
        let unwind = self.used_modes(&c.reader, c.fp_samples);
        Ok(Profile {
            folded: std::mem::take(&mut c.folded),
            samples,
            raw_stats: c.raw.stats,
            lost,
            lost_detail,
            window: stopped.window,
            freq: self.cfg.freq,
            pids: self.cfg.pids.clone(),
            comms: std::mem::take(&mut self.comms),
            warnings,
            top,
            symbolize_time: stopped.at.elapsed(),
            unwind,
            unwind_requested: self.cfg.unwind,
            stack_bytes: self.cfg.start_stack_bytes(),
            stack_bytes_max: c.reader.copy.largest(),
            cost,
            off_cpu: c.off_cpu,
            seconds,
            attached_at: self.attached_wall,
        })
    }

    /// Ends the window: sampling stops, the kernel's BPF statistics are
    /// read, and the reader hands over what it aggregated.
    fn stop(&mut self) -> (Stopped, Collected) {
        let window = self.attached_at.map_or(Duration::ZERO, |t| t.elapsed());
        self.sampler.detach();
        let end_ns = monotonic_ns();
        let bpf = self.stats_note.is_none().then(|| BpfRuns {
            sample: self.sampler.run_stats().since(self.runs_before),
            sched: self.sampler.sched_run_stats().since(self.sched_runs_before),
        });
        self.sampler.disable_run_stats();
        let at = Instant::now();
        let (reader, reader_failed) = match self.stop_reader() {
            Some(Ok(c)) => (c, false),
            Some(Err(_)) => (Collected::default(), true),
            None => (Collected::default(), false),
        };
        let stopped = Stopped {
            window,
            end_ns,
            bpf,
            at,
            reader_failed,
        };
        (stopped, reader)
    }

    /// What profiling cost: the BPF programs' run time (from the kernel's
    /// statistics, when on), the rings' bytes, and our own threads' time.
    fn cost(&self, c: &Collection, stopped: &Stopped) -> Cost {
        let st = |i: u32| c.raw.stats[i as usize];
        let window_s = stopped.window.as_secs_f64();
        let mut cost = Cost {
            ringbuf_bytes: st(stat::RING_BYTES),
            bpf_samples: st(stat::SAMPLES),
            user_unwind_s: c.reader.cpu_time.as_secs_f64(),
            user_symbolize_s: c.symbolize_s,
            bpf_note: self.stats_note.clone(),
            bpf_run_ns: stopped.bpf.map(|b| b.sample.run_time.as_nanos() as u64),
            bpf_runs: stopped.bpf.map(|b| b.sample.runs),
            ..Default::default()
        };
        cost.derive(window_s);
        if !c.reader.python.is_empty() {
            let n = &c.reader.python.counts;
            cost.python = Some(PythonCost {
                stacks: st(stat::PY_STACKS),
                entries: st(stat::PY_FRAMES),
                truncated: st(stat::PY_TRUNCATED),
                no_thread_state: st(stat::PY_NO_THREAD),
                code_objects: n.code_objects,
                unreadable: n.unreadable,
                naming_s: n.time.as_secs_f64(),
            });
        }
        if c.off_cpu.is_some() {
            let mut sc = SchedCost {
                target_events: st(stat::SWITCH_OUT) + st(stat::SWITCH_IN) + st(stat::WAKEUPS),
                ringbuf_bytes: st(stat::SCHED_RING_BYTES),
                stacks_taken: st(stat::STACKS_TAKEN),
                waker_stacks: st(stat::WAKER_STACKS),
                bpf_run_ns: stopped.bpf.map(|b| b.sched.run_time.as_nanos() as u64),
                bpf_runs: stopped.bpf.map(|b| b.sched.runs),
                ..Default::default()
            };
            sc.derive(window_s);
            cost.sched = Some(sc);
        }
        cost
    }

    /// Stops the reader thread and takes what it aggregated (None: it
    /// never started).
    fn stop_reader(&mut self) -> Option<std::thread::Result<Collected>> {
        self.stop.store(true, Ordering::Release);
        self.running.take().map(JoinHandle::join)
    }

    fn used_modes(&self, c: &Collected, fp_samples: u64) -> String {
        let dwarf = self.plans.iter().any(|p| p.mode == mode::DWARF);
        let fp = self.plans.iter().any(|p| p.mode == mode::FP)
            || (c.switched_to_fp.is_some() && fp_samples > 0);
        match (dwarf, fp) {
            (true, true) => "dwarf+fp",
            (true, false) => "dwarf",
            _ => "fp",
        }
        .to_string()
    }
}

/// The window as [`Session::stop`] closed it.
struct Stopped {
    window: Duration,
    /// Its end on the BPF programs' clock.
    end_ns: u64,
    /// What the programs ran over the window (None: the kernel's BPF
    /// statistics were off, see `stats_note`).
    bpf: Option<BpfRuns>,
    /// When sampling stopped (symbolizing is timed from here).
    at: Instant,
    /// The reader thread panicked: its samples are lost.
    reader_failed: bool,
}

/// The BPF programs' runs over the window.
#[derive(Clone, Copy)]
struct BpfRuns {
    /// The on-CPU sampler.
    sample: RunStats,
    /// The scheduler programs together.
    sched: RunStats,
}

/// A session that ends without [`Session::finish`] (its attach failed, or
/// the run did) stops sampling and its reader: the reader would otherwise
/// poll the rings for the rest of the process's life.
impl Drop for Session {
    fn drop(&mut self) {
        self.sampler.detach();
        let _ = self.stop_reader();
    }
}
