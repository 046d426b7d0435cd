//! What a shard publishes of QUIC once per second (`--http3`), beside its
//! [`ShardProgress`](super::ShardProgress): the counters of
//! [`QuicStats`], the RTT histogram in the live buckets, and the
//! connection errors by name. Only the shard writes; readers never block
//! it, and it never waits for them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::plan::LiveBuckets;
use crate::http::h3::{QUIC_COUNTERS, QuicStats};

/// Distinct error names published one by one; more are summed under
/// [`OTHER`] in the last slot (a run sees a handful).
pub const ERROR_SLOTS: usize = 32;
/// The name the errors past the first `ERROR_SLOTS - 1` names go under.
pub const OTHER: &str = "OTHER";

/// A connection error's name and count. The name is set once, by the
/// shard, when it first publishes it: a reader sees either no name or
/// the name for good.
#[derive(Debug, Default)]
pub struct NamedCount {
    pub name: OnceLock<String>,
    pub count: AtomicU64,
}

#[derive(Debug, Default)]
pub struct QuicProgress {
    /// [`QuicStats::counters`], in their order.
    pub counters: [AtomicU64; QUIC_COUNTERS],
    pub rtt: LiveBuckets,
    pub errors: [NamedCount; ERROR_SLOTS],
}

impl QuicProgress {
    /// Once per second, from the shard: its QUIC stats so far. The names
    /// are a few; a new one allocates once.
    pub(super) fn publish(&self, q: &QuicStats) {
        for (slot, n) in self.counters.iter().zip(q.counters()) {
            slot.store(n, Ordering::Relaxed);
        }
        self.rtt.publish(&q.rtt);
        let (named, last) = self.errors.split_at(ERROR_SLOTS - 1);
        let mut other = 0;
        for (name, &n) in &q.connection_errors {
            match slot_for(named, name) {
                Some(slot) => slot.count.store(n, Ordering::Relaxed),
                None => other += n,
            }
        }
        if other > 0 {
            let _ = last[0].name.set(OTHER.to_string());
            last[0].count.store(other, Ordering::Relaxed);
        }
    }

    /// The errors published so far, by name.
    pub fn errors(&self) -> impl Iterator<Item = (&str, u64)> {
        self.errors.iter().map_while(|s| {
            let name = s.name.get()?;
            Some((name.as_str(), s.count.load(Ordering::Relaxed)))
        })
    }
}

/// The slot named `name`, or the first unnamed one (named now), or None
/// when all are taken by other names. Slots are named in order, so the
/// first unnamed one ends the search.
fn slot_for<'a>(slots: &'a [NamedCount], name: &str) -> Option<&'a NamedCount> {
    for s in slots {
        match s.name.get() {
            Some(n) if n == name => return Some(s),
            Some(_) => {}
            None => {
                // Only this shard sets names, so the slot is still free.
                let _ = s.name.set(name.to_string());
                return Some(s);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_rtt_and_errors_are_published_and_names_keep_their_slot() {
        let mut q = QuicStats {
            handshakes: 4,
            zero_rtt_attempted: 2,
            zero_rtt_accepted: 1,
            retries: 5,
            packets_sent: 900,
            packets_lost: 3,
            datagrams_sent: 600,
            sends: 200,
            datagrams_received: 700,
            receives: 350,
            ..QuicStats::default()
        };
        q.rtt.record(80).unwrap();
        q.rtt.record(400).unwrap();
        q.add_error("IDLE_TIMEOUT".into());
        let p = QuicProgress::default();
        p.publish(&q);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            p.counters.each_ref().map(load),
            [4, 2, 1, 5, 900, 3, 600, 200, 700, 350]
        );
        assert_eq!(load(&p.rtt.count), 2);
        assert_eq!(load(&p.rtt.counts[2]), 1, "80 µs ≤ 100 µs");
        assert_eq!(load(&p.rtt.counts[5]), 1, "400 µs ≤ 500 µs");
        // A name sorting first arrives later: the first keeps its slot.
        q.add_error("H3_FRAME_UNEXPECTED".into());
        q.add_error("IDLE_TIMEOUT".into());
        p.publish(&q);
        let errors: Vec<_> = p.errors().collect();
        assert_eq!(errors, [("IDLE_TIMEOUT", 2), ("H3_FRAME_UNEXPECTED", 1)]);
    }

    #[test]
    fn names_past_the_slots_are_summed_as_other() {
        let mut q = QuicStats::default();
        for i in 0..ERROR_SLOTS + 3 {
            q.add_error(format!("APPLICATION_{i:#04x}"));
        }
        let p = QuicProgress::default();
        p.publish(&q);
        let errors: Vec<_> = p.errors().collect();
        assert_eq!(errors.len(), ERROR_SLOTS);
        assert_eq!(errors.last(), Some(&(OTHER, 4)));
        assert_eq!(
            errors.iter().map(|e| e.1).sum::<u64>(),
            q.connection_errors.len() as u64
        );
    }
}
