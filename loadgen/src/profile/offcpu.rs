//! The off-CPU profile once symbolized: waits (stacks, state, waker, time)
//! and the views of them the outputs print. Folded stacks in µs with the
//! state as the leaf frame, the "where the target waited" table (top
//! blocking sites by time, with what woke them), the wakers, the
//! functions, and the JSON sections. Plain data in and out.

use std::collections::HashMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use loadgen_ebpf_common::off_state;

use super::folded::{Folded, sanitize};
use super::report::{
    BlockingRow, ByState, OffCpuFunction, OffCpuReport, Quantiles, SchedReport, WakerRow,
};
use super::sched::Totals;
use crate::units::format_time_us;

/// The leaf frame that names a wait's state.
pub fn state_frame(state: u32) -> &'static str {
    match state {
        off_state::RUNNABLE => "[R]",
        off_state::DISK => "[D]",
        _ => "[S]",
    }
}

pub fn state_letter(state: u32) -> &'static str {
    match state {
        off_state::RUNNABLE => "R",
        off_state::DISK => "D",
        _ => "S",
    }
}

/// A kernel frame's name without the `_[k]` mark.
fn base(frame: &str) -> &str {
    frame.strip_suffix("_[k]").unwrap_or(frame)
}

fn is_kernel(frame: &str) -> bool {
    frame.ends_with("_[k]")
}

/// The BPF and tracepoint frames at the leaf of a stack taken inside a
/// tracepoint program.
fn is_tracing(frame: &str) -> bool {
    let f = base(frame);
    f.starts_with("bpf_prog_")
        || f.starts_with("bpf_trace_run")
        || f.starts_with("__bpf_trace_")
        || f.starts_with("__traceiter_")
        || f.starts_with("__bpf_prog_run")
}

/// Drops the tracing machinery from the leaf end of a kernel stack (root
/// first).
pub fn trim_tracing(frames: &mut Vec<String>) {
    while frames.last().is_some_and(|f| is_tracing(f)) {
        frames.pop();
    }
}

/// The scheduler itself, and the paths that enter it on a preemption:
/// not where a thread waited, only how it left the CPU.
fn is_scheduler(frame: &str) -> bool {
    let f = base(frame);
    matches!(
        f,
        "schedule" | "__schedule" | "do_task_dead" | "__cond_resched" | "_cond_resched"
    ) || f.starts_with("schedule_")
        || f.starts_with("preempt_schedule")
        || f.starts_with("io_schedule")
        || f.starts_with("freezable_schedule")
        || f.starts_with("exit_to_user_mode")
        || f.starts_with("arch_exit_to_user_mode")
        || f.starts_with("syscall_exit_to_user_mode")
        || f.starts_with("irqentry_exit")
        || f.starts_with("raw_irqentry_exit")
        || f.starts_with("asm_sysvec_")
        || f.starts_with("sysvec_")
        || f.starts_with("asm_common_interrupt")
        || f.starts_with("common_interrupt")
}

/// The wakeup machinery, between what woke a thread and the scheduler.
fn is_wakeup_machinery(frame: &str) -> bool {
    let f = base(frame);
    f == "try_to_wake_up"
        || f.starts_with("wake_up")
        || f.starts_with("__wake_up")
        || f.starts_with("swake_up")
        || f.starts_with("ttwu_")
        || f.ends_with("wake_function")
        || f == "pollwake"
        || f == "ep_poll_callback"
        || f == "wake_q_add"
        || f.starts_with("futex_wake_mark")
}

/// A hardware interrupt's entry: what a wakeup from interrupt context
/// has below it (the interrupted task is not the waker).
fn is_irq_entry(frame: &str) -> bool {
    let f = base(frame);
    f.starts_with("asm_sysvec_") || f.starts_with("asm_common_interrupt")
}

/// Where a thread waited, from its stack (root first, comm first, no
/// state leaf): the innermost frame that is not the scheduler's, with the
/// innermost user frame before it when the wait is in the kernel, e.g.
/// `__GI___clock_nanosleep → do_nanosleep`.
pub fn blocked_in(frames: &[String]) -> String {
    let body = frames.get(1..).unwrap_or(&[]);
    let user_leaf = body.iter().rev().find(|f| !is_kernel(f));
    let site = body
        .iter()
        .rev()
        .find(|f| is_kernel(f) && !is_scheduler(f) && !is_tracing(f));
    match (user_leaf, site) {
        (Some(u), Some(k)) => format!("{u} → {}", base(k)),
        (None, Some(k)) => base(k).to_string(),
        (Some(u), None) => u.clone(),
        (None, None) => "[unknown]".to_string(),
    }
}

/// The function a wait is charged to (its "self"): the site of
/// [`blocked_in`].
fn self_frame(frames: &[String]) -> Option<&String> {
    let body = frames.get(1..)?;
    body.iter()
        .rev()
        .find(|f| is_kernel(f) && !is_scheduler(f) && !is_tracing(f))
        .or_else(|| body.iter().rev().find(|f| !is_kernel(f)))
}

/// What ended a wait.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Waker {
    /// The waker's process name, or `[interrupt]`.
    pub label: String,
    /// Its stack, root first, starting with the label.
    pub frames: Vec<String>,
}

impl Waker {
    /// A waker from its process name and stacks (root first; `user` is
    /// None when it has none). A wakeup from a hardware interrupt keeps
    /// only the interrupt's frames: the task it interrupted did not wake
    /// anything.
    pub fn new(comm: &str, user: Option<Vec<String>>, mut kernel: Vec<String>) -> Waker {
        trim_tracing(&mut kernel);
        if let Some(i) = kernel.iter().position(|f| is_irq_entry(f)) {
            let label = "[interrupt]".to_string();
            let mut frames = vec![label.clone()];
            frames.extend(kernel.drain(i..));
            return Waker { label, frames };
        }
        let label = sanitize(comm);
        let mut frames = vec![label.clone()];
        frames.extend(user.unwrap_or_default());
        frames.extend(kernel);
        Waker { label, frames }
    }

    /// The waker and where it woke the thread from, e.g.
    /// `writer: __GI___libc_write → pipe_write`.
    pub fn site(&self) -> String {
        let body = &self.frames[1..];
        let user_leaf = body.iter().rev().find(|f| !is_kernel(f));
        let site = body
            .iter()
            .rev()
            .find(|f| is_kernel(f) && !is_wakeup_machinery(f) && !is_tracing(f));
        let what = match (user_leaf, site) {
            (Some(u), Some(k)) => format!("{u} → {}", base(k)),
            (None, Some(k)) => base(k).to_string(),
            (Some(u), None) => u.clone(),
            (None, None) => "[unknown]".to_string(),
        };
        format!("{}: {what}", self.label)
    }
}

/// All waits with the same stacks, state and waker.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// The waiting thread's stack, root first: process name, user frames,
    /// kernel frames (the tracing machinery trimmed), no state leaf.
    pub frames: Vec<String>,
    pub state: u32,
    pub waker: Option<Waker>,
    /// Estimated total time and number of waits (sampled ones, weighted).
    pub ns: u64,
    pub waits: u64,
}

impl Wait {
    pub fn new(
        comm: &str,
        user: Option<Vec<String>>,
        mut kernel: Vec<String>,
        state: u32,
        waker: Option<Waker>,
        (ns, waits): (u64, u64),
    ) -> Wait {
        trim_tracing(&mut kernel);
        let mut frames = vec![sanitize(comm)];
        match user {
            Some(u) if !u.is_empty() => frames.extend(u),
            _ => frames.push(super::symbolize::UNKNOWN.to_string()),
        }
        frames.extend(kernel);
        Wait {
            frames,
            state,
            waker,
            ns,
            waits,
        }
    }
}

/// Losses of the scheduler programs and the reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffCpuLost {
    pub ring_full: u64,
    pub threads_full: u64,
    pub map_full: u64,
    pub stack_collisions: u64,
    pub copies_missing: u64,
}

/// The off-CPU side of a profile.
#[derive(Debug, Clone)]
pub struct OffCpu {
    pub waits: Vec<Wait>,
    pub totals: Totals,
    pub wakeups: u64,
    pub preemptions: u64,
    pub switch_outs: u64,
    pub stacks_taken: u64,
    pub min_ns: u64,
    /// The largest 1-in-N the stack budget needed (1: every switch-out).
    pub sample_every_max: u32,
    pub lost: OffCpuLost,
}

const TOP: usize = 15;

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl OffCpu {
    /// The estimated time of the sampled stacks (≈ the exact total).
    pub fn stacks_ns(&self) -> u64 {
        self.waits.iter().map(|w| w.ns).sum()
    }

    /// Folded stacks whose counts are µs, the state as the leaf frame.
    pub fn folded(&self) -> Folded {
        let mut ns: HashMap<Vec<String>, u64> = HashMap::new();
        for w in &self.waits {
            let mut frames = w.frames.clone();
            frames.push(state_frame(w.state).to_string());
            *ns.entry(frames).or_default() += w.ns;
        }
        let mut stacks: Vec<(Vec<String>, u64)> = ns
            .into_iter()
            .map(|(f, n)| (f, (n + 500) / 1000))
            .filter(|(_, n)| *n > 0)
            .collect();
        stacks.sort();
        Folded { stacks }
    }

    /// Top blocking sites by time, split by state, each with the waker
    /// that ended most of its time.
    pub fn blocking(&self, limit: usize) -> Vec<BlockingRow> {
        type Site = (u32, String);
        let mut sites: HashMap<Site, (u64, u64, HashMap<String, u64>)> = HashMap::new();
        for w in &self.waits {
            let e = sites.entry((w.state, blocked_in(&w.frames))).or_default();
            e.0 += w.ns;
            e.1 += w.waits;
            if let Some(k) = &w.waker {
                *e.2.entry(k.site()).or_default() += w.ns;
            }
        }
        let total = self.stacks_ns();
        let mut rows: Vec<BlockingRow> = sites
            .into_iter()
            .map(|((state, site), (ns, waits, wakers))| BlockingRow {
                state: state_letter(state).to_string(),
                blocked_in: site,
                us: us(ns),
                pct: pct(ns, total),
                waits,
                woken_by: top_key(wakers),
            })
            .collect();
        rows.sort_by(|a, b| b.us.total_cmp(&a.us).then(a.blocked_in.cmp(&b.blocked_in)));
        rows.truncate(limit);
        rows
    }

    /// Wakers by the time of the waits they ended.
    pub fn wakers(&self, limit: usize) -> Vec<WakerRow> {
        /// Its site, time, waits, and the time it ended by blocking site.
        type Ended = (String, u64, u64, HashMap<String, u64>);
        let mut by: HashMap<Vec<String>, Ended> = HashMap::new();
        let mut woken_ns = 0;
        for w in &self.waits {
            let Some(k) = &w.waker else { continue };
            woken_ns += w.ns;
            let e = by
                .entry(k.frames.clone())
                .or_insert_with(|| (k.site(), 0, 0, HashMap::new()));
            e.1 += w.ns;
            e.2 += w.waits;
            *e.3.entry(blocked_in(&w.frames)).or_default() += w.ns;
        }
        let mut rows: Vec<WakerRow> = by
            .into_iter()
            .map(|(frames, (site, ns, waits, woke))| WakerRow {
                waker: site,
                stack: frames.join(";"),
                us: us(ns),
                pct: pct(ns, woken_ns),
                waits,
                woke: top_key(woke).unwrap_or_default(),
            })
            .collect();
        rows.sort_by(|a, b| b.us.total_cmp(&a.us).then(a.stack.cmp(&b.stack)));
        rows.truncate(limit);
        rows
    }

    /// Functions by off-CPU time: `self` where the wait is charged to it
    /// (its blocking site), `total` anywhere on the stack (once a stack).
    pub fn functions(&self, limit: usize) -> Vec<OffCpuFunction> {
        let mut selfs: HashMap<&str, u64> = HashMap::new();
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for w in &self.waits {
            if let Some(f) = self_frame(&w.frames) {
                *selfs.entry(f).or_default() += w.ns;
            }
            let mut seen: Vec<&str> = Vec::new();
            for f in w.frames.iter().skip(1) {
                if !seen.contains(&f.as_str()) && !is_scheduler(f) && !is_tracing(f) {
                    seen.push(f);
                    *totals.entry(f).or_default() += w.ns;
                }
            }
        }
        let total = self.stacks_ns();
        let mut rows: Vec<OffCpuFunction> = totals
            .iter()
            .map(|(name, &t)| {
                let s = selfs.get(name).copied().unwrap_or(0);
                OffCpuFunction {
                    name: name.to_string(),
                    self_us: us(s),
                    total_us: us(t),
                    self_pct: pct(s, total),
                    total_pct: pct(t, total),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.self_us
                .total_cmp(&a.self_us)
                .then(b.total_us.total_cmp(&a.total_us))
                .then(a.name.cmp(&b.name))
        });
        rows.truncate(limit);
        rows
    }

    pub fn merge(&mut self, o: &OffCpu) {
        self.waits.extend(o.waits.iter().cloned());
        self.totals.add(&o.totals);
        self.wakeups += o.wakeups;
        self.preemptions += o.preemptions;
        self.switch_outs += o.switch_outs;
        self.stacks_taken += o.stacks_taken;
        self.sample_every_max = self.sample_every_max.max(o.sample_every_max);
        let (a, b) = (&mut self.lost, &o.lost);
        a.ring_full += b.ring_full;
        a.threads_full += b.threads_full;
        a.map_full += b.map_full;
        a.stack_collisions += b.stack_collisions;
        a.copies_missing += b.copies_missing;
    }

    pub fn runq_quantiles(&self) -> Quantiles {
        quantiles(&self.totals.runq)
    }

    /// The text block printed under the on-CPU profile.
    pub fn summary(&self, window: Duration) -> String {
        let t = &self.totals;
        let st = |s: u32| format_time_us(us(t.by_state_ns[s as usize]));
        let mut s = format!(
            "Off-CPU over {:.2}s (waits ≥ {}): {} in {} waits: sleeping (S) {}, uninterruptible (D) {}, preempted (R) {}; stacks of {}\n",
            window.as_secs_f64(),
            format_time_us(us(self.min_ns)),
            format_time_us(us(t.total_ns())),
            t.waits,
            st(off_state::SLEEP),
            st(off_state::DISK),
            st(off_state::RUNNABLE),
            if self.sample_every_max <= 1 {
                "every switch-out".to_string()
            } else {
                format!(
                    "1 in up to {} switch-outs ({} taken; times scaled)",
                    self.sample_every_max, self.stacks_taken
                )
            }
        );
        let q = self.runq_quantiles();
        s.push_str(&format!(
            "Run-queue latency (woken or preempted → running): p50 {}, p90 {}, p99 {}, max {} over {} waits ({} wakeups, {} preemptions)\n",
            format_time_us(q.p50 as f64),
            format_time_us(q.p90 as f64),
            format_time_us(q.p99 as f64),
            format_time_us(q.max as f64),
            t.runq.len(),
            self.wakeups,
            self.preemptions
        ));
        let rows = self.blocking(10);
        if !rows.is_empty() {
            s.push_str("  Where the target waited:\n");
            let width = rows
                .iter()
                .map(|r| r.blocked_in.chars().count())
                .max()
                .unwrap_or(0)
                .clamp(10, 60);
            s.push_str(&format!(
                "    {:>9}  {:>6}  State  {:<width$}  Woken by\n",
                "Time", "Share", "Blocked in"
            ));
            for r in rows {
                s.push_str(&format!(
                    "    {:>9}  {:>5.1}%  {:<5}  {:<width$}  {}\n",
                    format_time_us(r.us),
                    r.pct,
                    r.state,
                    r.blocked_in,
                    r.woken_by.as_deref().unwrap_or("-")
                ));
            }
        }
        s
    }

    /// The JSON `profile.off_cpu` section.
    pub fn report(&self) -> OffCpuReport {
        let t = &self.totals;
        OffCpuReport {
            total_us: us(t.total_ns()),
            by_state: ByState {
                sleep_us: us(t.by_state_ns[off_state::SLEEP as usize]),
                disk_us: us(t.by_state_ns[off_state::DISK as usize]),
                preempted_us: us(t.by_state_ns[off_state::RUNNABLE as usize]),
            },
            waits: t.waits,
            min_us: us(self.min_ns),
            stacks_us: us(self.stacks_ns()),
            sample_every_max: self.sample_every_max,
            stacks_taken: self.stacks_taken,
            functions: self.functions(TOP),
            blocking: self.blocking(TOP),
            wakers: self.wakers(TOP),
            lost: super::report::OffCpuLostReport {
                ring_full: self.lost.ring_full,
                threads_full: self.lost.threads_full,
                map_full: self.lost.map_full,
                stack_collisions: self.lost.stack_collisions,
                copies_missing: self.lost.copies_missing,
            },
            folded: self.folded().lines(),
        }
    }

    /// The JSON `profile.sched` section.
    pub fn sched_report(&self) -> SchedReport {
        SchedReport {
            runq_latency_us: self.runq_quantiles(),
            runq_waits: self.totals.runq.len(),
            wakeups: self.wakeups,
            preemptions: self.preemptions,
            switch_outs: self.switch_outs,
        }
    }
}

fn top_key(m: HashMap<String, u64>) -> Option<String> {
    m.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(k, _)| k)
}

pub fn quantiles(h: &Histogram<u64>) -> Quantiles {
    if h.is_empty() {
        return Quantiles::default();
    }
    Quantiles {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        if s.is_empty() {
            return Vec::new();
        }
        s.split(';').map(str::to_string).collect()
    }

    const SLEEP_K: &str = "entry_SYSCALL_64_after_hwframe_[k];do_syscall_64_[k];__x64_sys_clock_nanosleep_[k];hrtimer_nanosleep_[k];do_nanosleep_[k];schedule_[k];__schedule_[k];__traceiter_sched_switch_[k];__bpf_trace_sched_switch_[k];bpf_trace_run4_[k];bpf_prog_6deef7357e7b4530_sched_switch_[k]";
    const TIMER_WAKER_K: &str = "secondary_startup_64_[k];cpu_startup_entry_[k];do_idle_[k];default_idle_call_[k];asm_sysvec_apic_timer_interrupt_[k];sysvec_apic_timer_interrupt_[k];__sysvec_apic_timer_interrupt_[k];hrtimer_interrupt_[k];__hrtimer_run_queues_[k];hrtimer_wakeup_[k];try_to_wake_up_[k];__traceiter_sched_waking_[k];bpf_trace_run1_[k];bpf_prog_1_sched_waking_[k]";
    const PIPE_WAKER_K: &str = "entry_SYSCALL_64_after_hwframe_[k];do_syscall_64_[k];ksys_write_[k];vfs_write_[k];pipe_write_[k];__wake_up_sync_key_[k];__wake_up_common_[k];autoremove_wake_function_[k];try_to_wake_up_[k];bpf_prog_2_sched_waking_[k]";

    fn sleep_wait(ns: u64, waits: u64) -> Wait {
        Wait::new(
            "python3",
            Some(v("_start;main;time_sleep;__GI___clock_nanosleep")),
            v(SLEEP_K),
            off_state::SLEEP,
            Some(Waker::new("swapper/0", None, v(TIMER_WAKER_K))),
            (ns, waits),
        )
    }

    fn pipe_wait(ns: u64) -> Wait {
        Wait::new(
            "pipewait",
            Some(v("start_thread;reader;__GI___libc_read")),
            v(
                "entry_SYSCALL_64_after_hwframe_[k];ksys_read_[k];vfs_read_[k];pipe_read_[k];schedule_[k];__schedule_[k];bpf_prog_3_sched_switch_[k]",
            ),
            off_state::SLEEP,
            Some(Waker::new(
                "pipewait",
                Some(v("start_thread;writer;__GI___libc_write")),
                v(PIPE_WAKER_K),
            )),
            (ns, 10),
        )
    }

    fn preempted(ns: u64) -> Wait {
        Wait::new(
            "python3",
            Some(v("_start;main;burn")),
            v(
                "asm_sysvec_apic_timer_interrupt_[k];irqentry_exit_to_user_mode_[k];exit_to_user_mode_loop_[k];schedule_[k];__schedule_[k]",
            ),
            off_state::RUNNABLE,
            None,
            (ns, 3),
        )
    }

    fn profile(waits: Vec<Wait>) -> OffCpu {
        OffCpu {
            waits,
            totals: Totals::default(),
            wakeups: 0,
            preemptions: 0,
            switch_outs: 0,
            stacks_taken: 0,
            min_ns: 1000,
            sample_every_max: 1,
            lost: OffCpuLost::default(),
        }
    }

    #[test]
    fn tracing_frames_are_trimmed_and_the_state_is_the_leaf() {
        let p = profile(vec![sleep_wait(5_000_400, 1), sleep_wait(4_999_700, 1)]);
        let f = p.folded();
        assert_eq!(f.stacks.len(), 1);
        let (frames, n) = &f.stacks[0];
        assert_eq!(*n, 10_000, "µs, rounded once per stack");
        assert_eq!(frames.last().unwrap(), "[S]");
        assert_eq!(frames[frames.len() - 2], "__schedule_[k]");
        assert!(
            frames
                .iter()
                .all(|fr| !fr.contains("bpf_") && !fr.contains("traceiter"))
        );
        assert_eq!(frames[0], "python3");
        let line = &f.lines()[0];
        assert!(line.ends_with(";__schedule_[k];[S] 10000"), "{line}");
    }

    #[test]
    fn blocked_in_names_the_syscall_site_and_the_user_call() {
        let w = sleep_wait(1, 1);
        assert_eq!(
            blocked_in(&w.frames),
            "__GI___clock_nanosleep → do_nanosleep"
        );
        assert_eq!(self_frame(&w.frames).unwrap(), "do_nanosleep_[k]");
        // Preempted in user mode: the user frame where it was running.
        assert_eq!(blocked_in(&preempted(1).frames), "burn");
        // No kernel stack at all, no user stack either.
        let bare = Wait::new("x", None, Vec::new(), off_state::SLEEP, None, (1, 1));
        assert_eq!(bare.frames, v("x;[unknown]"));
        assert_eq!(blocked_in(&bare.frames), "[unknown]");
    }

    #[test]
    fn wakers_from_interrupts_keep_only_the_interrupt() {
        let k = Waker::new("swapper/0", Some(v("should;vanish")), v(TIMER_WAKER_K));
        assert_eq!(k.label, "[interrupt]");
        assert_eq!(k.frames[1], "asm_sysvec_apic_timer_interrupt_[k]");
        assert_eq!(k.frames.last().unwrap(), "try_to_wake_up_[k]");
        assert!(
            !k.frames
                .iter()
                .any(|f| f == "should" || f.contains("do_idle"))
        );
        assert_eq!(k.site(), "[interrupt]: hrtimer_wakeup");
        let p = pipe_wait(1).waker.unwrap();
        assert_eq!(p.label, "pipewait");
        assert_eq!(p.site(), "pipewait: __GI___libc_write → pipe_write");
        assert_eq!(p.frames[..3], v("pipewait;start_thread;writer")[..]);
    }

    #[test]
    fn table_wakers_and_functions() {
        let p = profile(vec![
            sleep_wait(60_000_000, 12),
            pipe_wait(30_000_000),
            preempted(10_000_000),
        ]);
        let rows = p.blocking(10);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].blocked_in, "__GI___clock_nanosleep → do_nanosleep");
        assert_eq!(rows[0].state, "S");
        assert!((rows[0].pct - 60.0).abs() < 1e-9);
        assert_eq!(rows[0].us, 60_000.0);
        assert_eq!(rows[0].waits, 12);
        assert_eq!(
            rows[0].woken_by.as_deref(),
            Some("[interrupt]: hrtimer_wakeup")
        );
        assert_eq!(
            rows[1].woken_by.as_deref(),
            Some("pipewait: __GI___libc_write → pipe_write")
        );
        assert_eq!(
            (rows[2].state.as_str(), rows[2].woken_by.as_deref()),
            ("R", None)
        );
        let wk = p.wakers(10);
        assert_eq!(wk.len(), 2);
        assert!((wk[0].pct - 66.666).abs() < 0.01, "of woken time: {wk:?}");
        assert_eq!(wk[1].woke, "__GI___libc_read → pipe_read");
        assert!(
            wk[1]
                .stack
                .starts_with("pipewait;start_thread;writer;__GI___libc_write;")
        );
        let f = p.functions(50);
        assert_eq!(f[0].name, "do_nanosleep_[k]");
        assert_eq!((f[0].self_us, f[0].total_us), (60_000.0, 60_000.0));
        let main = f.iter().find(|r| r.name == "main").unwrap();
        assert_eq!((main.self_us, main.total_us), (0.0, 70_000.0));
        assert!(
            f.iter()
                .all(|r| r.name != "__schedule_[k]" && r.name != "python3")
        );
        let text = p.summary(Duration::from_secs(2));
        assert!(text.contains("Where the target waited:"), "{text}");
        assert!(
            text.contains("__GI___clock_nanosleep → do_nanosleep"),
            "{text}"
        );
        assert!(text.contains("every switch-out"), "{text}");
        let json = serde_json::to_value(p.report()).unwrap();
        for k in [
            "total_us",
            "by_state",
            "functions",
            "wakers",
            "blocking",
            "folded",
        ] {
            assert!(json.get(k).is_some(), "{k}: {json}");
        }
        for k in ["sleep_us", "disk_us", "preempted_us"] {
            assert!(json["by_state"].get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn merging_adds_waits_and_totals() {
        let mut a = profile(vec![sleep_wait(1_000_000, 1)]);
        a.totals.by_state_ns[1] = 1_000_000;
        a.totals.runq.record(10).unwrap();
        a.wakeups = 3;
        let mut b = profile(vec![sleep_wait(2_000_000, 2)]);
        b.totals.by_state_ns[1] = 2_000_000;
        b.totals.runq.record(1000).unwrap();
        b.sample_every_max = 4;
        a.merge(&b);
        assert_eq!(a.folded().stacks[0].1, 3000);
        assert_eq!(a.totals.total_ns(), 3_000_000);
        assert_eq!(a.runq_quantiles().max, 1000);
        assert_eq!((a.wakeups, a.sample_every_max), (3, 4));
        assert_eq!(
            quantiles(&crate::profile::sched::runq_histogram()),
            Quantiles::default()
        );
    }
}
