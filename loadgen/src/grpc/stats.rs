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
    /// Calls whose HTTP status was not 2xx or 3xx (counted in the run's
    /// HTTP statuses too): a run that mixes calls and plain requests
    /// tells the plain ones' failures apart with it. Not reported.
    pub non_2xx: u64,
}

impl Default for GrpcStats {
    fn default() -> Self {
        GrpcStats {
            status: [0; CODES],
            latency: Box::new(std::array::from_fn(|_| new_latency_histogram())),
            non_2xx: 0,
        }
    }
}

impl GrpcStats {
    /// Counts a call that ended with `code`; `http_ok`: its HTTP status
    /// was 2xx or 3xx.
    #[inline]
    pub fn record(&mut self, code: u8, latency_us: u64, http_ok: bool) {
        let i = (code as usize).min(CODES - 1);
        self.status[i] += 1;
        self.latency[i].saturating_record(latency_us.max(1));
        self.non_2xx += u64::from(!http_ok);
    }

    /// Calls whose status was not OK.
    pub fn non_ok(&self) -> u64 {
        self.status[status::OK as usize + 1..].iter().sum()
    }

    /// Calls by status name, in code order, codes never seen left out.
    pub fn by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        by_name(&self.status)
    }

    /// Calls whose status `expected` rejects.
    pub fn unexpected(&self, expected: &[u8]) -> u64 {
        unexpected(&self.status, expected)
    }

    pub fn merge(&mut self, o: &GrpcStats) {
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        for (a, b) in self.latency.iter_mut().zip(o.latency.iter()) {
            histogram::add(a, b);
        }
        self.non_2xx += o.non_2xx;
    }

    pub fn reset(&mut self) {
        self.status = [0; CODES];
        for h in self.latency.iter_mut() {
            h.reset();
        }
        self.non_2xx = 0;
    }
}

/// Of calls counted by code (`status`), those whose code `expected`
/// does not list.
pub fn unexpected(status: &[u64; CODES], expected: &[u8]) -> u64 {
    (0..CODES as u8)
        .filter(|c| !expected.contains(c))
        .map(|c| status[c as usize])
        .sum()
}

/// Calls counted by code as `(name, n)`, in code order, codes never seen
/// left out.
pub fn by_name(status: &[u64; CODES]) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    (0..CODES as u8)
        .map(|c| (status::name(c), status[c as usize]))
        .filter(|&(_, n)| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_by_name() {
        let mut a = GrpcStats::default();
        let mut b = GrpcStats::default();
        a.record(0, 10, true);
        b.record(3, 20, true);
        b.record(3, 30, true);
        b.record(40, 5, false);
        a.merge(&b);
        let names: Vec<_> = a.by_name().collect();
        assert_eq!(names, [("OK", 1), ("INVALID_ARGUMENT", 2), ("OTHER", 1)]);
        assert_eq!(a.non_ok(), 3);
        assert_eq!(a.unexpected(&[0, 3]), 1);
        assert_eq!(a.latency[3].len(), 2);
        assert_eq!(a.non_2xx, 1);
        a.reset();
        assert_eq!(a.by_name().count(), 0);
        assert!(a.latency[3].is_empty());
    }
}
