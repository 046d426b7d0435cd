//! Loading the committed eBPF object, attaching it to the software
//! cpu-clock event on every online CPU, and reading what it counted.

use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, StackTraceMap};
use aya::programs::PerfEvent;
use aya::programs::perf_event::{
    PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::util::online_cpus;
use aya::{Ebpf, include_bytes_aligned};
use loadgen_ebpf_common::{StackKey, stat};

use super::ProfileError;

/// The object built by `cargo xtask ebpf` from `ebpf/` (checked against
/// the sources by a test, rebuilt and compared by `cargo xtask ebpf --check`).
pub static OBJECT: &[u8] = include_bytes_aligned!("../../bpf/loadgen-ebpf.o");

/// What the kernel side counted, as raw stack ids and addresses.
#[derive(Debug, Default)]
pub struct RawProfile {
    pub counts: Vec<(StackKey, u64)>,
    /// Stack id → instruction pointers, leaf first.
    pub stacks: HashMap<i32, Vec<u64>>,
    /// Per-CPU stats summed, indexed by `loadgen_ebpf_common::stat`.
    pub stats: [u64; stat::LEN as usize],
}

pub struct Sampler {
    bpf: Ebpf,
    links: Vec<PerfEventLinkId>,
}

impl Sampler {
    /// Loads and verifies the program and fills the target set. Nothing is
    /// sampled until [`Sampler::attach`].
    pub fn load(pids: &[u32]) -> Result<Sampler, ProfileError> {
        let mut bpf = Ebpf::load(OBJECT).map_err(|e| ProfileError::Load(e.to_string()))?;
        {
            let mut targets: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(
                bpf.map_mut("TARGETS")
                    .ok_or(ProfileError::Object("TARGETS"))?,
            )
            .map_err(|e| ProfileError::Load(e.to_string()))?;
            for &pid in pids {
                targets
                    .insert(pid, 1, 0)
                    .map_err(|e| ProfileError::Load(e.to_string()))?;
            }
        }
        let prog: &mut PerfEvent = bpf
            .program_mut("sample")
            .ok_or(ProfileError::Object("sample"))?
            .try_into()
            .map_err(|_| ProfileError::Object("sample"))?;
        prog.load().map_err(|e| ProfileError::Load(e.to_string()))?;
        Ok(Sampler {
            bpf,
            links: Vec::new(),
        })
    }

    /// Starts sampling every online CPU at `freq` Hz.
    pub fn attach(&mut self, freq: u64) -> Result<(), ProfileError> {
        let cpus =
            online_cpus().map_err(|(what, e)| ProfileError::Attach(format!("{what}: {e}")))?;
        let prog: &mut PerfEvent = self
            .bpf
            .program_mut("sample")
            .ok_or(ProfileError::Object("sample"))?
            .try_into()
            .map_err(|_| ProfileError::Object("sample"))?;
        for cpu in cpus {
            let link = prog
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(freq),
                    true,
                )
                .map_err(|e| ProfileError::Attach(e.to_string()))?;
            self.links.push(link);
        }
        Ok(())
    }

    /// Stops sampling (the counts stay in the maps).
    pub fn detach(&mut self) {
        if let Ok(prog) = self
            .bpf
            .program_mut("sample")
            .ok_or(ProfileError::Object("sample"))
            .and_then(|p| <&mut PerfEvent>::try_from(p).map_err(|_| ProfileError::Object("sample")))
        {
            for link in self.links.drain(..) {
                let _ = prog.detach(link);
            }
        }
    }

    /// Reads the counts, the stacks they refer to, and the error counters.
    pub fn read(&mut self) -> Result<RawProfile, ProfileError> {
        let err = |e: aya::maps::MapError| ProfileError::Read(e.to_string());
        let mut raw = RawProfile::default();
        // Per-CPU counts: each CPU counted its own samples; sum them.
        let counts: PerCpuHashMap<&MapData, StackKey, u64> = PerCpuHashMap::try_from(
            self.bpf
                .map("COUNTS")
                .ok_or(ProfileError::Object("COUNTS"))?,
        )
        .map_err(err)?;
        for entry in counts.iter() {
            let (k, per_cpu) = entry.map_err(err)?;
            raw.counts.push((k, per_cpu.iter().sum()));
        }
        let stacks: StackTraceMap<&MapData> = StackTraceMap::try_from(
            self.bpf
                .map("STACKS")
                .ok_or(ProfileError::Object("STACKS"))?,
        )
        .map_err(err)?;
        let mut wanted: Vec<i32> = raw
            .counts
            .iter()
            .flat_map(|(k, _)| [k.user_stack_id, k.kernel_stack_id])
            .filter(|&id| id >= 0)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for id in wanted {
            // A stack can vanish if its bucket was reused; that sample then
            // shows "[unknown]".
            if let Ok(trace) = stacks.get(&(id as u32), 0) {
                raw.stacks
                    .insert(id, trace.frames().iter().map(|f| f.ip).collect());
            }
        }
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.bpf.map("STATS").ok_or(ProfileError::Object("STATS"))?)
                .map_err(err)?;
        for i in 0..stat::LEN {
            if let Ok(values) = stats.get(&i, 0) {
                raw.stats[i as usize] = values.iter().sum();
            }
        }
        Ok(raw)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.detach();
    }
}
