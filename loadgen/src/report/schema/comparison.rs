//! `--baseline`'s comparison as the JSON report holds it, and as
//! `loadgen compare --json` prints it; how it is computed is
//! `crate::compare`'s. The names of units, tests and verdicts live here,
//! with their types.

use serde::{Deserialize, Serialize};

/// What a compared metric's numbers are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricUnit {
    #[serde(rename = "req/s")]
    PerSecond,
    #[default]
    #[serde(rename = "us")]
    Micros,
}

impl MetricUnit {
    /// `1234.5/s` or `1.20ms`.
    pub fn format(self, v: f64) -> String {
        match self {
            MetricUnit::PerSecond => format!("{v:.1}/s"),
            MetricUnit::Micros => crate::units::format_time_us(v),
        }
    }
}

/// What the comparison concluded about one metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "faster")]
    Faster,
    #[serde(rename = "slower")]
    Slower,
    #[default]
    #[serde(rename = "no significant difference")]
    NoDifference,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::NoDifference => "no significant difference",
        }
    }
}

/// Which test gave the p-value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Test {
    #[serde(rename = "Welch t")]
    Welch,
    #[default]
    #[serde(rename = "Mann-Whitney U")]
    MannWhitney,
}

impl Test {
    pub fn text(self) -> &'static str {
        match self {
            Test::Welch => "Welch t",
            Test::MannWhitney => "Mann-Whitney U",
        }
    }
}

/// Where the samples came from: one per run (`--runs` on both sides), or
/// one per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleKind {
    Runs,
    #[default]
    Seconds,
}

impl SampleKind {
    /// `runs (one sample per run)` or `per-second samples`.
    pub fn describe(self) -> &'static str {
        match self {
            SampleKind::Runs => "runs (one sample per run)",
            SampleKind::Seconds => "per-second samples",
        }
    }
}

/// One metric compared with the baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComparisonRow {
    pub metric: String,
    /// The scenario request this row is about (`None`: all requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub unit: MetricUnit,
    pub base_median: f64,
    pub new_median: f64,
    pub delta_pct: f64,
    pub ci95_pct: (f64, f64),
    pub p_value: f64,
    pub test: Test,
    pub verdict: Verdict,
    pub n_base: usize,
    pub n_new: usize,
}

impl ComparisonRow {
    /// `metric`, or `request: metric` for a per-request row.
    pub fn label(&self) -> String {
        match &self.request {
            Some(name) => format!("{name}: {}", self.metric),
            None => self.metric.clone(),
        }
    }
}

/// The samples one metric was compared on, each side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Distribution {
    pub metric: String,
    pub unit: MetricUnit,
    pub base: Vec<f64>,
    pub new: Vec<f64>,
}

/// `--baseline`: everything the comparison printed and drew.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Baseline {
    /// The baseline report's path as given.
    pub path: String,
    pub samples: SampleKind,
    pub alpha: f64,
    pub metrics: Vec<ComparisonRow>,
    pub warnings: Vec<String>,
    pub distributions: Vec<Distribution>,
    /// With a profile on both sides: `diff-flame --json`'s figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flame_diff: Option<serde_json::Value>,
    /// The baseline's folded stacks, for the differential flamegraph.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub base_folded: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the JSON interface: reports written before these
    /// were types still read.
    #[test]
    fn names_read_back() {
        let b: Baseline = serde_json::from_str(
            r#"{"path": "b.json", "samples": "runs", "alpha": 0.05,
                "metrics": [{"metric": "p99 latency", "unit": "us", "test": "Welch t",
                             "verdict": "slower", "delta_pct": 12.5},
                            {"metric": "throughput", "unit": "req/s",
                             "test": "Mann-Whitney U", "verdict": "no significant difference"}],
                "distributions": [{"metric": "throughput", "unit": "req/s", "base": [1.0]}]}"#,
        )
        .unwrap();
        assert_eq!(b.samples, SampleKind::Runs);
        let r = &b.metrics[0];
        assert_eq!(
            (r.unit, r.test, r.verdict),
            (MetricUnit::Micros, Test::Welch, Verdict::Slower)
        );
        assert_eq!(b.metrics[1].verdict, Verdict::NoDifference);
        assert_eq!(b.distributions[0].unit, MetricUnit::PerSecond);
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["metrics"][1]["test"], "Mann-Whitney U");
        assert_eq!(v["metrics"][0]["verdict"], Verdict::Slower.text());
    }
}
