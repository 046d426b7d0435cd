//! What `loadgen merge` checks before it adds anything: that the reports
//! are parts of one fleet, each once, and that their numbers are ones a
//! run can write. A report edited by hand or cut from a log may hold any
//! number; every one the merge converts or adds is bounded here, so the
//! merge itself can neither panic nor wrap around.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Input, MergeError};
use crate::fleet::MAX_PARTS;
use crate::report::Report;

/// A time (Unix s) or a span (s) beyond this is no run's: it is
/// 9999-12-31T23:59:59Z. Within it every conversion to `Duration` and
/// `SystemTime`, and the alignment of the seconds, is exact.
pub const MAX_SECONDS: f64 = 253_402_300_799.0;

/// Any count a part reports, at most (2^50, about 10^15): the sum over
/// the most parts a fleet may have still fits a u64.
pub const MAX_COUNT: u64 = 1 << 50;
const _: () = assert!(MAX_COUNT as u128 * MAX_PARTS as u128 <= u64::MAX as u128);

/// The fields of a part's report that the merge adds up, with everything
/// below them.
const SUMMED: [&str; 14] = [
    "shards",
    "connections",
    "requests",
    "bytes_read",
    "bytes_written",
    "status",
    "errors",
    "reconnects",
    "reissued",
    "conn_waits",
    "unexpected",
    "series",
    "by_request",
    "tls",
];

fn out_of_range(inp: &Input, field: String, value: String, range: String) -> MergeError {
    MergeError::OutOfRange {
        report: inp.source.clone(),
        field,
        value,
        range,
    }
}

/// Refuses a number of `inp` that no run writes, naming its field.
fn numbers(inp: &Input) -> Result<(), MergeError> {
    let r = &inp.report;
    if let Some(p) = r.part {
        let fits = (1..=MAX_PARTS).contains(&p.of) && (1..=p.of).contains(&p.index);
        if !fits {
            return Err(out_of_range(
                inp,
                "part".into(),
                format!("{}/{}", p.index, p.of),
                format!("K/N with 1 ≤ K ≤ N ≤ {MAX_PARTS}"),
            ));
        }
    }
    let seconds = |field: String, v: f64| {
        if (0.0..=MAX_SECONDS).contains(&v) {
            Ok(())
        } else {
            Err(out_of_range(
                inp,
                field,
                v.to_string(),
                format!("0 to {MAX_SECONDS} s"),
            ))
        }
    };
    seconds("duration_s".into(), r.duration_s)?;
    if let Some(t) = r.started_at {
        seconds("started_at".into(), t)?;
    }
    for (i, s) in r.series.iter().enumerate() {
        if let Some(t) = s.unix_s {
            seconds(format!("series[{i}].unix_s"), t)?;
        }
    }
    // Serializing plain data into a Value cannot fail.
    let doc = serde_json::to_value(r).unwrap_or(Value::Null);
    for key in SUMMED {
        if let Some(v) = doc.get(key) {
            counts(key.to_string(), v).map_err(|(field, n)| {
                out_of_range(inp, field, n.to_string(), "0 to 2^50".into())
            })?;
        }
    }
    Ok(())
}

/// Every integer below `v` (at `path`) is at most [`MAX_COUNT`].
fn counts(path: String, v: &Value) -> Result<(), (String, u64)> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(n) if n > MAX_COUNT => Err((path, n)),
            _ => Ok(()),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| counts(format!("{path}[{i}]"), x)),
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(k, x)| counts(format!("{path}.{k}"), x)),
        _ => Ok(()),
    }
}

fn opt<T: std::fmt::Debug>(v: &Option<T>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "none".into(),
    }
}

/// What must be the same in every part of one fleet, by name. Not the
/// seed: parts run without `--seed` each draw their own, and the values
/// they send differ with it, not the load.
fn identity(r: &Report) -> Vec<(&'static str, String)> {
    let f = r.fleet.clone().unwrap_or_default();
    vec![
        ("the URL", r.url.clone()),
        ("--scenario", opt(&r.scenario)),
        ("the fleet's size (--part K/N)", opt(&r.part.map(|p| p.of))),
        ("-c (the fleet's connections)", f.connections.to_string()),
        ("-n (the fleet's requests)", opt(&f.requests)),
        ("-R/--stages", opt(&f.schedule)),
        ("-d/--duration", opt(&f.duration_s)),
        ("--warmup", r.warmup_s.to_string()),
        ("--pipeline", r.pipeline.to_string()),
        (
            "the HTTP version (--http2, --http3)",
            r.http_version.clone(),
        ),
        ("--streams", opt(&r.streams().map(|(_, n)| n))),
        ("--timeout", f.timeout_s.to_string()),
        ("--no-keepalive", (!f.keepalive).to_string()),
        (
            "what is sent (requests, headers, bodies, feeds, token claims)",
            f.request_sha256.clone(),
        ),
        ("--expect-status", opt(&r.expect_status)),
        ("--start-at", opt(&f.start_at)),
    ]
}

/// Checks that the reports are parts of one fleet, each once, with
/// numbers a run can write.
pub(super) fn check(inputs: &[Input]) -> Result<(), MergeError> {
    let first = inputs.first().ok_or(MergeError::Empty)?;
    for inp in inputs {
        if !inp.report.parts.is_empty() {
            return Err(MergeError::Merged(inp.source.clone()));
        }
        if inp.report.part.is_none() || inp.report.histograms.is_none() {
            return Err(MergeError::NotAPart(inp.source.clone()));
        }
        numbers(inp)?;
    }
    let want = identity(&first.report);
    for inp in &inputs[1..] {
        for ((field, va), (_, vb)) in want.iter().zip(identity(&inp.report)) {
            if *va != vb {
                return Err(MergeError::Differ {
                    field,
                    a: first.source.clone(),
                    va: va.clone(),
                    b: inp.source.clone(),
                    vb,
                });
            }
        }
    }
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for inp in inputs {
        let part = inp.report.part.unwrap_or_default();
        if let Some(a) = seen.insert(part.index, &inp.source) {
            return Err(MergeError::Overlap {
                a: a.to_string(),
                b: inp.source.clone(),
                part,
            });
        }
    }
    Ok(())
}
