//! `--start-at TIME`: unix seconds (`1767225600`, `1767225600.25`) or
//! RFC 3339 (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00.5+01:00`), and
//! the check against this host's clock. Written here rather than pulled in
//! from a date crate: this is the whole of what loadgen needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A start further ahead than this is almost surely a mistake (a date in
/// the wrong year, milliseconds given as seconds).
pub const MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StartAtError {
    #[error(
        "--start-at {0:?} is not a time: give unix seconds (1767225600 or 1767225600.5) or RFC 3339 (2026-01-01T12:00:00Z, 2026-01-01T13:00:00+01:00)"
    )]
    Syntax(String),
    #[error(
        "--start-at {given} was {ago:.3} s ago by this host's clock (now {now}): give a time in the future, and check that the hosts' clocks are synced (chrony, NTP)"
    )]
    Past {
        given: String,
        now: String,
        ago: f64,
    },
    #[error(
        "--start-at {given} is {ahead:.0} s ahead of this host's clock (now {now}), more than 24 h: is the date (or the unit: seconds, not ms) right?"
    )]
    TooFar {
        given: String,
        now: String,
        ahead: f64,
    },
}

/// Parses `--start-at` into a wall-clock time.
pub fn parse_start_at(s: &str) -> Result<SystemTime, StartAtError> {
    let t = s.trim();
    let bad = || StartAtError::Syntax(s.to_string());
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| bad())?;
        // Beyond year 9999 is a typo, and keeps the conversion exact.
        if !(0.0..253_402_300_800.0).contains(&secs) {
            return Err(bad());
        }
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    let nanos = parse_rfc3339(t).ok_or_else(bad)?;
    if nanos < 0 {
        return Err(bad());
    }
    Ok(UNIX_EPOCH + Duration::from_nanos(nanos as u64))
}

/// Refuses a start in the past or more than [`MAX_AHEAD`] away; returns
/// how far ahead it is.
pub fn check_start_at(at: SystemTime, now: SystemTime) -> Result<Duration, StartAtError> {
    let given = format_rfc3339(at);
    let now_text = format_rfc3339(now);
    match at.duration_since(now) {
        Ok(ahead) if ahead > MAX_AHEAD => Err(StartAtError::TooFar {
            given,
            now: now_text,
            ahead: ahead.as_secs_f64(),
        }),
        Ok(ahead) if !ahead.is_zero() => Ok(ahead),
        Ok(_) => Err(StartAtError::Past {
            given,
            now: now_text,
            ago: 0.0,
        }),
        Err(e) => Err(StartAtError::Past {
            given,
            now: now_text,
            ago: e.duration().as_secs_f64(),
        }),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (a space or lowercase `t`/`z`
/// also accepted), as ns since the epoch.
fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut frac_ns: i128 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        // Digits past ns are dropped.
        let digits = &s[start..end.min(start + 9)];
        frac_ns = digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32);
        i = end;
    }
    let offset_s: i64 = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let text = [*h1, *h2, *m1, *m2];
            if !text.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let m = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // A leap second (:60) is taken as the next second, as most clocks do.
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs as i128 * 1_000_000_000 + frac_ns)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `2026-01-01T12:00:00.250Z` (UTC, ms).
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(t: SystemTime) -> f64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
    }

    #[test]
    fn unix_seconds_and_rfc3339_agree() {
        let want = 1_767_225_600.0; // 2026-01-01T00:00:00Z
        for s in [
            "1767225600",
            "1767225600.0",
            "2026-01-01T00:00:00Z",
            "2026-01-01t00:00:00z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T01:30:00+01:30",
            "2025-12-31T19:00:00-05:00",
            "2026-01-01T00:00:00.000000000000Z",
        ] {
            let got = unix(parse_start_at(s).unwrap());
            assert!((got - want).abs() < 1e-6, "{s}: {got}");
        }
        let frac = parse_start_at("2026-01-01T00:00:00.25Z").unwrap();
        assert!((unix(frac) - want - 0.25).abs() < 1e-6);
        assert!((unix(parse_start_at("1767225600.5").unwrap()) - want - 0.5).abs() < 1e-6);
        assert_eq!(
            unix(parse_start_at("2024-02-29T12:00:00Z").unwrap()),
            1_709_208_000.0
        );
        assert_eq!(unix(parse_start_at("1970-01-01T00:00:00Z").unwrap()), 0.0);
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in [
            "",
            "now",
            "+10s",
            "-5",
            "1e9",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-01-32T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+25:00",
            "2026-01-01T00:00:00Zjunk",
            "99999999999999",
        ] {
            let e = parse_start_at(bad).unwrap_err();
            assert!(matches!(e, StartAtError::Syntax(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn the_past_and_the_far_future_are_refused_with_the_skew() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let ahead = check_start_at(now + Duration::from_secs(5), now).unwrap();
        assert_eq!(ahead, Duration::from_secs(5));
        let e = check_start_at(now - Duration::from_millis(2500), now).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("2.500 s ago"), "{text}");
        assert!(text.contains("now 2026-01-01T00:00:00.000Z"), "{text}");
        assert!(matches!(
            check_start_at(now, now),
            Err(StartAtError::Past { .. })
        ));
        let e = check_start_at(now + Duration::from_secs(25 * 3600), now).unwrap_err();
        assert!(matches!(e, StartAtError::TooFar { .. }), "{e}");
    }

    #[test]
    fn formatting_round_trips() {
        for s in [
            "2026-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "1999-12-31T12:34:56.789Z",
        ] {
            assert_eq!(format_rfc3339(parse_start_at(s).unwrap()), s);
        }
    }
}
