//! Ctrl-C: the first one ends the run early (the report is still printed
//! and written); a second one kills the process as usual.

use std::sync::atomic::{AtomicBool, Ordering};

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
