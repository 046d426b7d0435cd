//! Parsing and printing numbers the way wrk users expect: `10s`, `1m`,
//! `1k` connections; `635.91us`, `1.32GB`, `56.20k`.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("invalid duration {0:?}: use a number with a unit, e.g. 500ms, 10s, 2m, 1h")]
    Duration(String),
    #[error("invalid count {0:?}: use a whole number, optionally with k or M (e.g. 400, 1k)")]
    Count(String),
}

/// Parses `500ms`, `10s`, `2m`, `1h`, `1.5s`, or a bare number of seconds
/// (as wrk does).
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = || UnitError::Duration(s.to_string());
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| err())?;
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(err()),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `400`, `1k`, `2M` (metric, as wrk's `-c 1k`).
pub fn parse_count(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Count(s.to_string());
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('M') => (&t[..t.len() - 1], 1_000_000),
        Some('G') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(err)
}

struct Units {
    scale: f64,
    base: &'static str,
    units: &'static [&'static str],
}

const TIME_US: Units = Units {
    scale: 1000.0,
    base: "us",
    units: &["ms", "s"],
};
const TIME_S: Units = Units {
    scale: 60.0,
    base: "s",
    units: &["m", "h"],
};
const BINARY: Units = Units {
    scale: 1024.0,
    base: "",
    units: &["K", "M", "G", "T", "P"],
};
const METRIC: Units = Units {
    scale: 1000.0,
    base: "",
    units: &["k", "M", "G", "T", "P"],
};

/// wrk's `format_units`: scale up while the amount exceeds 0.85 of the
/// next unit, but never to the last unit of the list.
fn format_units(n: f64, m: &Units, precision: usize) -> String {
    let mut amt = n;
    let mut unit = m.base;
    let threshold = m.scale * 0.85;
    let mut i = 0;
    while i + 1 < m.units.len() && amt >= threshold {
        amt /= m.scale;
        unit = m.units[i];
        i += 1;
    }
    format!("{amt:.precision$}{unit}")
}

pub fn format_binary(n: f64) -> String {
    format_units(n, &BINARY, 2)
}

pub fn format_metric(n: f64) -> String {
    format_units(n, &METRIC, 2)
}

/// Microseconds to `12.34us`, `1.20ms`, `2.00s`, `1.50m`.
pub fn format_time_us(n: f64) -> String {
    if n >= 1_000_000.0 {
        format_units(n / 1_000_000.0, &TIME_S, 2)
    } else {
        format_units(n, &TIME_US, 2)
    }
}

/// Seconds to `10s`, `2m` (wrk's test header).
pub fn format_time_s(n: f64) -> String {
    format_units(n, &TIME_S, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "s", "10x", "-1s", "1e400", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("400").unwrap(), 400);
        assert_eq!(parse_count("1k").unwrap(), 1000);
        assert_eq!(parse_count("2M").unwrap(), 2_000_000);
        for bad in ["", "k", "-1", "1.5k", "99999999999999999999"] {
            assert!(parse_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_like_wrk() {
        assert_eq!(format_time_us(635.91), "635.91us");
        assert_eq!(format_time_us(890.0), "0.89ms");
        assert_eq!(format_time_us(12_920.0), "12.92ms");
        assert_eq!(format_time_us(1_500_000.0), "1.50s");
        assert_eq!(format_time_us(90_000_000.0), "1.50m");
        assert_eq!(format_metric(56_200.0), "56.20k");
        assert_eq!(format_metric(12.0), "12.00");
        assert_eq!(format_binary(1.32 * 1024.0 * 1024.0 * 1024.0), "1.32G");
        assert_eq!(format_binary(5.0 * 1024f64.powi(5)), "5120.00T");
        assert_eq!(format_time_s(10.0), "10s");
        assert_eq!(format_time_s(60.0), "1m");
    }
}
