//! One profile over one measured window: plan each target's unwinding,
//! load the programs, run the reader while sampling, then merge,
//! symbolize and account for the cost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use loadgen_ebpf_common::{STACK_ENTRIES, SchedConfig, StackKey, TargetConfig, mode, stat};

use super::bpf::{RawProfile, RunStats, Sampler, SchedLoad};
use super::objects::{Arch, ObjectCache};
use super::offcpu::{OffCpu, OffCpuLost, Wait, Waker};
use super::plan::{self, TargetPlan, UnwindMode};
use super::report::{Cost, LostDetail, SchedCost};
use super::ringbuf::{Aggregator, Collected, Reader, SchedPlan, monotonic_ns};
use super::sched::{SchedAggregator, Stack, Timeline, WaitKey, Weighted};
use super::unwind::ProcessUnwinder;
use super::{
    Profile, ProfileConfig, ProfileError, comm, is_alive, maps, missing_capabilities, symbolize,
};

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
        let bytes_per_s = plan::worst_case_bytes_per_s(cfg.freq, cpus, threads, cfg.stack_bytes);
        let arch = Arch::native();
        let mut objects = ObjectCache::default();
        let mut procs = HashMap::new();
        let mut plans = Vec::new();
        for &pid in &cfg.pids {
            // Reading the objects now, before the load, keeps that I/O out
            // of the measured window.
            let mappings = maps::read(pid).unwrap_or_default();
            let mut has_cfi = false;
            let unwinder = ProcessUnwinder::new(arch, mappings, |m| {
                let o = objects.get(pid, m);
                has_cfi |= o.as_ref().is_some_and(|o| o.has_cfi());
                o
            });
            let p = plan::plan(cfg.unwind, pid, has_cfi, bytes_per_s);
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
                        stack_bytes: cfg.stack_bytes,
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
        let (mut sampler, sched_error) =
            Sampler::load(&targets, plan::ring_bytes(any_dwarf, bytes_per_s), sched)?;
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
            pending: Some((reader, Aggregator::new(arch, procs, objects), sched_plan)),
            running: None,
            stop: Arc::new(AtomicBool::new(false)),
            attached_at: None,
            attached_wall: None,
            start_ns: 0,
            runs_before: RunStats::default(),
            sched_runs_before: RunStats::default(),
            stats_note: None,
            off_cpu_note,
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
        let window = self.attached_at.map_or(Duration::ZERO, |t| t.elapsed());
        self.sampler.detach();
        let end_ns = monotonic_ns();
        let runs_after = self.sampler.run_stats();
        let sched_runs_after = self.sampler.sched_run_stats();
        self.sampler.disable_run_stats();
        let stopped = Instant::now();
        let mut reader_failed = false;
        let mut collected = match self.stop_reader() {
            Some(Ok(c)) => c,
            Some(Err(_)) => {
                reader_failed = true;
                Collected::default()
            }
            None => Collected::default(),
        };
        let mut timeline = collected
            .timeline
            .take()
            .unwrap_or_else(|| Timeline::new(self.start_ns));
        // Off-CPU: the waits aggregated in the kernel (frame pointers), and
        // the threads still waiting when the window closed.
        let mut sched_agg = collected.sched.take();
        let mut kernel_waits = Vec::new();
        if let Some(agg) = &mut sched_agg {
            kernel_waits = self.sampler.read_off_cpu()?;
            for (tid, t) in self.sampler.read_threads()? {
                agg.add_unfinished(tid, &t, end_ns, &mut timeline);
            }
        }
        let mut kernel_ids: Vec<i32> = collected.stacks.keys().map(|k| k.2).collect();
        if let Some(agg) = &sched_agg {
            kernel_ids.extend(agg.waits.keys().flat_map(stack_ids));
        }
        let kernel_waits: Vec<(WaitKey, Weighted)> = kernel_waits
            .iter()
            .map(|(k, v)| {
                (
                    WaitKey::of_kernel(k),
                    Weighted {
                        ns: v.ns,
                        waits: v.waits,
                    },
                )
            })
            .collect();
        kernel_ids.extend(kernel_waits.iter().flat_map(|(k, _)| stack_ids(k)));
        let mut raw = self.sampler.read(&kernel_ids)?;
        // Frame-pointer stacks only: DWARF ones are deep by construction.
        let fp_shallow = symbolize::shallow_user_share(&raw);
        let fp_samples: u64 = raw.counts.iter().map(|(_, n)| n).sum();
        merge_dwarf(&mut raw, &collected);
        let kernel_visible = symbolize::kernel_symbols_visible();
        let symbolizing = Instant::now();
        let folded = symbolize::fold(&raw, &self.comms, kernel_visible);
        let off_cpu = sched_agg.map(|mut agg| {
            for (k, w) in kernel_waits {
                agg.waits.entry(k).or_default().add(w);
            }
            self.off_cpu(agg, &raw, kernel_visible, collected.sample_every_max)
        });
        let symbolize_s = symbolizing.elapsed().as_secs_f64();
        let samples: u64 = raw.counts.iter().map(|(_, n)| n).sum();
        let st = |i: u32| raw.stats[i as usize];
        let lost_detail = LostDetail {
            user_stack_collisions: st(stat::USER_COLLISION),
            kernel_stack_collisions: st(stat::KERNEL_COLLISION),
            user_stack_missing: st(stat::USER_MISSING),
            map_full: st(stat::MAP_FULL),
            ring_full: st(stat::RING_FULL),
            stack_read_failed: collected.counts.read_failed + st(stat::STACK_UNREADABLE),
            stack_truncated: collected.counts.truncated,
        };
        let lost = lost_detail.user_stack_collisions
            + lost_detail.kernel_stack_collisions
            + lost_detail.map_full
            + lost_detail.ring_full;
        let mut warnings = Vec::new();
        if samples == 0 {
            warnings
                .push("no samples: the target used no CPU during the measured window".to_string());
        }
        let has_kernel = raw.counts.iter().any(|(k, _)| k.kernel_stack_id >= 0);
        if has_kernel && !kernel_visible {
            warnings.push(
                "kernel frames are [unknown]: reading /proc/kallsyms addresses needs CAP_SYSLOG (and kernel.kptr_restrict ≤ 1)".to_string(),
            );
        }
        if fp_samples >= 20 && fp_shallow > 0.5 {
            warnings.push(
                "most user stacks are one frame deep: the target lacks frame pointers. Use --unwind dwarf, or rebuild it with \
                 Rust `-C force-frame-pointers=yes`, C/C++ `-fno-omit-frame-pointer \
                 -mno-omit-leaf-frame-pointer`, Java \
                 `-XX:+PreserveFramePointer` plus a perf map agent, Node `--perf-basic-prof`, Python 3.12+ \
                 `-X perf` (distro C libraries usually lack frame pointers too)"
                    .to_string(),
            );
        }
        if reader_failed {
            warnings.push(
                "the unwinder thread failed: the DWARF samples are missing from this profile (please report it)"
                    .to_string(),
            );
        }
        warnings.extend(self.dwarf_warnings(&collected, &lost_detail));
        if let Some(note) = &self.off_cpu_note {
            warnings.push(format!(
                "{note}; the on-CPU profile is complete, and --off-cpu needs kernel BTF and the tp_btf scheduler tracepoints (Linux ≥ 5.5)"
            ));
        }
        if let Some(o) = &off_cpu {
            warnings.extend(off_cpu_warnings(o));
        }
        for pid in &self.cfg.pids {
            if !is_alive(*pid) {
                warnings.push(format!(
                    "process {pid} exited during the run: its frames could not be symbolized ([unknown])"
                ));
            }
        }
        let mut cost = Cost {
            ringbuf_bytes: st(stat::RING_BYTES),
            bpf_samples: st(stat::SAMPLES),
            user_unwind_s: collected.cpu_time.as_secs_f64(),
            user_symbolize_s: symbolize_s,
            bpf_note: self.stats_note.clone(),
            ..Default::default()
        };
        if self.stats_note.is_none() {
            cost.bpf_run_ns = Some(
                runs_after
                    .run_time
                    .saturating_sub(self.runs_before.run_time)
                    .as_nanos() as u64,
            );
            cost.bpf_runs = Some(runs_after.runs.saturating_sub(self.runs_before.runs));
        }
        cost.derive(window.as_secs_f64());
        if off_cpu.is_some() {
            let mut sc = SchedCost {
                target_events: st(stat::SWITCH_OUT) + st(stat::SWITCH_IN) + st(stat::WAKEUPS),
                ringbuf_bytes: st(stat::SCHED_RING_BYTES),
                stacks_taken: st(stat::STACKS_TAKEN),
                waker_stacks: st(stat::WAKER_STACKS),
                ..Default::default()
            };
            if self.stats_note.is_none() {
                sc.bpf_run_ns = Some(
                    sched_runs_after
                        .run_time
                        .saturating_sub(self.sched_runs_before.run_time)
                        .as_nanos() as u64,
                );
                sc.bpf_runs = Some(
                    sched_runs_after
                        .runs
                        .saturating_sub(self.sched_runs_before.runs),
                );
            }
            sc.derive(window.as_secs_f64());
            cost.sched = Some(sc);
        }
        let seconds = timeline.seconds(window.as_secs_f64().ceil() as usize);
        let top = folded.top_functions(15, true);
        let unwind = self.used_modes(&collected, fp_samples);
        Ok(Profile {
            folded,
            samples,
            raw_stats: raw.stats,
            lost,
            lost_detail,
            window,
            freq: self.cfg.freq,
            pids: self.cfg.pids.clone(),
            comms: std::mem::take(&mut self.comms),
            warnings,
            top,
            symbolize_time: stopped.elapsed(),
            unwind,
            unwind_requested: self.cfg.unwind,
            stack_bytes: self.cfg.stack_bytes,
            cost,
            off_cpu,
            seconds,
            attached_at: self.attached_wall,
        })
    }

    /// Stops the reader thread and takes what it aggregated (None: it
    /// never started).
    fn stop_reader(&mut self) -> Option<std::thread::Result<Collected>> {
        self.stop.store(true, Ordering::Release);
        self.running.take().map(JoinHandle::join)
    }

    /// Symbolizes the waits and their wakers.
    fn off_cpu(
        &self,
        agg: SchedAggregator,
        raw: &RawProfile,
        kernel_visible: bool,
        sample_every_max: u32,
    ) -> OffCpu {
        let user = |s: &Stack| -> Option<Vec<u64>> {
            match s {
                Stack::None => None,
                Stack::Id(id) => raw.stacks.get(id).cloned(),
                Stack::Frames(f) => Some(f.clone()),
            }
        };
        let kernel = |id: i32| raw.stacks.get(&id).filter(|_| id >= 0);
        let mut lookup = symbolize::Lookup::default();
        let mut comms = self.comms.clone();
        for k in agg.waits.keys() {
            if let Some(u) = user(&k.user) {
                lookup.user(k.tgid, &u);
            }
            if let Some(s) = kernel(k.kernel) {
                lookup.kernel(s);
            }
            if let Some(w) = &k.waker {
                if let Some(u) = user(&w.user) {
                    lookup.user(w.tgid, &u);
                }
                if let Some(s) = kernel(w.kernel) {
                    lookup.kernel(s);
                }
                comms.entry(w.tgid).or_insert_with(|| {
                    let name = if w.tgid == 0 {
                        Some("swapper".to_string())
                    } else {
                        comm(w.tgid)
                    };
                    name.unwrap_or_else(|| format!("pid {}", w.tgid))
                });
            }
        }
        let symbols = lookup.resolve(kernel_visible);
        let frames = |tgid: u32, u: &Stack, k: i32| {
            (
                user(u).map(|s| symbols.user_frames(tgid, &s)),
                kernel(k).map_or_else(Vec::new, |s| symbols.kernel_frames(s)),
            )
        };
        let waits = agg
            .waits
            .iter()
            .map(|(k, w)| {
                let (u, kf) = frames(k.tgid, &k.user, k.kernel);
                let waker = k.waker.as_ref().map(|wk| {
                    let (wu, wkf) = frames(wk.tgid, &wk.user, wk.kernel);
                    Waker::new(&symbolize::comm_of(&comms, wk.tgid), wu, wkf)
                });
                Wait::new(
                    &symbolize::comm_of(&comms, k.tgid),
                    u,
                    kf,
                    k.state,
                    waker,
                    (w.ns, w.waits),
                )
            })
            .collect();
        let st = |i: u32| raw.stats[i as usize];
        OffCpu {
            waits,
            totals: agg.totals,
            wakeups: st(stat::WAKEUPS),
            preemptions: st(stat::PREEMPTIONS),
            switch_outs: st(stat::SWITCH_OUT),
            stacks_taken: st(stat::STACKS_TAKEN),
            min_ns: self.cfg.off_cpu.map_or(1000, |o| o.min.as_nanos() as u64),
            sample_every_max: sample_every_max.max(1),
            lost: OffCpuLost {
                ring_full: st(stat::SCHED_RING_FULL),
                threads_full: st(stat::THREADS_FULL),
                map_full: st(stat::OFF_CPU_MAP_FULL),
                stack_collisions: st(stat::OFF_CPU_COLLISIONS),
                copies_missing: agg.counts.copies_missing,
            },
        }
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

    fn dwarf_warnings(&self, c: &Collected, lost: &LostDetail) -> Vec<String> {
        let mut w = Vec::new();
        for p in &self.plans {
            if p.mode == mode::FP && p.why.contains("budget") {
                w.push(format!(
                    "process {}: frame pointers, not DWARF: {} at {} Hz; lower --profile-freq or --stack-bytes, or force --unwind dwarf",
                    p.pid, p.why, self.cfg.freq
                ));
            }
        }
        if let Some((after, dropped)) = c.switched_to_fp {
            w.push(format!(
                "the ring buffer could not keep up ({dropped} samples dropped): switched to frame pointers {:.1}s into the window; lower --profile-freq or --stack-bytes, or force --unwind dwarf",
                after.as_secs_f64()
            ));
        } else if lost.ring_full > 0 {
            w.push(format!(
                "{} samples lost: the ring buffer was full; lower --profile-freq or --stack-bytes",
                lost.ring_full
            ));
        }
        let n = c.counts.samples.max(1);
        if c.counts.truncated * 20 > n {
            w.push(format!(
                "{:.0}% of stacks were deeper than --stack-bytes {}: raise it (up to 64k) to see their outer frames",
                100.0 * c.counts.truncated as f64 / n as f64,
                self.cfg.stack_bytes
            ));
        }
        if let Some(first) = c.object_failures.first() {
            w.push(format!(
                "{} object(s) could not be read for unwinding (their code unwinds with frame pointers), e.g. {first}",
                c.object_failures.len()
            ));
        }
        w
    }
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

/// Kernel stack ids a wait refers to (its own and its waker's; FP user
/// stacks too).
fn stack_ids(k: &WaitKey) -> Vec<i32> {
    let mut ids = vec![k.kernel];
    if let Stack::Id(id) = k.user {
        ids.push(id);
    }
    if let Some(w) = &k.waker {
        ids.push(w.kernel);
        if let Stack::Id(id) = w.user {
            ids.push(id);
        }
    }
    ids
}

/// What the off-CPU profile lacks, in one line each.
fn off_cpu_warnings(o: &OffCpu) -> Vec<String> {
    let mut w = Vec::new();
    if o.switch_outs == 0 && o.totals.runq.is_empty() {
        w.push(
            "no off-CPU waits: no thread of the target left or got a CPU during the window (idle and blocked throughout, or exited); load it, or check --profile-pid"
                .to_string(),
        );
    }
    let l = &o.lost;
    if l.ring_full > 0 {
        w.push(format!(
            "{} scheduler events lost: the ring was full (the reader fell behind); the off-CPU totals are low by about that many waits",
            l.ring_full
        ));
    }
    if l.threads_full > 0 || l.map_full > 0 {
        w.push(format!(
            "off-CPU maps full ({} thread inserts, {} waits lost): the target has more threads or distinct stacks than loadgen follows",
            l.threads_full, l.map_full
        ));
    }
    if l.copies_missing > 0 {
        w.push(format!(
            "{} off-CPU waits lost their user stack (its copy did not fit the ring)",
            l.copies_missing
        ));
    }
    w
}

/// Symbolizes DWARF-unwound stacks alone into folded stacks (what
/// [`Session::finish`] does with them, for the benchmark).
pub fn fold_unwound(
    stacks: &super::ringbuf::StackCounts,
    comms: &HashMap<u32, String>,
) -> super::Folded {
    let mut raw = RawProfile::default();
    let c = Collected {
        stacks: stacks.clone(),
        ..Default::default()
    };
    merge_dwarf(&mut raw, &c);
    symbolize::fold(&raw, comms, false)
}

/// Adds the DWARF-unwound stacks to the frame-pointer counts: each
/// distinct user stack gets an id above the kernel stack map's ids, so
/// symbolizing treats both alike.
fn merge_dwarf(raw: &mut RawProfile, c: &Collected) {
    let mut ids: HashMap<&[u64], i32> = HashMap::new();
    let mut counts: HashMap<StackKey, u64> = HashMap::new();
    for ((tgid, frames, kernel), n) in &c.stacks {
        let user = if frames.is_empty() {
            -1
        } else {
            let next = STACK_ENTRIES as i32 + ids.len() as i32;
            let id = *ids.entry(frames.as_slice()).or_insert(next);
            raw.stacks.entry(id).or_insert_with(|| frames.clone());
            id
        };
        let key = StackKey {
            tgid: *tgid,
            user_stack_id: user,
            kernel_stack_id: if raw.stacks.contains_key(kernel) {
                *kernel
            } else {
                -1
            },
            _pad: 0,
        };
        *counts.entry(key).or_default() += n;
    }
    raw.counts.extend(counts);
}
