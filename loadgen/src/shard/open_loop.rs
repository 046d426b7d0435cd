//! Open loop (`-R`, `--stages`): requests leave at their intended times,
//! whatever the server does, and latency counts from those times.

use super::Core;
use super::conn::ConnState;
use crate::schedule::ShardSchedule;

/// Which request is next and when it is due.
pub(super) struct OpenLoop {
    schedule: ShardSchedule,
    /// Index of the next new request in the schedule.
    next_k: u64,
    /// Its intended send time (ns); `None` once the schedule is exhausted.
    pub next_due: Option<u64>,
    /// Intended times of requests lost with a failed connection, to be
    /// sent again first; oldest last, so `pop` takes the oldest
    /// (preallocated: at most one per pipeline slot).
    retry: Vec<u64>,
    /// The last dispatch found no free connection: no point waking up for
    /// `next_due` until a completion frees one.
    pub blocked: bool,
    /// Time of the last dispatch that found no free connection: requests
    /// due by then waited for a connection (the server), not for us.
    last_block_at: Option<u64>,
    /// Where the search for a free connection resumes.
    cursor: usize,
    /// Connections given requests in this dispatch (preallocated).
    touched: Vec<u32>,
}

impl OpenLoop {
    pub fn new(mut schedule: ShardSchedule, conns: usize, depth: usize) -> OpenLoop {
        let next_due = schedule.intended_ns(0);
        OpenLoop {
            schedule,
            next_k: 0,
            next_due,
            retry: Vec::with_capacity(conns * depth),
            blocked: false,
            last_block_at: None,
            cursor: 0,
            touched: Vec::with_capacity(conns),
        }
    }

    /// Requests of failed connections wait to be sent again.
    pub fn has_retries(&self) -> bool {
        !self.retry.is_empty()
    }

    /// Requests of a failed connection (`intended`, oldest first) go out
    /// again before any new one, oldest first.
    pub fn requeue(&mut self, intended: impl Iterator<Item = u64>) {
        let start = self.retry.len();
        self.retry.extend(intended);
        self.retry[start..].reverse();
    }
}

impl Core<'_> {
    /// Queues every request whose intended time has come on a connection
    /// with a free pipeline slot, then sends once per touched connection.
    /// When no slot is free the request waits; the wait counts in its
    /// corrected latency, and as a connection wait rather than lag.
    pub(super) fn dispatch(&mut self, now: u64) {
        if self.stopping {
            return;
        }
        let n = self.conns.len();
        let Some(ol) = self.open_loop.as_mut() else {
            return;
        };
        if ol.blocked {
            // No slot was free at the last dispatch, and the core has not
            // looked since: whatever came due meanwhile waited for a
            // connection, not for us.
            ol.last_block_at = Some(now);
        }
        ol.blocked = false;
        loop {
            let (intended, is_retry) = match ol.retry.last() {
                Some(&t) => (t, true),
                None => match ol.next_due {
                    Some(t) if t <= now => (t, false),
                    _ => break,
                },
            };
            if !is_retry && self.quota == Some(0) {
                break;
            }
            let cursor = ol.cursor;
            let conns = &self.conns;
            let Some(ci) = (0..n)
                .map(|i| (cursor + i) % n)
                .find(|&ci| conns[ci].state == ConnState::Open && conns[ci].free_slots() > 0)
            else {
                ol.blocked = true;
                ol.last_block_at = Some(now);
                break;
            };
            ol.cursor = (ci + 1) % n;
            if is_retry {
                ol.retry.pop();
            } else {
                ol.next_k += 1;
                ol.next_due = ol.schedule.intended_ns(ol.next_k);
                if let Some(q) = &mut self.quota {
                    *q -= 1;
                }
                self.outstanding += 1;
                if intended >= self.measure_from {
                    if ol.last_block_at.is_some_and(|b| intended <= b) {
                        // It waited for a connection (the server was slow),
                        // not for us: not generator lag.
                        self.stats.conn_waits += 1;
                    } else {
                        self.stats
                            .lag
                            .saturating_record(now.saturating_sub(intended) / 1000 + 1);
                    }
                }
            }
            let c = &mut self.conns[ci];
            if c.slots.queued == 0 {
                ol.touched.push(ci as u32);
            }
            c.slots.queue(intended);
        }
        let mut touched = std::mem::take(&mut ol.touched);
        for &ci in &touched {
            let c = &self.conns[ci as usize];
            if c.slots.queued > 0 && c.can_send() {
                self.send(ci as usize, now);
            }
        }
        touched.clear();
        if let Some(ol) = self.open_loop.as_mut() {
            ol.touched = touched;
        }
    }
}
