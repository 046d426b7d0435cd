//! Open-loop rate schedules: `-R 1000` or `--stages "10s:1000,30s:1000->5000"`.
//!
//! A schedule is piecewise linear in time. The intended send time of the
//! k-th request is the exact inverse of the cumulative request count, so a
//! shard computes it from k alone: no calibration period, no queue of
//! timestamps, exact from the first request.

use std::time::Duration;

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

    /// Splits the schedule for one of `shards` shards: every rate divided
    /// by `shards`, shifted by `index / shards` of a request so the shards
    /// interleave instead of firing together.
    pub fn for_shard(&self, index: usize, shards: usize) -> ShardSchedule {
        let scale = 1.0 / shards as f64;
        let mut segs = Vec::with_capacity(self.stages.len() + 1);
        let mut t0 = 0.0;
        let mut n0 = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            if d > 0.0 {
                let (r0, r1) = (s.from * scale, s.to * scale);
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
        let last = self.stages.last().map_or(0.0, |s| s.to) * scale;
        segs.push(Segment {
            t0,
            n0,
            r0: last,
            accel: 0.0,
            end_n: f64::INFINITY,
        });
        ShardSchedule {
            segs,
            cursor: 0,
            phase: index as f64 / shards as f64,
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
    phase: f64,
}

impl ShardSchedule {
    /// Intended send time of this shard's request `k` (0-based), in ns
    /// from the schedule's start; `None` if the rate stays at zero.
    pub fn intended_ns(&mut self, k: u64) -> Option<u64> {
        let n = k as f64 + self.phase;
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
        Some(((s.t0 + tau) * 1e9) as u64)
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
}
