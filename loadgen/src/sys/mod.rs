//! Every system call loadgen makes by hand, and the memory io_uring
//! shares with the kernel. Nothing here knows about HTTP or load: the load
//! engines, the built-in target and the command layer all use it.

pub mod sock;
pub mod udp;
pub mod uring;

use std::io;

/// The CPUs this process may run on (taskset, cgroup cpusets), in order.
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Pins the calling thread to `cpu`. Best effort: a CPU removed by cgroups
/// since start-up just leaves the thread floating.
pub fn pin_current_thread(cpu: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

/// Sets the calling thread's timer slack to 1 ns. The default 50 µs showed
/// up whole in open-loop schedule lag (p50 65 µs at 2k req/s): timed waits,
/// whichever engine makes them, wake on time only without slack.
pub fn no_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's slack and
    // reads no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// The calling thread's time on a CPU, and waiting on a run queue for one
/// (`/proc/thread-self/schedstat`), ns. Without schedstat, the CPU time
/// alone (CLOCK_THREAD_CPUTIME_ID) and no wait.
pub fn thread_sched_ns() -> (u64, u64) {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        if let (Some(cpu), Some(wait)) = (f.next(), f.next()) {
            return (cpu, wait);
        }
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64, 0)
}

/// The calling thread's timer slack, ns.
pub fn timer_slack_ns() -> u64 {
    // SAFETY: PR_GET_TIMERSLACK reads no memory of ours; it returns the
    // slack.
    unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) as u64 }
}

/// The soft `RLIMIT_MEMLOCK` in bytes (`None`: unlimited).
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass, which lives
    // for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur))
}

/// Raises the open-file limit (`RLIMIT_NOFILE`) to at least `want` when it
/// is lower: the soft limit up to the hard one, and the hard one too where
/// the process may (root, CAP_SYS_RESOURCE), as Go programs and k6 do.
/// Returns the soft limit now in force.
pub fn raise_file_limit(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(want);
    }
    // No privilege to raise the hard limit: as far as it goes.
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max.min(want),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
        return Ok(soft.rlim_cur);
    }
    Ok(lim.rlim_cur)
}

/// This host's name (a pod's name in Kubernetes); empty if unknown.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Unblocks SIGINT and SIGTERM for this thread (and threads it starts).
/// A parent can hand loadgen a mask with them blocked (some CI runners and
/// `nohup`-style wrappers do); Ctrl-C must still end the run with a report.
pub fn unblock_stop_signals() {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it,
    // and pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Whether `errno` means the peer reset the connection.
pub fn is_reset(errno: i32) -> bool {
    errno == libc::ECONNRESET || errno == libc::EPIPE
}
