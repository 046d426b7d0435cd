//! Ctrl-C: the first one ends the run early (the report is still printed
//! and written); a second one kills the process as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the handler (SIGINT and SIGTERM) and returns the flag shards
/// poll.
pub fn install() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic; the sigaction struct
    // is fully initialised before use.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as *const () as usize;
        sa.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
    // A parent may have started us with these signals blocked; a stop
    // still pending then arrives here, before the first run starts.
    crate::sys::unblock_stop_signals();
    &STOP
}

/// True once Ctrl-C was pressed.
pub fn interrupted() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// How often a [`sleep`] looks at the stop flag: short enough that Ctrl-C
/// feels immediate.
const STEP: Duration = Duration::from_millis(50);

/// Sleeps for `d`, or until Ctrl-C, whichever comes first; true when it
/// slept the whole time. `std::thread::sleep` resumes after the signal, so
/// a long pause would ignore the first Ctrl-C and leave the second (the
/// default action) to kill the process and lose the report.
pub fn sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    while !interrupted() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(STEP));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_ends_at_once_after_a_stop() {
        assert!(sleep(Duration::from_millis(20)), "no stop: the whole time");
        STOP.store(true, Ordering::SeqCst);
        let started = Instant::now();
        assert!(!sleep(Duration::from_secs(60)));
        assert!(started.elapsed() < Duration::from_secs(1));
        STOP.store(false, Ordering::SeqCst);
    }
}
