//! Loading the committed eBPF object, attaching it to the software
//! cpu-clock event on every online CPU (and, with `--off-cpu`, the
//! scheduler programs to their BTF tracepoints), and reading what it
//! counted.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use aya::maps::{
    Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, StackTraceMap,
};
use aya::programs::perf_event::{
    PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::programs::{BtfTracePoint, PerfEvent, Program};
use aya::util::{nr_cpus, online_cpus};
use aya::{Btf, Ebpf, EbpfLoader, include_bytes_aligned};
use loadgen_ebpf_common::{
    OFF_CPU_ENTRIES, OffCpuKey, OffCpuValue, PAGE_BYTES, PyConfig, SchedConfig, StackKey,
    THREAD_ENTRIES, TargetConfig, ThreadState, arch, stat,
};

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
    /// Names of the Python frames (tagged ids) in `stacks`.
    pub python_names: Vec<String>,
}

/// The scheduler programs, each attached to the tracepoint it is named
/// after.
pub const SCHED_PROGRAMS: [&str; 4] = [
    "sched_switch",
    "sched_waking",
    "sched_wakeup",
    "sched_wakeup_new",
];

/// What the scheduler programs need at load time.
#[derive(Debug, Clone, Copy)]
pub struct SchedLoad {
    pub offsets: super::btf::TaskOffsets,
    pub config: SchedConfig,
    /// The scheduler ring's size (a power of two pages).
    pub ring_bytes: u32,
}

pub struct Sampler {
    bpf: Ebpf,
    links: Vec<PerfEventLinkId>,
    /// The scheduler programs are loaded (`--off-cpu`).
    sched: bool,
    sched_links: Vec<aya::programs::tp_btf::BtfTracePointLinkId>,
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

/// Program `name` of the object as the kind `T` it is (`what` names it in
/// the error when the object lacks it).
fn program<'a, T>(
    bpf: &'a mut Ebpf,
    name: &str,
    what: &'static str,
) -> Result<&'a mut T, ProfileError>
where
    &'a mut T: TryFrom<&'a mut Program>,
{
    bpf.program_mut(name)
        .ok_or(ProfileError::Object(what))?
        .try_into()
        .map_err(|_| ProfileError::Object(what))
}

impl RunStats {
    /// What ran since `before` (the counters only grow while statistics
    /// are on).
    pub fn since(self, before: RunStats) -> RunStats {
        RunStats {
            run_time: self.run_time.saturating_sub(before.run_time),
            runs: self.runs.saturating_sub(before.runs),
        }
    }
}

impl Sampler {
    /// Loads and verifies the program and fills the target set. Nothing is
    /// sampled until [`Sampler::attach`]. `ring_bytes` sizes the DWARF
    /// ring buffer (a power of two pages). With `sched`, the scheduler
    /// programs are loaded too; if they cannot be, the sampler still works
    /// and the error says why (the second value).
    pub fn load(
        targets: &[(u32, TargetConfig)],
        ring_bytes: u32,
        sched: Option<SchedLoad>,
    ) -> Result<(Sampler, Option<ProfileError>), ProfileError> {
        let arch = match Arch::native() {
            Arch::X86_64 => arch::X86_64,
            Arch::Aarch64 => arch::AARCH64,
        };
        let cpus = nr_cpus().map_err(|(what, e)| ProfileError::Load(format!("{what}: {e}")))?;
        let (pid_off, tgid_off) =
            sched.map_or((u32::MAX, u32::MAX), |s| (s.offsets.pid, s.offsets.tgid));
        let mut loader = EbpfLoader::new();
        loader
            .override_global("ARCH", &arch, true)
            .override_global("TASK_PID_OFFSET", &pid_off, true)
            .override_global("TASK_TGID_OFFSET", &tgid_off, true)
            .map_max_entries("SCRATCH", cpus as u32)
            .map_max_entries("RING", ring_bytes);
        // Without --off-cpu the scheduler maps shrink to nothing: hash maps
        // are allocated whole when created.
        match sched {
            Some(s) => loader
                .map_max_entries("SCHED_SCRATCH", 2 * cpus as u32)
                .map_max_entries("SCHED_RING", s.ring_bytes)
                .map_max_entries("THREADS", THREAD_ENTRIES)
                .map_max_entries("OFF_CPU", OFF_CPU_ENTRIES),
            None => loader
                .map_max_entries("SCHED_SCRATCH", 1)
                .map_max_entries("SCHED_RING", PAGE_BYTES)
                .map_max_entries("THREADS", 1)
                .map_max_entries("OFF_CPU", 1),
        };
        let mut bpf = loader
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
        let prog: &mut PerfEvent = program(&mut bpf, "sample", "sample")?;
        prog.load().map_err(|e| ProfileError::Load(e.to_string()))?;
        let mut sampler = Sampler {
            bpf,
            links: Vec::new(),
            sched: false,
            sched_links: Vec::new(),
            stats_fd: None,
        };
        let sched_error = match sched {
            Some(s) => sampler.load_sched(s.config).err(),
            None => None,
        };
        Ok((sampler, sched_error))
    }

    fn load_sched(&mut self, config: SchedConfig) -> Result<(), ProfileError> {
        let btf = Btf::from_sys_fs().map_err(|e| {
            ProfileError::OffCpu(format!(
                "cannot read the kernel's BTF ({e}): it needs CONFIG_DEBUG_INFO_BTF"
            ))
        })?;
        self.set_sched_config(config)?;
        for name in SCHED_PROGRAMS {
            let prog: &mut BtfTracePoint = program(&mut self.bpf, name, "a scheduler program")?;
            prog.load(name, &btf).map_err(|e| {
                ProfileError::OffCpu(format!("cannot load the {name} program: {e}"))
            })?;
        }
        self.sched = true;
        Ok(())
    }

    /// Makes `pid` a CPython target: the sampler walks its Python frames.
    pub fn set_python(&mut self, pid: u32, cfg: PyConfig) -> Result<(), ProfileError> {
        let mut map: BpfHashMap<_, u32, PyConfig> = BpfHashMap::try_from(
            self.bpf
                .map_mut("PY_TARGETS")
                .ok_or(ProfileError::Object("PY_TARGETS"))?,
        )
        .map_err(|e| ProfileError::Load(e.to_string()))?;
        map.insert(pid, cfg, 0)
            .map_err(|e| ProfileError::Load(e.to_string()))
    }

    /// Writes the scheduler programs' settings (they read them per event).
    pub fn set_sched_config(&mut self, config: SchedConfig) -> Result<(), ProfileError> {
        let mut cfg: Array<_, SchedConfig> = Array::try_from(
            self.bpf
                .map_mut("SCHED_CFG")
                .ok_or(ProfileError::Object("SCHED_CFG"))?,
        )
        .map_err(|e| ProfileError::Load(e.to_string()))?;
        cfg.set(0, config, 0)
            .map_err(|e| ProfileError::Load(e.to_string()))
    }

    pub fn has_sched(&self) -> bool {
        self.sched
    }

    /// Map `name`, taken out of the object (for the reader thread to own).
    fn take<T: TryFrom<Map, Error = MapError>>(
        &mut self,
        name: &'static str,
    ) -> Result<T, ProfileError> {
        let map = self.bpf.take_map(name).ok_or(ProfileError::Object(name))?;
        T::try_from(map).map_err(|e| ProfileError::Load(e.to_string()))
    }

    /// Map `name`, borrowed to read what the programs counted.
    fn borrow<'a, T: TryFrom<&'a Map, Error = MapError>>(
        &'a self,
        name: &'static str,
    ) -> Result<T, ProfileError> {
        let map = self.bpf.map(name).ok_or(ProfileError::Object(name))?;
        T::try_from(map).map_err(|e| ProfileError::Read(e.to_string()))
    }

    /// The reader thread's handles: the rings (DWARF samples, when `dwarf`;
    /// scheduler events, with the scheduler programs), the target map and
    /// the scheduler settings (taken: nothing else uses them once loaded),
    /// and a second handle to the stats (the main thread reads them at the
    /// end).
    pub fn reader(&mut self, dwarf: bool, fallback: bool) -> Result<Reader, ProfileError> {
        let err = |e: aya::maps::MapError| ProfileError::Load(e.to_string());
        let ring = self.take("RING")?;
        let targets = self.take("TARGETS")?;
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
        let sched = if self.sched {
            let ring = self.take("SCHED_RING")?;
            let cfg = self.take("SCHED_CFG")?;
            Some((ring, cfg))
        } else {
            None
        };
        Ok(Reader {
            ring: Some(ring).filter(|_| dwarf),
            targets,
            stats,
            fallback,
            sched,
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

    /// Run time and count of the sampler so far (zero unless statistics
    /// are on).
    pub fn run_stats(&self) -> RunStats {
        self.stats_of(&["sample"])
    }

    /// The same, summed over the scheduler programs.
    pub fn sched_run_stats(&self) -> RunStats {
        if self.sched {
            self.stats_of(&SCHED_PROGRAMS)
        } else {
            RunStats::default()
        }
    }

    fn stats_of(&self, names: &[&str]) -> RunStats {
        let mut total = RunStats::default();
        for name in names {
            if let Some(i) = self.bpf.program(name).and_then(|p| p.info().ok()) {
                total.run_time += i.run_time();
                total.runs += i.run_count();
            }
        }
        total
    }

    /// Starts sampling every online CPU at `freq` Hz.
    pub fn attach(&mut self, freq: u64) -> Result<(), ProfileError> {
        let cpus =
            online_cpus().map_err(|(what, e)| ProfileError::Attach(format!("{what}: {e}")))?;
        let prog: &mut PerfEvent = program(&mut self.bpf, "sample", "sample")?;
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

    /// Starts the scheduler programs (when loaded).
    pub fn attach_sched(&mut self) -> Result<(), ProfileError> {
        if !self.sched {
            return Ok(());
        }
        for name in SCHED_PROGRAMS {
            let prog: &mut BtfTracePoint = program(&mut self.bpf, name, "a scheduler program")?;
            let link = prog.attach().map_err(|e| {
                ProfileError::OffCpu(format!("cannot attach the {name} program: {e}"))
            })?;
            self.sched_links.push(link);
        }
        Ok(())
    }

    /// Stops sampling (the counts stay in the maps).
    pub fn detach(&mut self) {
        // The scheduler programs first: the tracepoint is detached when
        // its link is dropped.
        self.sched_links.clear();
        if let Ok(prog) = program::<PerfEvent>(&mut self.bpf, "sample", "sample") {
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
        let counts: PerCpuHashMap<&MapData, StackKey, u64> = self.borrow("COUNTS")?;
        for entry in counts.iter() {
            let (k, per_cpu) = entry.map_err(err)?;
            raw.counts.push((k, per_cpu.iter().sum()));
        }
        let stacks: StackTraceMap<&MapData> = self.borrow("STACKS")?;
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
        let stats: PerCpuArray<&MapData, u64> = self.borrow("STATS")?;
        for i in 0..stat::LEN {
            if let Ok(values) = stats.get(&i, 0) {
                raw.stats[i as usize] = values.iter().sum();
            }
        }
        Ok(raw)
    }
}

impl Sampler {
    /// The frame-pointer targets' off-CPU time, summed over CPUs.
    pub fn read_off_cpu(&self) -> Result<Vec<(OffCpuKey, OffCpuValue)>, ProfileError> {
        let err = |e: aya::maps::MapError| ProfileError::Read(e.to_string());
        let map: PerCpuHashMap<&MapData, OffCpuKey, OffCpuValue> = self.borrow("OFF_CPU")?;
        let mut out = Vec::new();
        for entry in map.iter() {
            let (k, per_cpu) = entry.map_err(err)?;
            let mut v = OffCpuValue::default();
            for c in per_cpu.iter() {
                v.ns += c.ns;
                v.waits += c.waits;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// Target threads the scheduler programs still hold: those off the CPU
    /// when the window closed (their wait has not ended yet).
    pub fn read_threads(&self) -> Result<Vec<(u32, ThreadState)>, ProfileError> {
        let map: BpfHashMap<&MapData, u32, ThreadState> = self.borrow("THREADS")?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.detach();
    }
}
