//! `--threshold`'s outcomes as the JSON report holds them (the
//! expressions and their evaluation are `crate::threshold`'s).

use serde::{Deserialize, Serialize};

/// The unit a threshold's value is written and reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdUnit {
    #[serde(rename = "us")]
    Micros,
    #[serde(rename = "ms")]
    Millis,
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "req/s")]
    PerSecond,
    #[serde(rename = "%")]
    Percent,
    #[serde(rename = "")]
    Count,
}

impl ThresholdUnit {
    /// µs in one of this unit (time units only).
    pub fn micros(self) -> f64 {
        match self {
            ThresholdUnit::Micros => 1.0,
            ThresholdUnit::Millis => 1e3,
            ThresholdUnit::Seconds => 1e6,
            _ => 1.0,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            ThresholdUnit::Micros => "us",
            ThresholdUnit::Millis => "ms",
            ThresholdUnit::Seconds => "s",
            ThresholdUnit::PerSecond => " req/s",
            ThresholdUnit::Percent => "%",
            ThresholdUnit::Count => "",
        }
    }

    /// A value with this unit, as the tables print it: `5ms`, `99.5%`.
    pub fn format(self, v: f64) -> String {
        let digits = if v == v.trunc() && v.abs() < 1e15 {
            0
        } else if v.abs() >= 100.0 {
            1
        } else {
            3
        };
        format!("{v:.digits$}{}", self.suffix())
    }
}

/// One evaluated threshold, as the JSON report holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThresholdOutcome {
    pub expr: String,
    /// The measured value in `unit`; `null` when there was nothing to
    /// measure (a latency of a run with no responses), which fails.
    pub value: Option<f64>,
    pub ok: bool,
    pub unit: ThresholdUnit,
}

impl Default for ThresholdOutcome {
    fn default() -> Self {
        ThresholdOutcome {
            expr: String::new(),
            value: None,
            ok: false,
            unit: ThresholdUnit::Count,
        }
    }
}

impl ThresholdOutcome {
    /// The measured value with its unit, or `no data`.
    pub fn value_text(&self) -> String {
        self.value
            .map_or_else(|| "no data".to_string(), |v| self.unit.format(v))
    }
}
