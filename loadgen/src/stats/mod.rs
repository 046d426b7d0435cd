//! Per-shard measurements, merged once at the end of a run.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::histogram::{self, new_latency_histogram, new_rate_histogram, quantile};
use crate::sys::uring::RingMode;

mod errors;

#[cfg(test)]
pub(crate) use errors::one_of_each;
pub use errors::{ErrorKind, Errors, Group};

/// Status codes are three digits; this indexes them directly.
pub const STATUS_CODES: usize = 1000;

/// One named request of a scenario (`--scenario`): its own counts,
/// latencies and errors, alongside the totals.
#[derive(Debug, Clone)]
pub struct RequestStats {
    pub responses: u64,
    pub latency: Histogram<u64>,
    pub status: Box<[u64; STATUS_CODES]>,
    /// Request-level failures of this request (connect errors belong to
    /// no request).
    pub errors: Errors,
    /// A gRPC call's answers by gRPC status code (as
    /// [`crate::grpc::GrpcStats::status`]); zeros for an HTTP request.
    pub grpc: [u64; crate::grpc::status::CODES],
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            responses: 0,
            latency: new_latency_histogram(),
            status: Box::new([0; STATUS_CODES]),
            errors: Errors::default(),
            grpc: [0; crate::grpc::status::CODES],
        }
    }
}

impl RequestStats {
    fn merge(&mut self, o: &RequestStats) {
        histogram::add(&mut self.latency, &o.latency);
        self.responses += o.responses;
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        self.errors.merge(&o.errors);
        for (a, b) in self.grpc.iter_mut().zip(o.grpc) {
            *a += b;
        }
    }

    fn reset(&mut self) {
        self.latency.reset();
        self.responses = 0;
        self.status.fill(0);
        self.errors = Errors::default();
        self.grpc.fill(0);
    }
}

/// Whether a response with `code` succeeded: 2xx or 3xx. Everything
/// else, 1xx and codes past 599 included, counts as "Non-2xx or 3xx"
/// (wrk's name) in every report and threshold.
pub fn is_2xx_or_3xx(code: u16) -> bool {
    (200..400).contains(&code)
}

/// Responses whose status is not 2xx or 3xx (wrk's "Non-2xx or 3xx").
pub fn non_2xx_3xx(status: &[u64; STATUS_CODES]) -> u64 {
    unexpected(status, is_2xx_or_3xx)
}

/// Responses with status in `class*100 .. class*100+99`.
pub fn status_class(status: &[u64; STATUS_CODES], class: usize) -> u64 {
    status[class * 100..(class + 1) * 100].iter().sum()
}

/// Responses in `status` whose code `expected` rejects.
pub fn unexpected(status: &[u64; STATUS_CODES], expected: impl Fn(u16) -> bool) -> u64 {
    status
        .iter()
        .enumerate()
        .filter(|&(code, _)| !expected(code as u16))
        .map(|(_, n)| n)
        .sum()
}

/// One second of one shard (or, after [`merge_series`], of the run).
#[derive(Debug, Clone)]
pub struct SecondSample {
    pub responses: u64,
    pub errors: u64,
    /// Responses in the second whose status was not 2xx or 3xx.
    pub non_2xx: u64,
    /// This shard's p99 latency in the second, µs (for the live line).
    pub p99_us: u64,
    /// Latency histogram of the second, V2-deflate encoded: a few hundred
    /// bytes instead of the 180 KiB of a live histogram.
    pub encoded: Vec<u8>,
}

/// What one shard measured. Everything but the per-second series is
/// preallocated when the shard starts, so recording never allocates; the
/// series grows once per second.
#[derive(Debug, Clone)]
pub struct ShardStats {
    /// Response latency, µs. In open loop (`-R`) it is measured from the
    /// intended send time (corrected for coordinated omission).
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the actual send time (service time).
    pub service: Histogram<u64>,
    /// Open loop only: how late the generator sent requests that had a
    /// free connection (actual − intended send time), µs.
    pub lag: Histogram<u64>,
    /// Open loop only: requests that found no free connection when due
    /// and waited for one (their wait is in `latency`).
    pub conn_waits: u64,
    /// Connection set-up, µs: TCP connect, and the TLS handshake with it.
    pub connect: Histogram<u64>,
    /// From a request's own send to the first byte of its response, µs.
    pub ttfb: Histogram<u64>,
    /// `latency` by status class: 1xx (final 1xx are rare) … 5xx.
    pub by_class: [Histogram<u64>; 5],
    /// The shard thread's CPU time over the measured window (the engine
    /// measures it): how busy the generator itself was.
    pub cpu: Duration,
    /// …and its time runnable but waiting for a CPU (another process had
    /// it): a generator starved of CPU is as much the limit as a busy one.
    pub runq: Duration,
    /// The current second's latencies.
    pub interval: Histogram<u64>,
    interval_responses: u64,
    interval_errors: u64,
    /// Non-2xx/3xx responses counted when the last second closed: the
    /// next second's count is the difference, so the per-request path
    /// does not count them twice.
    non_2xx_at_roll: u64,
    pub seconds: Vec<SecondSample>,
    /// Requests per second of this shard, sampled every 100 ms (wrk's
    /// "Req/Sec" thread statistic).
    pub rate: Histogram<u64>,
    pub responses: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Responses by status code.
    pub status: Box<[u64; STATUS_CODES]>,
    pub errors: Errors,
    /// Connections opened after the first one of each slot.
    pub reconnects: u64,
    /// Pipelined requests sent again because their connection closed
    /// before they were answered.
    pub reissued: u64,
    /// `-n` ended short: the target, reached before, refused every
    /// connection for a whole `--timeout` (not in the reports' numbers:
    /// the exit status says it).
    pub lost_target: bool,
    /// Measured time of this shard.
    pub elapsed: Duration,
    /// Per request name, indexed like the scenario's requests; empty
    /// unless the run reports by name.
    pub by_request: Vec<RequestStats>,
    /// `https://` runs only.
    pub tls: Option<Box<crate::tls::TlsStats>>,
    /// `--http2` runs only.
    pub h2: Option<Box<crate::http::h2::H2Stats>>,
    /// `--http3` runs only.
    pub quic: Option<Box<crate::http::h3::QuicStats>>,
    /// `--grpc` runs only: calls by gRPC status.
    pub grpc: Option<Box<crate::grpc::GrpcStats>>,
    /// Wall-clock time at which the measurement started (the engine notes
    /// it when the core's warm-up ends); merged: the earliest.
    pub started_at: Option<std::time::SystemTime>,
}

impl Default for ShardStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardStats {
    pub fn new() -> Self {
        ShardStats {
            latency: new_latency_histogram(),
            service: new_latency_histogram(),
            lag: new_latency_histogram(),
            conn_waits: 0,
            connect: new_latency_histogram(),
            ttfb: new_latency_histogram(),
            by_class: std::array::from_fn(|_| new_latency_histogram()),
            cpu: Duration::ZERO,
            runq: Duration::ZERO,
            interval: new_latency_histogram(),
            interval_responses: 0,
            interval_errors: 0,
            non_2xx_at_roll: 0,
            seconds: Vec::new(),
            rate: new_rate_histogram(),
            responses: 0,
            bytes_read: 0,
            bytes_written: 0,
            status: Box::new([0; STATUS_CODES]),
            errors: Errors::default(),
            reconnects: 0,
            reissued: 0,
            lost_target: false,
            elapsed: Duration::ZERO,
            by_request: Vec::new(),
            tls: None,
            h2: None,
            quic: None,
            grpc: None,
            started_at: None,
        }
    }

    /// Stats that also keep `named` requests apart.
    pub fn with_requests(named: usize) -> Self {
        let mut s = Self::new();
        s.by_request = (0..named).map(|_| RequestStats::default()).collect();
        s
    }

    /// Records a response to scenario request `which`.
    #[inline]
    pub fn record_request(&mut self, which: u16, status: u16, latency_us: u64) {
        self.record_response(status, latency_us);
        if let Some(r) = self.by_request.get_mut(which as usize) {
            r.responses += 1;
            r.latency.saturating_record(latency_us.max(1));
            if let Some(slot) = r.status.get_mut(status as usize) {
                *slot += 1;
            }
        }
    }

    /// Records the response to a request sent at `sent` (ns) and meant
    /// for `intended`, completed at `now`. In open loop the latency runs
    /// from the intended time (corrected) and the service time is kept
    /// apart; in closed loop they are the same. A gRPC call's status
    /// (`grpc`) is counted with the same latency, in total and for its
    /// request.
    #[inline]
    pub fn record_completion(
        &mut self,
        open_loop: bool,
        now: u64,
        (status, grpc): (u16, Option<u8>),
        (sent, intended, which): (u64, u64, u16),
    ) {
        let service_us = now.saturating_sub(sent) / 1000;
        let latency_us = if open_loop {
            self.service.saturating_record(service_us.max(1));
            now.saturating_sub(intended) / 1000
        } else {
            service_us
        };
        self.record_request(which, status, latency_us);
        if let (Some(code), Some(g)) = (grpc, self.grpc.as_mut()) {
            g.record(code, latency_us, is_2xx_or_3xx(status));
            if let Some(r) = self.by_request.get_mut(which as usize) {
                r.grpc[(code as usize).min(crate::grpc::status::CODES - 1)] += 1;
            }
        }
    }

    /// Counts a failure of scenario request `which` (the caller counts the
    /// total).
    #[inline]
    pub fn request_failed(&mut self, which: u16, kind: ErrorKind) {
        if let Some(r) = self.by_request.get_mut(which as usize) {
            r.errors.add(kind);
        }
    }

    #[inline]
    pub fn record_response(&mut self, status: u16, latency_us: u64) {
        self.responses += 1;
        self.interval_responses += 1;
        let us = latency_us.max(1);
        self.latency.saturating_record(us);
        if let Some(h) = self
            .by_class
            .get_mut((status as usize / 100).wrapping_sub(1))
        {
            h.saturating_record(us);
        }
        self.interval.saturating_record(us);
        if let Some(slot) = self.status.get_mut(status as usize) {
            *slot += 1;
        }
    }

    /// Counts a request-level error in the current second (the kind is
    /// counted in `errors` by the caller).
    #[inline]
    pub fn note_error(&mut self) {
        self.interval_errors += 1;
    }

    /// Closes the current second of the series.
    pub fn roll_second(&mut self) {
        let encoded = histogram::encode(&self.interval);
        let p99_us = quantile(&self.interval, 0.99);
        let non_2xx = self.unsuccessful();
        self.seconds.push(SecondSample {
            responses: std::mem::take(&mut self.interval_responses),
            errors: std::mem::take(&mut self.interval_errors),
            non_2xx: non_2xx - std::mem::replace(&mut self.non_2xx_at_roll, non_2xx),
            p99_us,
            encoded,
        });
        self.interval.reset();
    }

    /// Forgets everything measured so far (end of warm-up). Keeps the
    /// allocations.
    pub fn reset_measurements(&mut self) {
        for h in [
            &mut self.latency,
            &mut self.service,
            &mut self.lag,
            &mut self.connect,
            &mut self.ttfb,
            &mut self.interval,
            &mut self.rate,
        ] {
            h.reset();
        }
        for h in &mut self.by_class {
            h.reset();
        }
        self.conn_waits = 0;
        self.interval_responses = 0;
        self.interval_errors = 0;
        self.non_2xx_at_roll = 0;
        self.seconds.clear();
        self.responses = 0;
        self.bytes_read = 0;
        self.bytes_written = 0;
        self.status.fill(0);
        self.errors = Errors::default();
        self.reconnects = 0;
        self.reissued = 0;
        for r in &mut self.by_request {
            r.reset();
        }
        if let Some(h) = &mut self.h2 {
            h.reset();
        }
        if let Some(q) = &mut self.quic {
            q.reset();
        }
        if let Some(g) = &mut self.grpc {
            g.reset();
        }
        if let Some(t) = &mut self.tls {
            t.reset();
        }
    }

    /// Folds another shard's stats into this one.
    pub fn merge(&mut self, o: &ShardStats) {
        // `o` may come from a report (`loadgen merge`), with wider bounds.
        histogram::add(&mut self.latency, &o.latency);
        histogram::add(&mut self.service, &o.service);
        histogram::add(&mut self.lag, &o.lag);
        histogram::add(&mut self.connect, &o.connect);
        histogram::add(&mut self.ttfb, &o.ttfb);
        for (a, b) in self.by_class.iter_mut().zip(&o.by_class) {
            histogram::add(a, b);
        }
        self.cpu += o.cpu;
        self.runq += o.runq;
        histogram::add(&mut self.rate, &o.rate);
        self.conn_waits += o.conn_waits;
        self.responses += o.responses;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        self.errors.merge(&o.errors);
        self.reconnects += o.reconnects;
        self.reissued += o.reissued;
        self.lost_target |= o.lost_target;
        self.elapsed = self.elapsed.max(o.elapsed);
        if self.by_request.len() < o.by_request.len() {
            self.by_request
                .resize_with(o.by_request.len(), RequestStats::default);
        }
        for (a, b) in self.by_request.iter_mut().zip(&o.by_request) {
            a.merge(b);
        }
        if let Some(b) = &o.h2 {
            self.h2.get_or_insert_with(Default::default).merge(b);
        }
        if let Some(b) = &o.quic {
            self.quic.get_or_insert_with(Default::default).merge(b);
        }
        if let Some(b) = &o.grpc {
            self.grpc.get_or_insert_with(Default::default).merge(b);
        }
        if let Some(b) = &o.tls {
            self.tls.get_or_insert_with(Default::default).merge(b);
        }
        self.started_at = match (self.started_at, o.started_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Responses whose status is not 2xx or 3xx (wrk's "Non-2xx or 3xx").
    pub fn non_2xx_3xx(&self) -> u64 {
        non_2xx_3xx(&self.status)
    }

    /// Responses with status in `class*100 .. class*100+99`.
    pub fn status_class(&self, class: usize) -> u64 {
        status_class(&self.status, class)
    }

    /// Responses that were not a success: non-OK gRPC calls (whatever
    /// their HTTP status: a gRPC status follows from it), and the other
    /// responses not 2xx or 3xx. The per-second series counts these.
    pub fn unsuccessful(&self) -> u64 {
        match &self.grpc {
            Some(g) => g.non_ok() + self.non_2xx_3xx().saturating_sub(g.non_2xx),
            None => self.non_2xx_3xx(),
        }
    }
}

/// What a run measured: every shard's stats and their merge.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// All shards merged.
    pub total: ShardStats,
    pub shards: Vec<ShardStats>,
    /// The weakest io_uring mode any shard got (`None`: an engine that
    /// builds no ring of ours).
    pub ring_mode: Option<RingMode>,
    /// Wall-clock time at which measurement started (after warm-up): the
    /// earliest shard's.
    pub started_at: std::time::SystemTime,
}

impl RunOutput {
    /// Merges the shards of one run. `planned` is the start for a run no
    /// shard of which started measuring.
    pub fn new(
        shards: Vec<ShardStats>,
        ring_mode: Option<RingMode>,
        planned: std::time::SystemTime,
    ) -> RunOutput {
        let mut total = ShardStats::new();
        for s in &shards {
            total.merge(s);
        }
        RunOutput {
            started_at: total.started_at.unwrap_or(planned),
            total,
            shards,
            ring_mode,
        }
    }

    /// Several runs of the same config as one: totals merged, measured time
    /// summed. `None` for no runs.
    pub fn combine(runs: &[RunOutput]) -> Option<RunOutput> {
        let (first, rest) = runs.split_first()?;
        let mut all = first.clone();
        for o in rest {
            all.total.merge(&o.total);
            all.shards.extend(o.shards.iter().cloned());
            all.ring_mode = match (all.ring_mode, o.ring_mode) {
                (Some(a), Some(b)) => Some(a.weakest(b)),
                (a, b) => a.or(b),
            };
        }
        all.total.elapsed = runs.iter().map(|o| o.total.elapsed).sum();
        Some(all)
    }
}

/// One second of the whole run, merged over shards.
#[derive(Debug, Clone)]
pub struct Second {
    pub responses: u64,
    pub errors: u64,
    pub non_2xx: u64,
    pub latency: Histogram<u64>,
}

/// Merges the shards' per-second series, second by second.
pub fn merge_series(shards: &[ShardStats]) -> Vec<Second> {
    let len = shards.iter().map(|s| s.seconds.len()).max().unwrap_or(0);
    (0..len)
        .map(|i| {
            let mut second = Second {
                responses: 0,
                errors: 0,
                non_2xx: 0,
                latency: new_latency_histogram(),
            };
            for s in shards.iter().filter_map(|s| s.seconds.get(i)) {
                second.responses += s.responses;
                second.errors += s.errors;
                second.non_2xx += s.non_2xx;
                // Encoded by `roll_second` from a valid histogram.
                if let Some(h) = histogram::decode(&s.encoded) {
                    histogram::add(&mut second.latency, &h);
                }
            }
            second
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = ShardStats::new();
        let mut b = ShardStats::new();
        a.record_response(200, 100);
        b.record_response(404, 300);
        b.record_response(200, 200);
        b.errors.timeout = 2;
        b.bytes_read = 10;
        b.elapsed = Duration::from_secs(2);
        a.merge(&b);
        assert_eq!(a.responses, 3);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.status[200], 2);
        assert_eq!(a.non_2xx_3xx(), 1);
        assert_eq!(a.status_class(4), 1);
        assert_eq!(a.errors.timeout, 2);
        assert_eq!(a.bytes_read, 10);
        assert_eq!(a.elapsed, Duration::from_secs(2));
    }

    #[test]
    fn series_merges_second_by_second() {
        let mut a = ShardStats::new();
        let mut b = ShardStats::new();
        a.record_response(200, 10);
        a.roll_second();
        a.record_response(200, 1000);
        a.note_error();
        a.roll_second();
        b.record_response(200, 20);
        b.record_response(503, 20);
        b.roll_second();
        b.record_response(404, 20);
        b.record_response(200, 20);
        b.roll_second();
        let series = merge_series(&[a, b]);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].responses, 3);
        assert_eq!(series[0].latency.len(), 3);
        assert_eq!((series[0].non_2xx, series[1].non_2xx), (1, 1));
        assert_eq!(series[0].latency.max(), 20);
        assert_eq!((series[1].responses, series[1].errors), (3, 1));
        assert!(series[1].latency.equivalent(series[1].latency.max(), 1000));
    }

    #[test]
    fn combine_sums_time_and_needs_a_run() {
        assert!(RunOutput::combine(&[]).is_none());
        let mut s = ShardStats::new();
        s.record_response(200, 5);
        s.elapsed = Duration::from_secs(2);
        let one = RunOutput::new(vec![s], None, std::time::SystemTime::UNIX_EPOCH);
        let all = RunOutput::combine(&[one.clone(), one]).unwrap();
        assert_eq!(all.total.responses, 2);
        assert_eq!(all.total.elapsed, Duration::from_secs(4));
        assert_eq!(all.shards.len(), 2);
    }
}
