//! The window's samples, read from the maps, merged with the DWARF
//! stacks the reader unwound, and symbolized (on-CPU and off-CPU).

use std::collections::HashMap;
use std::time::Instant;

use loadgen_ebpf_common::{STACK_ENTRIES, StackKey, stat};

use super::Session;
use crate::profile::bpf::RawProfile;
use crate::profile::offcpu::{OffCpu, OffCpuLost, Wait, Waker};
use crate::profile::ringbuf::{Collected, StackCounts};
use crate::profile::sched::{SchedAggregator, Stack, Timeline, WaitKey, Weighted};
use crate::profile::{Folded, ProfileError, comm, symbolize};

/// The window's samples, read, merged and symbolized.
pub(super) struct Collection {
    pub(super) raw: RawProfile,
    pub(super) folded: Folded,
    pub(super) off_cpu: Option<OffCpu>,
    pub(super) timeline: Timeline,
    /// What the reader thread aggregated.
    pub(super) reader: Collected,
    /// Share of frame-pointer samples whose user stack is one frame deep.
    pub(super) fp_shallow: f64,
    pub(super) fp_samples: u64,
    /// Frame-pointer samples whose user stack reached the kernel's
    /// depth limit, and that limit.
    pub(super) fp_at_limit: (u64, usize),
    pub(super) kernel_visible: bool,
    pub(super) symbolize_s: f64,
}

impl Session {
    /// Reads the maps, merges the DWARF stacks into the frame-pointer
    /// counts, and symbolizes both profiles.
    pub(super) fn collect(
        &mut self,
        mut reader: Collected,
        end_ns: u64,
    ) -> Result<Collection, ProfileError> {
        let mut timeline = reader
            .timeline
            .take()
            .unwrap_or_else(|| Timeline::new(self.start_ns));
        // Off-CPU: the waits aggregated in the kernel (frame pointers), and
        // the threads still waiting when the window closed.
        let mut sched_agg = reader.sched.take();
        let mut kernel_waits = Vec::new();
        if let Some(agg) = &mut sched_agg {
            kernel_waits = self.sampler.read_off_cpu()?;
            for (tid, t) in self.sampler.read_threads()? {
                agg.add_unfinished(tid, &t, end_ns, &mut timeline);
            }
        }
        let mut kernel_ids: Vec<i32> = reader.stacks.keys().map(|k| k.2).collect();
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
        let limit = crate::profile::plan::fp_depth_limit();
        let fp_at_limit = (symbolize::user_stacks_at_limit(&raw, limit), limit);
        merge_dwarf(&mut raw, &reader);
        let kernel_visible = symbolize::kernel_symbols_visible();
        let symbolizing = Instant::now();
        let folded = symbolize::fold(&raw, &self.comms, kernel_visible);
        let off_cpu = sched_agg.map(|mut agg| {
            for (k, w) in kernel_waits {
                agg.waits.entry(k).or_default().add(w);
            }
            self.off_cpu(agg, &raw, kernel_visible, reader.sample_every_max)
        });
        Ok(Collection {
            symbolize_s: symbolizing.elapsed().as_secs_f64(),
            raw,
            folded,
            off_cpu,
            timeline,
            reader,
            fp_shallow,
            fp_samples,
            fp_at_limit,
            kernel_visible,
        })
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
        let symbols = lookup
            .resolve(kernel_visible)
            .with_python(&raw.python_names);
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

/// Symbolizes DWARF-unwound stacks alone into folded stacks (what
/// [`Session::finish`] does with them, for the benchmark).
pub fn fold_unwound(stacks: &StackCounts, comms: &HashMap<u32, String>) -> Folded {
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
    raw.python_names.clone_from(&c.python.names);
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
