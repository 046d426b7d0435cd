//! `--bind ADDR[,ADDR…]`: source addresses for the connections, each a
//! single address or a range (`127.0.0.2-127.0.0.9`, `fd00::10-fd00::1f`).
//! One source address gives one destination about 28k connections (the
//! ephemeral ports); several give that many each.

use std::net::IpAddr;

/// Addresses one `--bind` may name at most.
pub const MAX_BIND: usize = 65_536;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindError {
    #[error(
        "--bind {0:?} is not an address list: give addresses or ranges, comma-separated, e.g. 127.0.0.2,127.0.0.3 or 10.0.0.2-10.0.0.9"
    )]
    Syntax(String),
    #[error("--bind range {0:?} runs backwards or mixes IPv4 and IPv6")]
    Range(String),
    #[error("--bind names more than {MAX_BIND} addresses")]
    TooMany,
    #[error("--bind {0} is named twice")]
    Duplicate(IpAddr),
}

fn addr(s: &str, whole: &str) -> Result<IpAddr, BindError> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| BindError::Syntax(whole.to_string()))
}

/// The addresses in order, ranges expanded.
pub fn parse_bind(s: &str) -> Result<Vec<IpAddr>, BindError> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(BindError::Syntax(s.to_string()));
        }
        // IPv6 addresses contain no '-', so a '-' is always a range.
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (addr(a, s)?, addr(b, s)?),
            None => {
                let a = addr(item, s)?;
                (a, a)
            }
        };
        let (lo, hi) = match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
            _ => return Err(BindError::Range(item.to_string())),
        };
        if lo > hi {
            return Err(BindError::Range(item.to_string()));
        }
        if hi - lo >= (MAX_BIND - out.len()) as u128 {
            return Err(BindError::TooMany);
        }
        for x in lo..=hi {
            out.push(match a {
                IpAddr::V4(_) => IpAddr::V4((x as u32).into()),
                IpAddr::V6(_) => IpAddr::V6(x.into()),
            });
        }
    }
    let mut sorted = out.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(BindError::Duplicate(w[0]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn lists_and_ranges() {
        assert_eq!(
            parse_bind("127.0.0.2, 127.0.0.3").unwrap(),
            ips(&["127.0.0.2", "127.0.0.3"])
        );
        assert_eq!(
            parse_bind("10.0.0.254-10.0.1.1,::1").unwrap(),
            ips(&["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1", "::1"])
        );
        assert_eq!(
            parse_bind("fd00::e-[fd00::10]").unwrap(),
            ips(&["fd00::e", "fd00::f", "fd00::10"])
        );
        assert_eq!(parse_bind("127.0.0.5-127.0.0.5").unwrap().len(), 1);
    }

    #[test]
    fn bad_lists_are_refused() {
        for bad in ["", "x", "127.0.0.1,", "127.0.0.1:80", "1.2.3.4-"] {
            assert!(
                matches!(parse_bind(bad), Err(BindError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_bind("127.0.0.9-127.0.0.2"),
            Err(BindError::Range(_))
        ));
        assert!(matches!(
            parse_bind("127.0.0.1-::1"),
            Err(BindError::Range(_))
        ));
        assert_eq!(
            parse_bind("10.0.0.0-10.255.255.255"),
            Err(BindError::TooMany)
        );
        assert!(matches!(
            parse_bind("127.0.0.2,127.0.0.1-127.0.0.3"),
            Err(BindError::Duplicate(_))
        ));
    }
}
