//! The clocks every shard keeps, whatever its engine: wrk's "Req/Sec"
//! samples (each shard's rate over ~100 ms intervals) and the per-second
//! series. Times are ns since the shard started.

use super::ShardProgress;
use crate::stats::ShardStats;

const RATE_INTERVAL_NS: u64 = 100_000_000;
const SECOND_NS: u64 = 1_000_000_000;

pub struct Clocks {
    next_rate: u64,
    rate_since: u64,
    /// Requests finished (answered or failed) at the last rate sample.
    last_count: u64,
    next_second: u64,
}

fn finished(stats: &ShardStats) -> u64 {
    stats.responses + stats.errors.requests()
}

impl Clocks {
    /// Seconds of the series start at `measure_from` (the end of warm-up).
    pub fn new(measure_from: u64) -> Clocks {
        Clocks {
            next_rate: RATE_INTERVAL_NS,
            rate_since: 0,
            last_count: 0,
            next_second: measure_from + SECOND_NS,
        }
    }

    /// When the next sample or second is due.
    pub fn next_wake(&self) -> u64 {
        self.next_rate.min(self.next_second)
    }

    /// The measurement starts now (stats were just reset).
    pub fn restart(&mut self, now: u64) {
        self.rate_since = now;
        self.last_count = 0;
    }

    /// Whether [`Self::tick`] at `now` closes a second and publishes.
    pub fn publishes(&self, now: u64, warming: bool, stopped: bool) -> bool {
        !warming && (stopped || now >= self.next_second)
    }

    /// Takes the samples that are due at `now`. Seconds close on their
    /// boundary, plus a final partial one when `stopped`, so the series
    /// covers the whole window. Nothing is recorded while `warming`.
    /// Returns whether a second closed (and progress was published).
    pub fn tick(
        &mut self,
        stats: &mut ShardStats,
        now: u64,
        warming: bool,
        stopped: bool,
        progress: &ShardProgress,
    ) -> bool {
        if now >= self.next_rate {
            let count = finished(stats);
            if count > self.last_count && !warming {
                let ns = (now - self.rate_since).max(1);
                stats
                    .rate
                    .saturating_record((count - self.last_count) * 1_000_000_000 / ns);
            }
            self.last_count = count;
            self.rate_since = now;
            self.next_rate = now + RATE_INTERVAL_NS;
        }
        let mut published = false;
        while self.publishes(now, warming, stopped && self.next_second > now) {
            let last = now < self.next_second;
            stats.roll_second();
            progress.publish(stats);
            published = true;
            self.next_second += SECOND_NS;
            if last {
                break;
            }
        }
        published
    }
}
