//! Open-loop rate schedules: `-R 1000` or `--stages "10s:1000,30s:1000->5000"`.
//!
//! A schedule is piecewise linear in time. The intended send time of the
//! k-th request is the exact inverse of the cumulative request count, so a
//! shard computes it from k alone: no calibration period, no queue of
//! timestamps, exact from the first request.

use std::time::Duration;

use crate::fleet::Stream;
use crate::units::parse_duration;

/// One stage: the rate moves linearly from `from` to `to` (req/s) over
/// `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub from: f64,
    pub to: f64,
}

/// Stages in order; after the last one the last rate holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub stages: Vec<Stage>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "invalid stage {0:?}: write DURATION:RATE or DURATION:FROM->TO, e.g. 10s:1000,30s:1000->5000"
    )]
    Syntax(String),
    #[error("invalid rate {0:?}: use a number of requests per second from 0 to 100000000")]
    Rate(String),
    #[error("--stages needs at least one stage with a non-zero rate")]
    Empty,
    #[error(
        "-R takes one constant rate, got {0:?}; for a ramp use --stages, e.g. --stages 30s:1k->5k"
    )]
    RampInRate(String),
    #[error(
        "-R/--rate must be a positive number of requests per second, e.g. -R 1000 or -R 2.5k; got {0:?}"
    )]
    BadRate(String),
}

fn rate(s: &str) -> Result<f64, ScheduleError> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    num.parse::<f64>()
        .ok()
        .map(|r| r * mult)
        .filter(|r| r.is_finite() && (0.0..=1e8).contains(r))
        .ok_or_else(|| ScheduleError::Rate(s.to_string()))
}

impl Schedule {
    /// A constant rate, forever.
    pub fn constant(rps: f64) -> Schedule {
        Schedule {
            stages: vec![Stage {
                duration: Duration::ZERO,
                from: rps,
                to: rps,
            }],
        }
    }

    /// Parses `-R`: one constant, positive rate (`1000`, `2.5k`).
    pub fn parse_rate(spec: &str) -> Result<Schedule, ScheduleError> {
        if spec.contains("->") || spec.contains(':') || spec.contains(',') {
            return Err(ScheduleError::RampInRate(spec.to_string()));
        }
        match rate(spec) {
            Ok(r) if r > 0.0 => Ok(Schedule::constant(r)),
            _ => Err(ScheduleError::BadRate(spec.to_string())),
        }
    }

    /// Parses `--stages`.
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        let mut stages = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let syntax = || ScheduleError::Syntax(part.to_string());
            let (dur, rates) = part.split_once(':').ok_or_else(syntax)?;
            let duration = parse_duration(dur).map_err(|_| syntax())?;
            let (from, to) = match rates.split_once("->") {
                Some((a, b)) => (rate(a)?, rate(b)?),
                None => {
                    let r = rate(rates)?;
                    (r, r)
                }
            };
            stages.push(Stage { duration, from, to });
        }
        let s = Schedule { stages };
        if s.stages.is_empty() || s.stages.iter().all(|st| st.from == 0.0 && st.to == 0.0) {
            return Err(ScheduleError::Empty);
        }
        Ok(s)
    }

    /// The same schedule preceded by `warmup` at the first stage's initial
    /// rate, so the stages proper start when measurement does.
    pub fn with_warmup(&self, warmup: Duration) -> Schedule {
        if warmup.is_zero() {
            return self.clone();
        }
        let r0 = self.stages.first().map_or(0.0, |s| s.from);
        let mut stages = vec![Stage {
            duration: warmup,
            from: r0,
            to: r0,
        }];
        stages.extend(self.stages.iter().copied());
        Schedule { stages }
    }

    /// The schedule as `--stages` writes it (`10s:1000,30s:1000->5000`),
    /// or a constant rate alone (`1000`): what parts of a fleet compare.
    pub fn spec(&self) -> String {
        self.stages
            .iter()
            .map(|s| {
                let rate = if s.from == s.to {
                    format!("{}", s.from)
                } else {
                    format!("{}->{}", s.from, s.to)
                };
                if s.duration.is_zero() {
                    rate
                } else {
                    format!("{}s:{rate}", s.duration.as_secs_f64())
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How a report's header says it: `1000 req/s`, or `stages …`.
    pub fn describe_spec(spec: &str) -> String {
        if spec.contains(':') {
            format!("stages {spec}")
        } else {
            format!("{spec} req/s")
        }
    }

    /// The same schedule with every rate multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Schedule {
        Schedule {
            stages: self
                .stages
                .iter()
                .map(|s| Stage {
                    from: s.from * factor,
                    to: s.to * factor,
                    ..*s
                })
                .collect(),
        }
    }

    /// Total length of the stages.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The rate at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            if t < start + d {
                return s.from + (s.to - s.from) * (t - start) / d;
            }
            start += d;
        }
        self.stages.last().map_or(0.0, |s| s.to)
    }

    /// Requests due in `[0, t)` seconds.
    pub fn count_until(&self, t: f64) -> f64 {
        let mut start = 0.0;
        let mut n = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let tau = (t - start).clamp(0.0, d);
            n += s.from * tau + (s.to - s.from) / d.max(f64::MIN_POSITIVE) * tau * tau / 2.0;
            if t < start + d {
                return n;
            }
            start += d;
        }
        n + self.stages.last().map_or(0.0, |s| s.to) * (t - start).max(0.0)
    }

    /// Splits the schedule for one of `shards` shards of a process alone:
    /// [`Schedule::for_stream`] with shard `index` of the numbering and no
    /// warm-up.
    pub fn for_shard(&self, index: usize, shards: usize) -> ShardSchedule {
        self.for_stream(
            Stream {
                offset: index as u64,
                stride: shards.max(1) as u64,
            },
            Duration::ZERO,
        )
    }

    /// The schedule of one stream of the fleet's numbering
    /// ([`crate::fleet`]): its j-th request is fleet request
    /// `offset + stride·j`, due when the schedule has counted that many, so
    /// the streams of all shards of all parts interleave into exactly this
    /// schedule. `warmup` comes first, at the first stage's rate; its
    /// requests have negative numbers, so the measured ones keep theirs
    /// whatever warm-up each part had (with `--start-at` it is the time
    /// left until the start, different on every host).
    pub fn for_stream(&self, stream: Stream, warmup: Duration) -> ShardSchedule {
        let mut segs = Vec::with_capacity(self.stages.len() + 1);
        let mut t0 = 0.0;
        let mut n0 = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            if d > 0.0 {
                let (r0, r1) = (s.from, s.to);
                segs.push(Segment {
                    t0,
                    n0,
                    r0,
                    accel: (r1 - r0) / d,
                    end_n: n0 + (r0 + r1) / 2.0 * d,
                });
                n0 += (r0 + r1) / 2.0 * d;
                t0 += d;
            }
        }
        let last = self.stages.last().map_or(0.0, |s| s.to);
        segs.push(Segment {
            t0,
            n0,
            r0: last,
            accel: 0.0,
            end_n: f64::INFINITY,
        });
        let warm_rate = self.stages.first().map_or(0.0, |s| s.from);
        let w = warmup.as_secs_f64();
        let stride = stream.stride.max(1) as f64;
        let offset = stream.offset as f64;
        // The stream's first number at or after the warm-up's start.
        let first = if warm_rate > 0.0 && w > 0.0 {
            offset - stride * ((offset + warm_rate * w) / stride).floor()
        } else {
            offset
        };
        ShardSchedule {
            segs,
            cursor: 0,
            first,
            stride,
            warm_rate,
            warmup_s: w,
        }
    }
}

#[derive(Debug, Clone)]
struct Segment {
    t0: f64,
    n0: f64,
    r0: f64,
    accel: f64,
    end_n: f64,
}

/// One shard's view of the schedule. Queried with increasing `k`.
#[derive(Debug, Clone)]
pub struct ShardSchedule {
    segs: Vec<Segment>,
    cursor: usize,
    /// Fleet number of this shard's request 0 (negative in the warm-up).
    first: f64,
    stride: f64,
    /// The warm-up's rate and length (s).
    warm_rate: f64,
    warmup_s: f64,
}

impl ShardSchedule {
    /// Intended send time of this shard's request `k` (0-based), in ns
    /// from the shard's start (the warm-up's start); `None` if the rate
    /// stays at zero.
    pub fn intended_ns(&mut self, k: u64) -> Option<u64> {
        let n = self.first + self.stride * k as f64;
        if n < 0.0 {
            // A warm-up request: `n` before the measured start at the
            // warm-up's constant rate (only then are numbers negative).
            let t = (self.warmup_s + n / self.warm_rate).max(0.0);
            return Some((t * 1e9) as u64);
        }
        while self.cursor + 1 < self.segs.len() && n >= self.segs[self.cursor].end_n {
            self.cursor += 1;
        }
        let s = &self.segs[self.cursor];
        let m = n - s.n0;
        let tau = if s.accel.abs() < 1e-12 {
            if s.r0 <= 0.0 {
                return None;
            }
            m / s.r0
        } else {
            // n0 + r0·τ + a·τ²/2 = n, solved for τ ≥ 0 in the stable form.
            let disc = (s.r0 * s.r0 + 2.0 * s.accel * m).max(0.0);
            2.0 * m / (s.r0 + disc.sqrt()).max(f64::MIN_POSITIVE)
        };
        Some(((self.warmup_s + s.t0 + tau) * 1e9) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_and_ramps() {
        let s = Schedule::parse("10s:1000, 30s:1000->5000,20s:5k").unwrap();
        assert_eq!(s.stages.len(), 3);
        assert_eq!(
            s.stages[1],
            Stage {
                duration: Duration::from_secs(30),
                from: 1000.0,
                to: 5000.0
            }
        );
        assert_eq!(s.stages[2].to, 5000.0);
        assert_eq!(s.duration(), Duration::from_secs(60));
        for bad in ["", "10s", "x:1", "10s:-1", "10s:1->", "5s:0"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rate_is_one_number() {
        assert_eq!(Schedule::parse_rate("2.5k"), Ok(Schedule::constant(2500.0)));
        // A ramp given to -R once ran at its first rate without a word.
        assert!(matches!(
            Schedule::parse_rate("1k->5k"),
            Err(ScheduleError::RampInRate(_))
        ));
        assert!(matches!(
            Schedule::parse_rate("10s:1k"),
            Err(ScheduleError::RampInRate(_))
        ));
        for bad in ["0", "fast", "-5", ""] {
            assert!(
                matches!(Schedule::parse_rate(bad), Err(ScheduleError::BadRate(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn warmup_shifts_the_stages() {
        let s = Schedule::parse("1s:100->200")
            .unwrap()
            .with_warmup(Duration::from_secs(2));
        assert_eq!(s.rate_at(1.0), 100.0);
        assert!((s.rate_at(2.5) - 150.0).abs() < 1e-9);
        assert!((s.count_until(2.0) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let mut s = Schedule::constant(1000.0).for_shard(0, 1);
        assert_eq!(s.intended_ns(0), Some(0));
        assert_eq!(s.intended_ns(1), Some(1_000_000));
        assert_eq!(s.intended_ns(999), Some(999_000_000));
    }

    #[test]
    fn shards_interleave() {
        let mut a = Schedule::constant(1000.0).for_shard(0, 2);
        let mut b = Schedule::constant(1000.0).for_shard(1, 2);
        assert_eq!(a.intended_ns(1), Some(2_000_000));
        assert_eq!(b.intended_ns(0), Some(1_000_000));
    }

    #[test]
    fn ramp_inverse_matches_the_count() {
        let sched = Schedule::parse("1s:100,2s:100->300,1s:0").unwrap();
        let mut s = sched.for_shard(0, 1);
        // 100 in the first second, 400 over the ramp, then nothing.
        for k in [0u64, 50, 99, 100, 250, 499] {
            let t = s.intended_ns(k).unwrap() as f64 / 1e9;
            let n = sched.count_until(t);
            assert!((n - k as f64).abs() < 1e-6, "k={k} t={t} n={n}");
        }
        assert_eq!(s.intended_ns(500), None);
        assert!((sched.count_until(3.0) - 500.0).abs() < 1e-9);
        assert!((sched.rate_at(2.0) - 200.0).abs() < 1e-9);
    }

    /// The intended times of every shard of every part, put together, are
    /// the fleet's schedule: each fleet request once, at its time, whatever
    /// each part's shard count and warm-up.
    #[test]
    fn the_fleets_streams_union_is_the_schedule() {
        use crate::fleet::Part;
        let sched = Schedule::parse("1s:300,2s:300->900,1s:0").unwrap();
        let mut whole = sched.for_shard(0, 1);
        let want: Vec<u64> = (0..).map_while(|k| whole.intended_ns(k)).collect();
        assert_eq!(want.len(), 300 + 1200);
        let shards_of = [2usize, 3, 1];
        let warmups = [0.0, 0.37, 1.25];
        let mut got = Vec::new();
        for k in 1..=3u32 {
            let part = Part { index: k, of: 3 };
            let shards = shards_of[k as usize - 1];
            let w = Duration::from_secs_f64(warmups[k as usize - 1]);
            for i in 0..shards {
                let mut s = sched.for_stream(part.stream(i, shards), w);
                let w_ns = w.as_nanos() as u64;
                let mut prev = 0;
                for j in 0.. {
                    let Some(t) = s.intended_ns(j) else { break };
                    assert!(t >= prev, "times never go back");
                    prev = t;
                    // Warm-up requests come before the measured start.
                    if t >= w_ns {
                        got.push(t - w_ns);
                    }
                }
            }
        }
        got.sort_unstable();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!(a.abs_diff(*b) <= 1, "{a} vs {b}");
        }
    }

    #[test]
    fn a_warmup_runs_at_the_first_rate_before_the_measured_start() {
        let sched = Schedule::constant(1000.0);
        let part = crate::fleet::Part { index: 2, of: 4 };
        let mut s = sched.for_stream(part.stream(0, 1), Duration::from_millis(10));
        let times: Vec<u64> = (0..6).map(|k| s.intended_ns(k).unwrap()).collect();
        // Part 2 of 4 takes fleet numbers 1, 5, 9, …, 4 ms apart here.
        // Number 1 is due 1 ms after the measured start (at 10 ms); the
        // warm-up's -3 and -7 come 4 and 8 ms before it.
        let want = [3, 7, 11, 15, 19, 23].map(|ms: u64| ms * 1_000_000);
        for (t, w) in times.iter().zip(want) {
            assert!(t.abs_diff(w) <= 1, "{times:?}");
        }
    }
}
