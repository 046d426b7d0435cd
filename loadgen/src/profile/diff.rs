//! `loadgen diff-flame BASE.folded NEW.folded -o diff.svg`: a differential
//! flamegraph (inferno, the first profile normalized to the second's total,
//! so red is "grew" and blue "shrank" in share), plus three numbers: the
//! change in total samples (per request, when the request counts are
//! known), the change in mean and p90 stack depth, and the functions whose
//! self share moved most.
//!
//! Off-CPU profiles (`--off-cpu-folded`: counts in µs, the state as the
//! leaf frame) are recognised by their leaves: the totals are then µs off
//! the CPU (per request: the wait a request cost the target), and the
//! shares are those of the blocking sites (`user call → kernel function
//! [state]`), since every off-CPU stack's own leaf is its state.

use std::collections::HashMap;
use std::io::{self, Write};

use serde_json::{Value, json};

use crate::profile::Folded;
use crate::profile::offcpu::blocked_in;

/// What a folded profile counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FlameUnit {
    /// On-CPU samples.
    #[serde(rename = "samples")]
    Samples,
    /// Off-CPU time, µs.
    #[serde(rename = "us_off_cpu")]
    OffCpuUs,
}

/// Whether every stack ends in an off-CPU state frame.
pub fn is_off_cpu(f: &Folded) -> bool {
    !f.stacks.is_empty()
        && f.stacks.iter().all(|(s, _)| {
            s.last()
                .is_some_and(|l| matches!(l.as_str(), "[S]" | "[D]" | "[R]"))
        })
}

/// Self shares (%): of the leaf functions, or of the blocking sites of an
/// off-CPU profile.
fn self_shares(f: &Folded, unit: FlameUnit) -> HashMap<String, f64> {
    match unit {
        FlameUnit::Samples => f
            .top_functions(usize::MAX, true)
            .into_iter()
            .map(|r| (r.name, r.self_pct))
            .collect(),
        FlameUnit::OffCpuUs => {
            let total = f.total().max(1) as f64;
            let mut m: HashMap<String, f64> = HashMap::new();
            for (frames, n) in &f.stacks {
                let (state, rest) = frames.split_last().expect("non-empty off-CPU stack");
                let site = format!("{} {state}", blocked_in(rest));
                *m.entry(site).or_default() += 100.0 * *n as f64 / total;
            }
            m
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Shift {
    pub name: String,
    pub base_self_pct: f64,
    pub new_self_pct: f64,
    pub change_pp: f64,
}

#[derive(Debug, Clone)]
pub struct FlameDiff {
    pub unit: FlameUnit,
    pub base_samples: u64,
    pub new_samples: u64,
    /// Requests served in each profile's window, if known.
    pub requests: Option<(u64, u64)>,
    pub base_depth: (f64, usize),
    pub new_depth: (f64, usize),
    pub up: Vec<Shift>,
    pub down: Vec<Shift>,
}

pub fn diff(base: &Folded, new: &Folded, requests: Option<(u64, u64)>) -> FlameDiff {
    // Off-CPU when both are (or one is and the other is empty).
    let off = |f: &Folded| f.stacks.is_empty() || is_off_cpu(f);
    let unit = if off(base) && off(new) && (is_off_cpu(base) || is_off_cpu(new)) {
        FlameUnit::OffCpuUs
    } else {
        FlameUnit::Samples
    };
    let (sb, sn) = (self_shares(base, unit), self_shares(new, unit));
    let mut names: Vec<&String> = sb.keys().chain(sn.keys()).collect();
    names.sort();
    names.dedup();
    let mut shifts: Vec<Shift> = names
        .into_iter()
        .map(|n| {
            let (b, a) = (
                sb.get(n).copied().unwrap_or(0.0),
                sn.get(n).copied().unwrap_or(0.0),
            );
            Shift {
                name: n.clone(),
                base_self_pct: b,
                new_self_pct: a,
                change_pp: a - b,
            }
        })
        .filter(|s| s.change_pp != 0.0)
        .collect();
    shifts.sort_by(|x, y| {
        y.change_pp
            .total_cmp(&x.change_pp)
            .then(x.name.cmp(&y.name))
    });
    let up: Vec<Shift> = shifts
        .iter()
        .filter(|s| s.change_pp > 0.0)
        .take(10)
        .cloned()
        .collect();
    let down: Vec<Shift> = shifts
        .iter()
        .rev()
        .filter(|s| s.change_pp < 0.0)
        .take(10)
        .cloned()
        .collect();
    FlameDiff {
        unit,
        base_samples: base.total(),
        new_samples: new.total(),
        requests,
        base_depth: base.depth_stats(),
        new_depth: new.depth_stats(),
        up,
        down,
    }
}

fn pct(a: f64, b: f64) -> f64 {
    if a == 0.0 { 0.0 } else { 100.0 * (b - a) / a }
}

impl FlameDiff {
    /// Samples per request served (the cost of a request), if known.
    pub fn per_request(&self) -> Option<(f64, f64)> {
        self.requests
            .filter(|(b, n)| *b > 0 && *n > 0)
            .map(|(b, n)| {
                (
                    self.base_samples as f64 / b as f64,
                    self.new_samples as f64 / n as f64,
                )
            })
    }

    pub fn text(&self) -> String {
        let (total, per, what, share) = match self.unit {
            FlameUnit::Samples => (
                "Total samples",
                "Samples per request",
                "CPU cost per request",
                "Self share",
            ),
            FlameUnit::OffCpuUs => (
                "Total off-CPU µs",
                "Off-CPU µs per request",
                "what a request cost the target in waiting",
                "Share of blocking site",
            ),
        };
        let mut s = format!(
            "{total}: {} → {} ({:+.1}%)\n",
            self.base_samples,
            self.new_samples,
            pct(self.base_samples as f64, self.new_samples as f64)
        );
        match self.per_request() {
            Some((b, n)) => s.push_str(&format!(
                "{per} ({what}): {b:.5} → {n:.5} ({:+.1}%)\n",
                pct(b, n)
            )),
            None => s.push_str(&format!(
                "{per}: unknown (pass --base-report/--new-report to normalize by requests served)\n"
            )),
        }
        s.push_str(&format!(
            "Stack depth: mean {:.1} → {:.1}, p90 {} → {}\n",
            self.base_depth.0, self.new_depth.0, self.base_depth.1, self.new_depth.1
        ));
        for (title, list) in [("grew", &self.up), ("shrank", &self.down)] {
            if list.is_empty() {
                continue;
            }
            s.push_str(&format!("{share} {title}:\n"));
            for sh in list {
                s.push_str(&format!(
                    "  {:>+7.2} pp  {:>6.2}% → {:>6.2}%  {}\n",
                    sh.change_pp, sh.base_self_pct, sh.new_self_pct, sh.name
                ));
            }
        }
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "unit": self.unit,
            "base_samples": self.base_samples,
            "new_samples": self.new_samples,
            "samples_change_pct": pct(self.base_samples as f64, self.new_samples as f64),
            "samples_per_request": self.per_request().map(|(b, n)| json!({"base": b, "new": n, "change_pct": pct(b, n)})),
            "stack_depth": {
                "base": {"mean": self.base_depth.0, "p90": self.base_depth.1},
                "new": {"mean": self.new_depth.0, "p90": self.new_depth.1},
            },
            "self_share_up": self.up,
            "self_share_down": self.down,
        })
    }
}

/// Renders the differential flamegraph: the new profile's shape, coloured
/// by how each frame's share changed from `base` (normalized totals).
pub fn render<W: Write>(base: &Folded, new: &Folded, title: &str, w: W) -> io::Result<()> {
    let (b, n) = (base.lines().join("\n"), new.lines().join("\n"));
    if b.is_empty() || n.is_empty() {
        return Err(io::Error::other(
            "both profiles need samples to draw a difference",
        ));
    }
    let mut two = Vec::new();
    let opts = inferno::differential::Options {
        normalize: true,
        ..Default::default()
    };
    inferno::differential::from_readers(opts, b.as_bytes(), n.as_bytes(), &mut two)?;
    let text = String::from_utf8_lossy(&two);
    let mut fopts = inferno::flamegraph::Options::default();
    fopts.title = title.to_string();
    fopts.count_name = if is_off_cpu(new) { "µs" } else { "samples" }.to_string();
    inferno::flamegraph::from_lines(&mut fopts, text.lines(), w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(s: &str) -> Folded {
        Folded::read(s.as_bytes()).unwrap()
    }

    #[test]
    fn hotspot_moves_and_depth_and_cost_change() {
        let base = folded("p;main;work;burn 60\np;main;work 20\np;main;io 20\n");
        let new = folded("p;main;work;burn 90\np;main;work 10\np;main;io 20\np;main 10\n");
        let d = diff(&base, &new, Some((1000, 1000)));
        assert_eq!((d.base_samples, d.new_samples), (100, 130));
        assert_eq!(d.up[0].name, "burn");
        assert!((d.up[0].change_pp - (90.0 / 130.0 * 100.0 - 60.0)).abs() < 1e-9);
        assert!(d.down.iter().any(|s| s.name == "work"));
        let (b, n) = d.per_request().unwrap();
        assert!((b - 0.1).abs() < 1e-12 && (n - 0.13).abs() < 1e-12);
        let text = d.text();
        assert!(text.contains("(+30.0%)"), "{text}");
        let mut svg = Vec::new();
        render(&base, &new, "diff", &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(
            svg.contains("burn") && svg.ends_with("</svg>\n") || svg.trim_end().ends_with("</svg>")
        );
    }

    #[test]
    fn off_cpu_profiles_compare_wait_per_request_by_blocking_site() {
        let base = folded(
            "py;main;__GI___clock_nanosleep;do_nanosleep_[k];schedule_[k];[S] 5000\n\
             py;main;__libc_recv;wait_woken_[k];schedule_[k];[S] 5000\n",
        );
        let new = folded(
            "py;main;__GI___clock_nanosleep;do_nanosleep_[k];schedule_[k];[S] 15000\n\
             py;main;__libc_recv;wait_woken_[k];schedule_[k];[S] 5000\n\
             py;main;burn;[R] 1000\n",
        );
        assert!(is_off_cpu(&base) && is_off_cpu(&new));
        assert!(!is_off_cpu(&folded("p;main;burn 3\n")));
        let d = diff(&base, &new, Some((100, 100)));
        assert_eq!(d.unit, FlameUnit::OffCpuUs);
        let (b, n) = d.per_request().unwrap();
        assert_eq!((b, n), (100.0, 210.0));
        assert_eq!(d.up[0].name, "__GI___clock_nanosleep → do_nanosleep [S]");
        assert!(
            d.down
                .iter()
                .any(|s| s.name == "__libc_recv → wait_woken [S]")
        );
        assert!(d.up.iter().any(|s| s.name == "burn [R]"));
        let text = d.text();
        assert!(text.contains("Off-CPU µs per request"), "{text}");
        assert!(text.contains("(+110.0%)"), "{text}");
        assert_eq!(d.to_json()["unit"], "us_off_cpu");
        let mut svg = Vec::new();
        render(&base, &new, "off", &mut svg).unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("µs"));
        // An on-CPU profile stays one.
        let on = diff(&folded("p;a 1\n"), &folded("p;a 2\n"), None);
        assert_eq!(on.unit, FlameUnit::Samples);
        assert!(on.text().starts_with("Total samples"));
    }

    #[test]
    fn edge_cases() {
        let empty = folded("");
        let one = folded("a;b 5\n");
        let d = diff(&empty, &one, None);
        assert_eq!((d.base_samples, d.new_samples), (0, 5));
        assert!(d.per_request().is_none());
        assert!(render(&empty, &one, "x", Vec::new()).is_err());
        // Names with spaces survive the trip through inferno.
        let spaced = folded("p;std::vec::Vec<u8, alloc> push 3\np;x 1\n");
        // (The diff is drawn in the new profile's shape.)
        let mut svg = Vec::new();
        render(&one, &spaced, "x", &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(
            svg.contains("alloc&gt; push") || svg.contains("alloc> push"),
            "{svg}"
        );
    }
}
