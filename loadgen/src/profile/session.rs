//! One profile over one measured window: plan each target's unwinding,
//! load the sampler, run the DWARF reader while sampling, then merge,
//! symbolize and account for the cost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use loadgen_ebpf_common::{STACK_ENTRIES, StackKey, TargetConfig, mode, stat};

use super::bpf::{RawProfile, RunStats, Sampler};
use super::objects::{Arch, ObjectCache};
use super::plan::{self, TargetPlan, UnwindMode};
use super::report::{Cost, LostDetail};
use super::ringbuf::{Aggregator, Collected, Reader};
use super::unwind::ProcessUnwinder;
use super::{
    Profile, ProfileConfig, ProfileError, comm, is_alive, maps, missing_capabilities, symbolize,
};

pub struct Session {
    sampler: Sampler,
    cfg: ProfileConfig,
    comms: HashMap<u32, String>,
    plans: Vec<TargetPlan>,
    /// The DWARF reader, before and after it starts.
    pending: Option<(Reader, Aggregator)>,
    running: Option<JoinHandle<Collected>>,
    stop: Arc<AtomicBool>,
    attached_at: Option<Instant>,
    runs_before: RunStats,
    stats_note: Option<String>,
}

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
        let mut sampler = Sampler::load(&targets, plan::ring_bytes(any_dwarf, bytes_per_s))?;
        let pending = if any_dwarf {
            let reader = sampler.reader(cfg.unwind == UnwindMode::Auto)?;
            Some((reader, Aggregator::new(arch, procs, objects)))
        } else {
            None
        };
        Ok(Session {
            sampler,
            cfg: cfg.clone(),
            comms,
            plans,
            pending,
            running: None,
            stop: Arc::new(AtomicBool::new(false)),
            attached_at: None,
            runs_before: RunStats::default(),
            stats_note: None,
        })
    }

    /// Starts sampling (call when the measured window starts).
    pub fn attach(&mut self) -> Result<(), ProfileError> {
        if let Err(e) = self.sampler.enable_run_stats() {
            self.stats_note = Some(format!("BPF_ENABLE_STATS needs CAP_SYS_ADMIN: {e}"));
        }
        self.runs_before = self.sampler.run_stats();
        if let Some((reader, agg)) = self.pending.take() {
            self.running = Some(reader.spawn(agg, self.stop.clone()));
        }
        self.sampler.attach(self.cfg.freq)?;
        self.attached_at = Some(Instant::now());
        Ok(())
    }

    /// Stops sampling and turns the counts into a symbolized profile.
    pub fn finish(mut self) -> Result<Profile, ProfileError> {
        let window = self.attached_at.map_or(Duration::ZERO, |t| t.elapsed());
        self.sampler.detach();
        let runs_after = self.sampler.run_stats();
        self.sampler.disable_run_stats();
        let stopped = Instant::now();
        self.stop.store(true, Ordering::Release);
        let mut reader_failed = false;
        let collected = match self.running.take().map(JoinHandle::join) {
            Some(Ok(c)) => c,
            Some(Err(_)) => {
                reader_failed = true;
                Collected::default()
            }
            None => Collected::default(),
        };
        let kernel_ids: Vec<i32> = collected.stacks.keys().map(|k| k.2).collect();
        let mut raw = self.sampler.read(&kernel_ids)?;
        // Frame-pointer stacks only: DWARF ones are deep by construction.
        let fp_shallow = symbolize::shallow_user_share(&raw);
        let fp_samples: u64 = raw.counts.iter().map(|(_, n)| n).sum();
        merge_dwarf(&mut raw, &collected);
        let kernel_visible = symbolize::kernel_symbols_visible();
        let symbolizing = Instant::now();
        let folded = symbolize::fold(&raw, &self.comms, kernel_visible);
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
            comms: self.comms,
            warnings,
            top,
            symbolize_time: stopped.elapsed(),
            unwind,
            unwind_requested: self.cfg.unwind,
            stack_bytes: self.cfg.stack_bytes,
            cost,
        })
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
