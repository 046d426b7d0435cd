//! gRPC status codes: their names, what a response without `grpc-status`
//! means, and `--expect-status` given as names.

/// The codes gRPC defines (0 `OK` … 16 `UNAUTHENTICATED`), then one slot
/// for any other code a server sends.
pub const CODES: usize = NAMES.len() + 1;

/// The name of each code, by code (grpc/doc/statuscodes.md).
pub const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

pub const OK: u8 = 0;
pub const UNKNOWN: u8 = 2;
pub const NOT_FOUND: u8 = 5;
pub const UNIMPLEMENTED: u8 = 12;
pub const INTERNAL: u8 = 13;
/// The slot of codes past 16.
pub const OTHER: u8 = NAMES.len() as u8;

/// The name of `code` (`OTHER` for codes gRPC does not define).
pub fn name(code: u8) -> &'static str {
    NAMES.get(code as usize).copied().unwrap_or("OTHER")
}

/// The code named `s` (`NOT_FOUND`, any case), or given as its number.
pub fn by_name(s: &str) -> Option<u8> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u8>() {
        return (n < OTHER).then_some(n);
    }
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .map(|i| i as u8)
}

/// `--expect-status` for a gRPC run: names (or numbers) separated by
/// commas, e.g. `OK,NOT_FOUND`. Sorted, without repeats.
pub fn parse_list(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for p in s.split(',') {
        out.push(by_name(p).ok_or_else(|| {
            format!(
                "{:?} is not a gRPC status: use names such as OK,NOT_FOUND (one of {})",
                p.trim(),
                NAMES.join(", ")
            )
        })?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A `grpc-status` value: its decimal code, `OTHER` past 16; `None` when
/// it is not a number.
pub fn parse(value: &[u8]) -> Option<u8> {
    if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value.iter().fold(0u32, |n, &d| n * 10 + (d - b'0') as u32);
    Some(n.min(OTHER as u32) as u8)
}

/// The status of a call whose response ended with HTTP status `http` and
/// `grpc-status` `sent` (`None`: absent or not a number). A 200 without
/// one is INTERNAL (the server broke the protocol, as grpc-go says); any
/// other HTTP status maps as in grpc/doc/http-grpc-status-mapping.md,
/// whatever `grpc-status` a proxy added.
pub fn of_response(http: u16, sent: Option<u8>) -> u8 {
    match (http, sent) {
        (200, Some(code)) => code,
        (200, None) => INTERNAL,
        (400, _) => INTERNAL,
        (401, _) => 16,
        (403, _) => 7,
        (404, _) => 12,
        (429 | 502 | 503 | 504, _) => 14,
        _ => UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(by_name(n), Some(i as u8));
            assert_eq!(name(i as u8), *n);
        }
        assert_eq!(by_name("not_found"), Some(5));
        assert_eq!(by_name("3"), Some(3));
        assert_eq!(by_name("17"), None);
        assert_eq!(by_name("NOPE"), None);
        assert_eq!(name(OTHER), "OTHER");
    }

    #[test]
    fn lists_parse_and_name_the_bad_part() {
        assert_eq!(parse_list("OK, not_found,0").unwrap(), vec![0, 5]);
        let e = parse_list("OK,200").unwrap_err();
        assert!(e.starts_with("\"200\" is not a gRPC status"), "{e}");
    }

    #[test]
    fn status_values() {
        assert_eq!(parse(b"0"), Some(0));
        assert_eq!(parse(b"16"), Some(16));
        assert_eq!(parse(b"17"), Some(OTHER));
        assert_eq!(parse(b"999"), Some(OTHER));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"1x"), None);
        assert_eq!(parse(b"0000"), None);
    }

    #[test]
    fn http_statuses_map_as_grpc_says() {
        assert_eq!(of_response(200, Some(3)), 3);
        assert_eq!(of_response(200, None), INTERNAL);
        assert_eq!(of_response(503, Some(0)), 14);
        assert_eq!(of_response(404, None), 12);
        assert_eq!(of_response(401, None), 16);
        assert_eq!(of_response(500, None), UNKNOWN);
    }
}
