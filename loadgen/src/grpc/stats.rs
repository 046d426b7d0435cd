//! What a gRPC run counts per shard and merges: calls by status code, and
//! the latency of each code's calls.

use hdrhistogram::Histogram;

use super::status::{self, CODES};
use crate::histogram::{self, new_latency_histogram};

#[derive(Debug, Clone)]
pub struct GrpcStats {
    /// Calls by status code (the last slot: codes past 16).
    pub status: [u64; CODES],
    /// Each code's latency, µs, as `ShardStats::latency` (corrected in
    /// open loop). Allocated up front: recording never allocates.
    pub latency: Box<[Histogram<u64>; CODES]>,
}

impl Default for GrpcStats {
    fn default() -> Self {
        GrpcStats {
            status: [0; CODES],
            latency: Box::new(std::array::from_fn(|_| new_latency_histogram())),
        }
    }
}

impl GrpcStats {
    #[inline]
    pub fn record(&mut self, code: u8, latency_us: u64) {
        let i = (code as usize).min(CODES - 1);
        self.status[i] += 1;
        self.latency[i].saturating_record(latency_us.max(1));
    }

    /// Calls whose status was not OK.
    pub fn non_ok(&self) -> u64 {
        self.status[status::OK as usize + 1..].iter().sum()
    }

    /// Calls by status name, in code order, codes never seen left out.
    pub fn by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        (0..CODES as u8)
            .map(|c| (status::name(c), self.status[c as usize]))
            .filter(|&(_, n)| n > 0)
    }

    /// Calls whose status `expected` rejects.
    pub fn unexpected(&self, expected: &[u8]) -> u64 {
        (0..CODES as u8)
            .filter(|c| !expected.contains(c))
            .map(|c| self.status[c as usize])
            .sum()
    }

    pub fn merge(&mut self, o: &GrpcStats) {
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        for (a, b) in self.latency.iter_mut().zip(o.latency.iter()) {
            histogram::add(a, b);
        }
    }

    pub fn reset(&mut self) {
        self.status = [0; CODES];
        for h in self.latency.iter_mut() {
            h.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_by_name() {
        let mut a = GrpcStats::default();
        let mut b = GrpcStats::default();
        a.record(0, 10);
        b.record(3, 20);
        b.record(3, 30);
        b.record(40, 5);
        a.merge(&b);
        let names: Vec<_> = a.by_name().collect();
        assert_eq!(names, [("OK", 1), ("INVALID_ARGUMENT", 2), ("OTHER", 1)]);
        assert_eq!(a.non_ok(), 3);
        assert_eq!(a.unexpected(&[0, 3]), 1);
        assert_eq!(a.latency[3].len(), 2);
        a.reset();
        assert_eq!(a.by_name().count(), 0);
        assert!(a.latency[3].is_empty());
    }
}
