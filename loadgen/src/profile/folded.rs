//! Brendan Gregg's folded stack format (`root;…;leaf count`), and the
//! "top functions" table computed from it (self and total share, like the
//! head of `perf report`).

use std::collections::HashMap;
use std::io::{self, BufRead, Write};

/// Folded stacks: frames root first, and how many samples had them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    pub stacks: Vec<(Vec<String>, u64)>,
}

/// One row of the top-functions table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FunctionShare {
    pub name: String,
    /// Samples where it was the leaf frame.
    pub self_samples: u64,
    /// Samples where it was anywhere on the stack (counted once).
    pub total_samples: u64,
    pub self_pct: f64,
    pub total_pct: f64,
}

/// Makes a symbol safe as one folded frame: `;` separates frames and
/// newlines separate stacks, so neither may appear inside a name.
pub fn sanitize(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

impl Folded {
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|(_, n)| n).sum()
    }

    /// Adds another profile's stacks to this one.
    pub fn merge(&mut self, other: &Folded) {
        let mut merged: HashMap<Vec<String>, u64> =
            std::mem::take(&mut self.stacks).into_iter().collect();
        for (frames, n) in &other.stacks {
            *merged.entry(frames.clone()).or_default() += n;
        }
        self.stacks = merged.into_iter().collect();
        self.stacks.sort();
    }

    /// Lines as inferno and flamegraph.pl read them.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .filter(|(frames, n)| *n > 0 && !frames.is_empty())
            .map(|(frames, n)| format!("{} {n}", frames.join(";")))
            .collect();
        lines.sort();
        lines
    }

    pub fn write<W: Write>(&self, mut out: W) -> io::Result<()> {
        for line in self.lines() {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    /// Reads folded lines; the count is after the last space, so frames
    /// may contain spaces. Lines without a count are skipped.
    pub fn read<R: BufRead>(input: R) -> io::Result<Folded> {
        let mut merged: HashMap<Vec<String>, u64> = HashMap::new();
        for line in input.lines() {
            let line = line?;
            let line = line.trim_end();
            let Some((stack, count)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            let frames: Vec<String> = stack.split(';').map(str::to_string).collect();
            *merged.entry(frames).or_default() += count;
        }
        let mut stacks: Vec<_> = merged.into_iter().collect();
        stacks.sort();
        Ok(Folded { stacks })
    }

    /// The `limit` functions with the most self samples (ties by total).
    /// The annotation suffixes (`_[k]`, `_[j]`) are kept in the name so
    /// kernel and JIT frames stay recognisable.
    pub fn top_functions(&self, limit: usize, skip_root: bool) -> Vec<FunctionShare> {
        let total = self.total().max(1) as f64;
        let mut selfs: HashMap<&str, u64> = HashMap::new();
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for (frames, n) in &self.stacks {
            let frames = if skip_root && frames.len() > 1 {
                &frames[1..]
            } else {
                &frames[..]
            };
            if let Some(leaf) = frames.last() {
                *selfs.entry(leaf).or_default() += n;
            }
            let mut seen: Vec<&str> = Vec::with_capacity(frames.len());
            for f in frames {
                if !seen.contains(&f.as_str()) {
                    seen.push(f);
                    *totals.entry(f).or_default() += n;
                }
            }
        }
        let mut rows: Vec<FunctionShare> = totals
            .iter()
            .map(|(name, &t)| {
                let s = selfs.get(name).copied().unwrap_or(0);
                FunctionShare {
                    name: name.to_string(),
                    self_samples: s,
                    total_samples: t,
                    self_pct: 100.0 * s as f64 / total,
                    total_pct: 100.0 * t as f64 / total,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            (b.self_samples, b.total_samples, &a.name).cmp(&(
                a.self_samples,
                a.total_samples,
                &b.name,
            ))
        });
        rows.truncate(limit);
        rows
    }

    /// Mean and 90th-percentile stack depth over samples.
    pub fn depth_stats(&self) -> (f64, usize) {
        let total = self.total();
        if total == 0 {
            return (0.0, 0);
        }
        let mut by_depth: Vec<(usize, u64)> =
            self.stacks.iter().map(|(f, n)| (f.len(), *n)).collect();
        by_depth.sort_unstable();
        let mean = by_depth
            .iter()
            .map(|(d, n)| *d as f64 * *n as f64)
            .sum::<f64>()
            / total as f64;
        let mut seen = 0;
        let mut p90 = 0;
        for (d, n) in by_depth {
            seen += n;
            p90 = d;
            if seen * 10 >= total * 9 {
                break;
            }
        }
        (mean, p90)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(s: &str, n: u64) -> (Vec<String>, u64) {
        (s.split(';').map(str::to_string).collect(), n)
    }

    #[test]
    fn round_trips_with_spaces_and_sanitized_semicolons() {
        let f = Folded {
            stacks: vec![
                stack("main;std::vector<int, alloc>::push(a, b);memcpy_[k]", 3),
                stack(&format!("main;{}", sanitize("weird;name\nx")), 2),
                stack("main", 1),
            ],
        };
        let mut buf = Vec::new();
        f.write(&mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains("main;weird:name x 2\n"), "{text}");
        let back = Folded::read(buf.as_slice()).unwrap();
        assert_eq!(back.total(), 6);
        let mut a = f.stacks.clone();
        a.sort();
        assert_eq!(back.stacks, a);
    }

    #[test]
    fn reading_merges_duplicates_and_skips_junk() {
        let input = "a;b 2\na;b 3\n\nno count here\nc 1\n";
        let f = Folded::read(input.as_bytes()).unwrap();
        assert_eq!(f.stacks, vec![stack("a;b", 5), stack("c", 1)]);
        assert_eq!(Folded::read("".as_bytes()).unwrap().total(), 0);
    }

    #[test]
    fn top_functions_like_perf_report() {
        let f = Folded {
            stacks: vec![
                stack("proc;main;work;hot", 6),
                stack("proc;main;work", 2),
                stack("proc;main;other;hot", 2),
            ],
        };
        let top = f.top_functions(10, true);
        assert_eq!(top[0].name, "hot");
        assert_eq!((top[0].self_samples, top[0].total_samples), (8, 8));
        assert!((top[0].self_pct - 80.0).abs() < 1e-9);
        let work = top.iter().find(|r| r.name == "work").unwrap();
        assert_eq!((work.self_samples, work.total_samples), (2, 8));
        let main = top.iter().find(|r| r.name == "main").unwrap();
        assert_eq!((main.self_samples, main.total_pct), (0, 100.0));
        assert!(top.iter().all(|r| r.name != "proc"));
    }

    #[test]
    fn depth() {
        let f = Folded {
            stacks: vec![stack("a", 9), stack("a;b;c;d", 1)],
        };
        let (mean, p90) = f.depth_stats();
        assert!((mean - 1.3).abs() < 1e-9);
        assert_eq!(p90, 1);
    }
}
