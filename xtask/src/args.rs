//! What every subcommand shares: its `--flag value` command line, and the
//! median its rounds are summarized by.

use std::str::FromStr;

use anyhow::{Context, anyhow};

/// A subcommand's arguments, read flag by flag.
pub struct Args<'a> {
    it: std::slice::Iter<'a, String>,
}

impl<'a> Args<'a> {
    pub fn new(args: &'a [String]) -> Args<'a> {
        Args { it: args.iter() }
    }

    /// The next flag, or None at the end.
    pub fn flag(&mut self) -> Option<&'a str> {
        self.it.next().map(String::as_str)
    }

    /// The value after `flag`, parsed.
    pub fn value<T: FromStr>(&mut self, flag: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.string(flag)?;
        v.parse().map_err(|e| anyhow!("{flag} {v:?}: {e}"))
    }

    /// The value after `flag` as it is.
    pub fn string(&mut self, flag: &str) -> anyhow::Result<&'a str> {
        self.it
            .next()
            .map(String::as_str)
            .with_context(|| format!("{flag} needs a value"))
    }

    /// The comma-separated list after `flag`, each item parsed.
    pub fn list<T: FromStr>(&mut self, flag: &str) -> anyhow::Result<Vec<T>>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.string(flag)?;
        v.split(',')
            .map(|item| item.parse().map_err(|e| anyhow!("{flag} {item:?}: {e}")))
            .collect()
    }
}

/// The error for a flag the subcommand does not know.
pub fn unknown(flag: &str) -> anyhow::Error {
    anyhow!("unknown option {flag:?} (cargo xtask help lists each command's options)")
}

/// The median of the numbers that are not NaN (the mean of the middle two
/// for an even count); NaN when there are none.
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_values_and_lists() {
        let v = strings(&["--rounds", "3", "--depths", "1,16", "--tls", "--path", "/x"]);
        let mut a = Args::new(&v);
        assert_eq!(a.flag(), Some("--rounds"));
        assert_eq!(a.value::<u32>("--rounds").unwrap(), 3);
        assert_eq!(a.flag(), Some("--depths"));
        assert_eq!(a.list::<u32>("--depths").unwrap(), vec![1, 16]);
        assert_eq!(a.flag(), Some("--tls"));
        assert_eq!(a.flag(), Some("--path"));
        assert_eq!(a.string("--path").unwrap(), "/x");
        assert_eq!(a.flag(), None);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let v = strings(&["--rounds", "many", "--depths", "1,x"]);
        let mut a = Args::new(&v);
        a.flag();
        let e = a.value::<u32>("--rounds").unwrap_err().to_string();
        assert!(e.starts_with("--rounds \"many\": "), "{e}");
        a.flag();
        let e = a.list::<u32>("--depths").unwrap_err().to_string();
        assert!(e.starts_with("--depths \"x\": "), "{e}");
        let e = a.value::<u32>("--duration").unwrap_err().to_string();
        assert_eq!(e, "--duration needs a value");
        assert!(unknown("--fast").to_string().contains("\"--fast\""));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
        assert!(median(&[f64::NAN]).is_nan());
        assert!(median(&[]).is_nan());
    }
}
