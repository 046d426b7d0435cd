//! Turning merged stats into what people read: wrk's text summary, a JSON
//! document whose field names are a public interface (see README), and
//! HdrHistogram's file formats.

mod build;
mod hdr;
pub mod html;
pub mod merge;
mod read;
mod schema;
mod text;

pub use build::join_target;
pub use hdr::{write_interval_log, write_percentiles};
pub use read::{ReadError, reports_in};
pub use schema::{
    Baseline, ClientCpu, ComparisonRow, Distribution, Fleet, GrpcReport, Histograms, Latency,
    MetricUnit, Mode, PartRow, QuicReport, Report, RequestGrpc, RequestReport, RunEntry,
    SampleKind, Second as SecondReport, Status, Test, ThresholdOutcome, ThresholdUnit, TlsReport,
    Verdict,
};
pub use text::{SummaryView, header, render as render_summary, summary};

use crate::config::Config;
use crate::stats::RunOutput;
use crate::stats::{Second, merge_series};

/// Everything a report needs about one finished run.
pub struct RunReport<'a> {
    pub cfg: &'a Config,
    pub out: &'a RunOutput,
    /// Engine name as shown to users.
    pub engine: &'static str,
    /// The run was cut short by Ctrl-C.
    pub interrupted: bool,
    /// Per-second series, merged over shards (runs one after another).
    pub series: Vec<Second>,
    /// Length of each second of the series (the last of a run may be
    /// partial), s.
    pub second_lens: Vec<f64>,
    /// Wall-clock start of each second of the series, Unix s.
    pub second_starts: Vec<f64>,
}

impl<'a> RunReport<'a> {
    pub fn new(
        cfg: &'a Config,
        out: &'a RunOutput,
        engine: &'static str,
        interrupted: bool,
    ) -> Self {
        let series = merge_series(&out.shards);
        let elapsed = out.total.elapsed.as_secs_f64();
        let second_lens = (0..series.len())
            .map(|i| (elapsed - i as f64).clamp(0.0, 1.0))
            .collect();
        let start = out
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let second_starts = (0..series.len()).map(|i| start + i as f64).collect();
        RunReport {
            cfg,
            out,
            engine,
            interrupted,
            series,
            second_lens,
            second_starts,
        }
    }

    /// The report of several runs in a row: `out` holds their merged totals,
    /// and the series is each run's own seconds, one run after another.
    pub fn from_runs(
        cfg: &'a Config,
        out: &'a RunOutput,
        engine: &'static str,
        interrupted: bool,
        runs: &[RunReport<'_>],
    ) -> Self {
        RunReport {
            cfg,
            out,
            engine,
            interrupted,
            series: runs.iter().flat_map(|r| r.series.iter().cloned()).collect(),
            second_lens: runs
                .iter()
                .flat_map(|r| r.second_lens.iter().copied())
                .collect(),
            second_starts: runs
                .iter()
                .flat_map(|r| r.second_starts.iter().copied())
                .collect(),
        }
    }

    /// Responses outside `--expect-status`, if it was given: calls with
    /// other gRPC statuses, and other responses with other HTTP statuses.
    pub fn unexpected(&self) -> Option<u64> {
        let cfg = self.cfg;
        if !cfg.expects_status() {
            return None;
        }
        let t = &self.out.total;
        if cfg.grpc.is_some() && !t.by_request.is_empty() {
            // A scenario with calls: each request by its own kind of status.
            let per_request = cfg.scenario.requests.iter().zip(&t.by_request);
            return Some(
                per_request
                    .map(|(q, st)| self.request_unexpected(q, st))
                    .sum(),
            );
        }
        if let Some(g) = &cfg.grpc {
            return Some(t.grpc.as_deref().map_or(0, |c| c.unexpected(&g.expect)));
        }
        Some(crate::stats::unexpected(&t.status, |c| cfg.expected(c)))
    }

    /// Of scenario request `q`'s answers (`st`), those outside
    /// `--expect-status`: by gRPC status for a call, by HTTP status for
    /// the rest. A kind the list does not name is not checked.
    pub fn request_unexpected(
        &self,
        q: &crate::scenario::Request,
        st: &crate::stats::RequestStats,
    ) -> u64 {
        match (&q.call, &self.cfg.grpc) {
            (Some(_), Some(g)) if !g.expect.is_empty() => {
                crate::grpc::stats::unexpected(&st.grpc, &g.expect)
            }
            (Some(_), _) => 0,
            (None, _) => crate::stats::unexpected(&st.status, |c| self.cfg.expected(c)),
        }
    }

    /// `--expect-status` as given, compressed back to ranges: `200-299,304`
    /// (gRPC statuses by name, first).
    pub fn expected_text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(g) = self.cfg.grpc.as_ref().filter(|g| !g.expect.is_empty()) {
            parts.push(g.expected_text());
        }
        let codes = &self.cfg.expect_status;
        let mut i = 0;
        while i < codes.len() {
            let mut j = i;
            while j + 1 < codes.len() && codes[j + 1] == codes[j] + 1 {
                j += 1;
            }
            parts.push(if i == j {
                codes[i].to_string()
            } else {
                format!("{}-{}", codes[i], codes[j])
            });
            i = j + 1;
        }
        parts.join(",")
    }

    pub fn elapsed_s(&self) -> f64 {
        self.out.total.elapsed.as_secs_f64()
    }

    /// Completed responses per second over the measured time.
    pub fn rps(&self) -> f64 {
        per_second(self.out.total.responses as f64, self.elapsed_s())
    }

    pub fn transfer_per_s(&self) -> f64 {
        per_second(self.out.total.bytes_read as f64, self.elapsed_s())
    }

    /// Open loop: the rate the schedule asked of this process over the
    /// measured time (a part's share of the fleet's: 1/N of it).
    pub fn target_rps(&self) -> Option<f64> {
        let s = self.cfg.schedule.as_ref()?;
        Some(per_second(
            s.count_until(self.elapsed_s()) / self.cfg.part.of as f64,
            self.elapsed_s(),
        ))
    }

    /// Open loop: requests the schedule asked of this process in second
    /// `i`.
    pub fn target_in_second(&self, i: usize) -> Option<f64> {
        let s = self.cfg.schedule.as_ref()?;
        let end = ((i + 1) as f64).min(self.elapsed_s());
        Some((s.count_until(end) - s.count_until(i as f64)) / self.cfg.part.of as f64)
    }

    /// Length of second `i` of the series (the last may be partial).
    pub fn second_len(&self, i: usize) -> f64 {
        self.second_lens.get(i).copied().unwrap_or(0.0)
    }

    /// Each shard's time running or waiting to run, over its measured time
    /// (1.0: it never waited for the server).
    pub fn shard_busy(&self) -> Vec<f64> {
        self.per_shard(|s| s.cpu + s.runq)
    }

    /// Each shard's CPU time over its measured time.
    pub fn shard_cpu(&self) -> Vec<f64> {
        self.per_shard(|s| s.cpu)
    }

    fn per_shard(&self, f: impl Fn(&crate::stats::ShardStats) -> std::time::Duration) -> Vec<f64> {
        self.out
            .shards
            .iter()
            .map(|s| per_second(f(s).as_secs_f64(), s.elapsed.as_secs_f64()))
            .collect()
    }

    /// Self-checks: was the generator itself the limit, and in open loop,
    /// did we deliver the schedule, and if not, whose fault was it?
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let busy = self.shard_busy();
        let hot: Vec<String> = busy
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b > BUSY_LIMIT)
            .map(|(i, b)| format!("shard {i} {:.0}%", 100.0 * b))
            .collect();
        if !hot.is_empty() && self.elapsed_s() >= 0.5 {
            w.push(format!(
                "WARNING: the generator may be the limit: busy {} of the measured time; add shards (-t) or CPUs, use fewer connections per shard, or --pipeline",
                hot.join(", ")
            ));
        }
        let Some(target) = self.target_rps() else {
            return w;
        };
        let t = &self.out.total;
        let achieved = self.rps();
        let lag_p99 = crate::histogram::quantile(&t.lag, 0.99);
        let generator_behind = lag_p99 > 1000;
        if target > 0.0 && achieved < 0.99 * target && !self.interrupted {
            let why = if generator_behind {
                "the generator fell behind its schedule: add shards (-t) or CPUs"
            } else if t.conn_waits > 0 {
                "requests waited for a free connection: the server is slower than the \
                 schedule (the corrected latency shows the cost); more connections (-c) or \
                 --pipeline let more requests queue at the server"
            } else {
                "responses were still in flight when the run ended, or requests failed"
            };
            w.push(format!(
                "WARNING: achieved {achieved:.2} req/s is {:.1}% of the target {target:.2} req/s: {why}",
                100.0 * achieved / target
            ));
        }
        if generator_behind {
            w.push(format!(
                "WARNING: schedule lag p99 is {}: loadgen, not the server, was late sending; \
                 add shards (-t), CPUs, or lower -R",
                crate::units::format_time_us(lag_p99 as f64)
            ));
        }
        w
    }
}

/// A shard busier than this (CPU time over wall time) may be what limits
/// the run.
pub const BUSY_LIMIT: f64 = 0.9;

pub(crate) fn per_second(n: f64, secs: f64) -> f64 {
    if secs > 0.0 { n / secs } else { 0.0 }
}

#[cfg(test)]
mod tests;
