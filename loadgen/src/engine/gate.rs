//! Starting shards together: every shard thread sets itself up (pins, builds
//! its ring or executor), then waits at the gate; the gate opens when all
//! have arrived, or releases everyone at once when any fails to start (a
//! thread that could not be spawned, a ring the kernel refused, a panic in
//! set-up). A `Barrier` cannot do the second part: one missing party left
//! the others waiting forever.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ScopedJoinHandle;
use std::time::SystemTime;

use super::EngineError;

pub struct Gate {
    parties: usize,
    state: Mutex<State>,
    cv: Condvar,
}

struct State {
    arrived: usize,
    phase: Phase,
}

#[derive(Clone, Copy)]
enum Phase {
    Waiting,
    /// Opened at this wall-clock time.
    Open(SystemTime),
    Aborted,
}

impl Gate {
    pub fn new(parties: usize) -> Gate {
        Gate {
            parties,
            state: Mutex::new(State {
                arrived: 0,
                phase: Phase::Waiting,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked holding the lock changed nothing half-way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The start will not happen: everyone waiting, or still to come, is
    /// turned back.
    pub fn abort(&self) {
        let mut s = self.lock();
        if matches!(s.phase, Phase::Waiting) {
            s.phase = Phase::Aborted;
        }
        self.cv.notify_all();
    }

    /// One shard's ticket: [`Pass::wait`] once set up; dropping it unused
    /// aborts the start.
    pub fn pass(&self) -> Pass<'_> {
        Pass {
            gate: self,
            used: false,
        }
    }

    /// When the gate opened, if it did.
    pub fn opened_at(&self) -> Option<SystemTime> {
        match self.lock().phase {
            Phase::Open(t) => Some(t),
            _ => None,
        }
    }

    fn arrive(&self) -> Result<(), EngineError> {
        let mut s = self.lock();
        if matches!(s.phase, Phase::Waiting) {
            s.arrived += 1;
            if s.arrived == self.parties {
                s.phase = Phase::Open(SystemTime::now());
                self.cv.notify_all();
            }
        }
        loop {
            match s.phase {
                Phase::Open(_) => return Ok(()),
                Phase::Aborted => return Err(EngineError::Aborted),
                Phase::Waiting => s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

pub struct Pass<'g> {
    gate: &'g Gate,
    used: bool,
}

impl Pass<'_> {
    /// This shard is ready: waits until all are (`Ok`), or until the start
    /// is aborted (`Err(Aborted)`).
    pub fn wait(mut self) -> Result<(), EngineError> {
        self.used = true;
        self.gate.arrive()
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.gate.abort();
        }
    }
}

/// Spawns `n` shard threads with `spawn` and joins them. A thread that
/// cannot be spawned aborts the gate, so those already waiting at it
/// return, and its error is in the results.
pub fn start_threads<'s, T>(
    gate: &Gate,
    n: usize,
    mut spawn: impl FnMut(usize) -> io::Result<ScopedJoinHandle<'s, Result<T, EngineError>>>,
) -> Vec<Result<T, EngineError>> {
    let mut handles = Vec::with_capacity(n);
    let mut spawn_error = None;
    for i in 0..n {
        match spawn(i) {
            Ok(h) => handles.push(h),
            Err(e) => {
                gate.abort();
                spawn_error = Some(EngineError::Spawn(e));
                break;
            }
        }
    }
    let mut results: Vec<Result<T, EngineError>> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(Err(EngineError::Panic)))
        .collect();
    results.extend(spawn_error.map(Err));
    results
}

/// The error a failed start reports: the cause, not the shards it stopped.
pub fn root_cause(errors: Vec<EngineError>) -> Option<EngineError> {
    let mut errors = errors;
    let i = errors
        .iter()
        .position(|e| !matches!(e, EngineError::Aborted))
        .unwrap_or(0);
    (!errors.is_empty()).then(|| errors.swap_remove(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs `f` on a thread and fails the test if it does not return in
    /// time (the bug this guards against was a hang).
    fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the start hung")
    }

    fn shard(gate: &Gate, fail_setup: bool) -> Result<u32, EngineError> {
        let pass = gate.pass();
        if fail_setup {
            return Err(EngineError::Glommio("set-up failed".into()));
        }
        pass.wait()?;
        Ok(1)
    }

    fn run(n: usize, spawn_fails_at: Option<usize>, setup_fails_at: Option<usize>) -> Vec<String> {
        let gate = Gate::new(n);
        let results = std::thread::scope(|s| {
            start_threads(&gate, n, |i| {
                if Some(i) == spawn_fails_at {
                    return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                }
                let gate = &gate;
                std::thread::Builder::new()
                    .spawn_scoped(s, move || shard(gate, Some(i) == setup_fails_at))
            })
        });
        results
            .into_iter()
            .map(|r| match r {
                Ok(v) => v.to_string(),
                Err(EngineError::Spawn(_)) => "spawn".into(),
                Err(EngineError::Aborted) => "aborted".into(),
                Err(e) => e.to_string(),
            })
            .collect()
    }

    #[test]
    fn all_start_together() {
        assert_eq!(within(|| run(3, None, None)), ["1", "1", "1"]);
    }

    #[test]
    fn a_thread_that_cannot_be_spawned_releases_the_others() {
        // Before the gate, shard 0 waited on a Barrier for a shard 1 that
        // never existed.
        assert_eq!(within(|| run(3, Some(1), None)), ["aborted", "spawn"]);
    }

    #[test]
    fn a_shard_that_fails_set_up_releases_the_others() {
        let r = within(|| run(3, None, Some(2)));
        assert_eq!(r[..2], ["aborted", "aborted"]);
        assert!(r[2].contains("set-up failed"), "{r:?}");
    }

    #[test]
    fn the_cause_is_reported_not_the_aborts() {
        let e = root_cause(vec![
            EngineError::Aborted,
            EngineError::Spawn(io::Error::from_raw_os_error(libc::EAGAIN)),
        ]);
        assert!(matches!(e, Some(EngineError::Spawn(_))));
        assert!(root_cause(Vec::new()).is_none());
    }
}
