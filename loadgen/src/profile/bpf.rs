//! Loading the committed eBPF object, attaching it to the software
//! cpu-clock event on every online CPU, and reading what it counted.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use aya::maps::{
    HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap,
};
use aya::programs::PerfEvent;
use aya::programs::perf_event::{
    PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::util::{nr_cpus, online_cpus};
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};
use loadgen_ebpf_common::{StackKey, TargetConfig, arch, stat};

use super::ProfileError;
use super::objects::Arch;
use super::ringbuf::Reader;

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
    /// Held while sampling: the kernel counts BPF run time only while some
    /// process holds a BPF_ENABLE_STATS descriptor.
    stats_fd: Option<OwnedFd>,
}

/// The program's run time and run count, as the kernel counted them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    pub run_time: Duration,
    pub runs: u64,
}

impl Sampler {
    /// Loads and verifies the program and fills the target set. Nothing is
    /// sampled until [`Sampler::attach`]. `ring_bytes` sizes the DWARF
    /// ring buffer (a power of two pages).
    pub fn load(targets: &[(u32, TargetConfig)], ring_bytes: u32) -> Result<Sampler, ProfileError> {
        let arch = match Arch::native() {
            Arch::X86_64 => arch::X86_64,
            Arch::Aarch64 => arch::AARCH64,
        };
        let cpus = nr_cpus().map_err(|(what, e)| ProfileError::Load(format!("{what}: {e}")))?;
        let mut bpf = EbpfLoader::new()
            .override_global("ARCH", &arch, true)
            .map_max_entries("SCRATCH", cpus as u32)
            .map_max_entries("RING", ring_bytes)
            .load(OBJECT)
            .map_err(|e| ProfileError::Load(e.to_string()))?;
        {
            let mut map: BpfHashMap<_, u32, TargetConfig> = BpfHashMap::try_from(
                bpf.map_mut("TARGETS")
                    .ok_or(ProfileError::Object("TARGETS"))?,
            )
            .map_err(|e| ProfileError::Load(e.to_string()))?;
            for (pid, cfg) in targets {
                map.insert(pid, cfg, 0)
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
            stats_fd: None,
        })
    }

    /// The DWARF-mode reader's handles: the ring and the target map (taken:
    /// nothing else uses them once loaded), and a second handle to the
    /// stats (the main thread reads them at the end).
    pub fn reader(&mut self, fallback: bool) -> Result<Reader, ProfileError> {
        let err = |e: aya::maps::MapError| ProfileError::Load(e.to_string());
        let ring = RingBuf::try_from(
            self.bpf
                .take_map("RING")
                .ok_or(ProfileError::Object("RING"))?,
        )
        .map_err(err)?;
        let targets = BpfHashMap::try_from(
            self.bpf
                .take_map("TARGETS")
                .ok_or(ProfileError::Object("TARGETS"))?,
        )
        .map_err(err)?;
        let Some(Map::PerCpuArray(stats)) = self.bpf.map("STATS") else {
            return Err(ProfileError::Object("STATS"));
        };
        let fd = stats
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ProfileError::Load(e.to_string()))?;
        let stats = PerCpuArray::try_from(
            Map::from_map_data(MapData::from_fd(fd).map_err(err)?).map_err(err)?,
        )
        .map_err(err)?;
        Ok(Reader {
            ring,
            targets,
            stats,
            fallback,
        })
    }

    /// Turns on the kernel's BPF run-time statistics for as long as this
    /// sampler lives. Needs CAP_SYS_ADMIN; returns why not otherwise.
    pub fn enable_run_stats(&mut self) -> Result<(), String> {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => {
                self.stats_fd = Some(fd);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Run time and count of the program so far (zero unless statistics
    /// are on).
    pub fn run_stats(&self) -> RunStats {
        let info = self
            .bpf
            .program("sample")
            .and_then(|p| <&PerfEvent>::try_from(p).ok())
            .and_then(|p| p.info().ok());
        info.map_or_else(RunStats::default, |i| RunStats {
            run_time: i.run_time(),
            runs: i.run_count(),
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

    /// Ends the run-time statistics (they cost every BPF program on the
    /// host a clock read per run).
    pub fn disable_run_stats(&mut self) {
        self.stats_fd = None;
    }

    /// Reads the counts, the stacks they and `more_stacks` (the kernel
    /// stacks of DWARF-mode samples) refer to, and the error counters.
    pub fn read(&mut self, more_stacks: &[i32]) -> Result<RawProfile, ProfileError> {
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
            .chain(more_stacks.iter().copied())
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
