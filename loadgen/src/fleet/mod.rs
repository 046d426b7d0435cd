//! Many processes acting as one load generator (`--part K/N`): the rules
//! that give each part its share of the fleet's totals, and the one
//! numbering every request of the fleet gets.
//!
//! Every request of the fleet has one number `g`. Part K of N takes the
//! numbers `K-1 + N·m` (`m` its own request numbers), and within a part
//! shard i of S takes `m = i + S·j`. So a shard's j-th request is fleet
//! request `offset + stride·j`, with `offset = K-1 + N·i` and
//! `stride = N·S` ([`Part::stream`]). That one rule gives the open-loop
//! schedule (request `g` is due when the fleet's schedule has counted
//! `g`), `{{seq}}` and the feed rows; the union over parts and shards is
//! exactly the fleet's, whatever S each part has.
//!
//! Pure: `--part auto/N` is resolved from the environment by the command
//! layer, and `--start-at` checked against the clock there too.

mod bind;
mod time;

pub use bind::{BindError, parse_bind};
pub use time::{StartAtError, check_start_at, format_rfc3339, parse_start_at};

/// Parts a fleet may have at most (catches typos such as `--part 1/30000`).
pub const MAX_PARTS: u32 = 10_000;

/// This process is part `index` (1-based) of a fleet of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    pub index: u32,
    pub of: u32,
}

impl Default for Part {
    /// A fleet of one.
    fn default() -> Part {
        Part { index: 1, of: 1 }
    }
}

/// A shard's place in the fleet's numbering: its j-th request (or row, or
/// `{{seq}}`) is number `offset + stride·j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    pub offset: u64,
    pub stride: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PartError {
    #[error(
        "--part takes K/N with 1 ≤ K ≤ N ≤ {MAX_PARTS}, or auto/N (K from JOB_COMPLETION_INDEX), e.g. --part 2/3; got {0:?}"
    )]
    Syntax(String),
    #[error(
        "--part auto/{0} reads the part from JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job), which is not set: give --part K/{0}"
    )]
    NoIndex(u32),
    #[error(
        "--part auto/{of}: JOB_COMPLETION_INDEX is {index:?}, not a number from 0 to {}: is the Job's completions {of}?",
        of - 1
    )]
    BadIndex { index: String, of: u32 },
}

/// `--part` as written: a fixed part, or `auto/N` to be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartSpec {
    Fixed(Part),
    /// `auto/N`: the index comes from `JOB_COMPLETION_INDEX` (0-based).
    Auto(u32),
}

impl PartSpec {
    pub fn parse(s: &str) -> Result<PartSpec, PartError> {
        let bad = || PartError::Syntax(s.to_string());
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let of: u32 = n.trim().parse().map_err(|_| bad())?;
        if !(1..=MAX_PARTS).contains(&of) {
            return Err(bad());
        }
        if k.trim() == "auto" {
            return Ok(PartSpec::Auto(of));
        }
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        if !(1..=of).contains(&index) {
            return Err(bad());
        }
        Ok(PartSpec::Fixed(Part { index, of }))
    }

    /// The part, given `JOB_COMPLETION_INDEX` (for `auto/N`).
    pub fn resolve(self, job_index: Option<&str>) -> Result<Part, PartError> {
        match self {
            PartSpec::Fixed(p) => Ok(p),
            PartSpec::Auto(of) => {
                let raw = job_index.ok_or(PartError::NoIndex(of))?;
                let i: u32 = raw.trim().parse().ok().filter(|&i| i < of).ok_or_else(|| {
                    PartError::BadIndex {
                        index: raw.to_string(),
                        of,
                    }
                })?;
                Ok(Part { index: i + 1, of })
            }
        }
    }
}

impl Part {
    /// True for a fleet of more than one.
    pub fn is_fleet(self) -> bool {
        self.of > 1
    }

    /// This part's share of a fleet total: an even split, the remainder to
    /// the first parts (so the shares add up to `total`).
    pub fn share(self, total: u64) -> u64 {
        let (k, n) = (self.index as u64 - 1, self.of as u64);
        total / n + u64::from(k < total % n)
    }

    /// Where shard `shard` of `shards` sits in the fleet's numbering.
    pub fn stream(self, shard: usize, shards: usize) -> Stream {
        let n = self.of as u64;
        Stream {
            offset: self.index as u64 - 1 + n * shard as u64,
            stride: n * shards.max(1) as u64,
        }
    }

    /// The seed this part's generators use: `--seed` itself in a fleet of
    /// one (so runs without `--part` send what they always did), otherwise
    /// one derived from it and the part, so parts do not repeat each
    /// other's values and each part is reproducible on its own.
    pub fn seed(self, seed: u64) -> u64 {
        if !self.is_fleet() {
            return seed;
        }
        // SplitMix64's finalizer over the seed and the part.
        let mut z = seed ^ (self.index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_parse_and_resolve() {
        assert_eq!(
            PartSpec::parse("2/3"),
            Ok(PartSpec::Fixed(Part { index: 2, of: 3 }))
        );
        assert_eq!(PartSpec::parse(" auto/4 "), Ok(PartSpec::Auto(4)));
        for bad in [
            "", "2", "0/3", "4/3", "1/0", "x/2", "auto/0", "1/10001", "-1/2",
        ] {
            assert!(PartSpec::parse(bad).is_err(), "{bad}");
        }
        let auto = PartSpec::Auto(3);
        assert_eq!(auto.resolve(Some("0")), Ok(Part { index: 1, of: 3 }));
        assert_eq!(auto.resolve(Some("2")), Ok(Part { index: 3, of: 3 }));
        assert_eq!(auto.resolve(None), Err(PartError::NoIndex(3)));
        let e = auto.resolve(Some("3")).unwrap_err();
        assert!(
            e.to_string().contains("JOB_COMPLETION_INDEX is \"3\""),
            "{e}"
        );
        assert!(auto.resolve(Some("one")).is_err());
        // A fixed part ignores the environment.
        let fixed = PartSpec::Fixed(Part { index: 2, of: 2 });
        assert_eq!(fixed.resolve(Some("0")), Ok(Part { index: 2, of: 2 }));
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, n) in [(3000u64, 3u32), (10, 3), (7, 7), (5, 1), (1, 4)] {
            let shares: Vec<u64> = (1..=n)
                .map(|k| Part { index: k, of: n }.share(total))
                .collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{total}/{n}");
            let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(hi - lo <= 1, "{shares:?}");
        }
        assert_eq!(Part { index: 1, of: 3 }.share(10), 4);
        assert_eq!(Part { index: 3, of: 3 }.share(10), 3);
    }

    /// Every fleet number is taken exactly once, whatever the parts' shard
    /// counts.
    #[test]
    fn streams_partition_the_fleet_numbers() {
        let n = 3u32;
        let shards_of = [2usize, 1, 3];
        let mut seen = vec![0u32; 600];
        for k in 1..=n {
            let s = shards_of[k as usize - 1];
            for i in 0..s {
                let st = Part { index: k, of: n }.stream(i, s);
                let mut g = st.offset;
                while (g as usize) < seen.len() {
                    seen[g as usize] += 1;
                    g += st.stride;
                }
            }
        }
        // Part K's shards all have stride N·S_K; together they take the
        // numbers ≡ K-1 (mod N) exactly once.
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
        assert_eq!(
            Part::default().stream(2, 4),
            Stream {
                offset: 2,
                stride: 4
            },
            "a fleet of one is the shard numbering as before"
        );
    }

    #[test]
    fn part_seeds_are_reproducible_and_distinct() {
        let p = |k| Part { index: k, of: 3 };
        assert_eq!(Part::default().seed(42), 42);
        assert_eq!(p(1).seed(42), p(1).seed(42));
        assert_ne!(p(1).seed(42), p(2).seed(42));
        assert_ne!(p(1).seed(42), 42);
        assert_ne!(p(1).seed(42), p(1).seed(43));
    }
}
