//! Reading the Prometheus text exposition format (and OpenMetrics text,
//! which is the same for our purposes: `# EOF`, `# UNIT` and exemplars are
//! accepted) into samples, and picking series out of it with a selector
//! such as `http_requests_total{code="200"}`. Pure: text in, numbers out.

use super::MetricsError;

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

/// Splits a metric or label name off the front of `s`.
fn name(s: &str) -> Option<(&str, &str)> {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if is_name_start(c) => {}
        _ => return None,
    }
    let end = chars
        .find(|&(_, c)| !is_name_char(c))
        .map_or(s.len(), |(i, _)| i);
    Some((&s[..end], &s[end..]))
}

/// Label pairs, in the order written.
pub type Labels = Vec<(String, String)>;

/// Parses `{k="v",…}` (the braces included); returns the labels and the
/// rest of the line.
fn labels(s: &str) -> Result<(Labels, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or("expected '{'")?.trim_start();
    let mut out = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let (key, r) = name(rest).ok_or("expected a label name")?;
        let r = r
            .trim_start()
            .strip_prefix('=')
            .ok_or("expected '=' after a label name")?;
        let r = r
            .trim_start()
            .strip_prefix('"')
            .ok_or("expected '\"' to open a label value")?;
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((key.to_string(), value));
        rest = r[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label value".into());
        }
    }
}

/// A sample value: a float, `NaN`, `+Inf`, `-Inf`.
fn value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses a whole exposition. Any line that is neither a comment, blank,
/// nor a well-formed sample is an error naming the line.
pub fn parse(text: &str) -> Result<Vec<Sample>, MetricsError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| MetricsError::Malformed {
            line: i + 1,
            why: why.to_string(),
            text: line.chars().take(80).collect(),
        };
        let (metric, rest) =
            name(line).ok_or_else(|| bad("a sample must start with a metric name"))?;
        let (labels, rest) = if rest.starts_with('{') {
            labels(rest).map_err(|e| bad(&e))?
        } else {
            (Vec::new(), rest)
        };
        // OpenMetrics exemplars follow a '#'.
        let rest = rest.split(" # ").next().unwrap_or(rest);
        let mut fields = rest.split_whitespace();
        let v = fields
            .next()
            .and_then(value)
            .ok_or_else(|| bad("expected a number after the metric"))?;
        if let Some(ts) = fields.next()
            && ts.parse::<f64>().is_err()
        {
            return Err(bad("the timestamp is not a number"));
        }
        if fields.next().is_some() {
            return Err(bad("unexpected text after the value"));
        }
        out.push(Sample {
            name: metric.to_string(),
            labels,
            value: v,
        });
    }
    Ok(out)
}

/// `NAME` or `NAME{k="v",…}`: a metric and the labels a series must have.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub name: String,
    pub labels: Labels,
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, MetricsError> {
        let s = s.trim();
        let bad = |why: &str| MetricsError::Selector(s.to_string(), why.to_string());
        let (metric, rest) = name(s).ok_or_else(|| bad("it must start with a metric name"))?;
        let (labels, rest) = if rest.starts_with('{') {
            labels(rest).map_err(|e| bad(&e))?
        } else {
            (Vec::new(), rest)
        };
        if !rest.trim().is_empty() {
            return Err(bad("unexpected text after the name and labels"));
        }
        Ok(Selector {
            name: metric.to_string(),
            labels,
        })
    }

    fn matches_labels(&self, s: &Sample) -> bool {
        self.labels.iter().all(|(k, v)| s.label(k) == Some(v))
    }

    /// The sum over every series of the metric with the selector's labels;
    /// `None` when no series matched.
    pub fn sum(&self, samples: &[Sample]) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in samples
            .iter()
            .filter(|s| s.name == self.name && self.matches_labels(s))
        {
            found = true;
            total += s.value;
        }
        found.then_some(total)
    }

    /// A histogram's cumulative buckets (`NAME_bucket`), summed over the
    /// selected series per `le` and sorted by bound; `None` when there are
    /// none.
    pub fn buckets(&self, samples: &[Sample]) -> Option<Vec<(f64, f64)>> {
        let bucket = format!("{}_bucket", self.name);
        let mut out: Vec<(f64, f64)> = Vec::new();
        for s in samples
            .iter()
            .filter(|s| s.name == bucket && self.matches_labels(s))
        {
            let le = s.label("le").and_then(value)?;
            match out.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += s.value,
                None => out.push((le, s.value)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        (!out.is_empty()).then_some(out)
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            let l: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            write!(f, "{{{}}}", l.join(","))?;
        }
        Ok(())
    }
}

/// The quantile `q` of a histogram given as cumulative buckets, by linear
/// interpolation within the bucket, as Prometheus' `histogram_quantile`
/// does. `None` when the histogram is empty; a quantile in the +Inf bucket
/// is the largest finite bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || buckets.len() < 2 && buckets[0].0.is_infinite() {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let (lo, below) = prev;
            let in_bucket = count - below;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(lo + (le - lo) * (rank - below) / in_bucket);
        }
        prev = (le, count);
    }
    Some(prev.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",method="get"} 1027 1395066363000
http_requests_total{code="400", method="post"} 3
http_requests_total{code="200",method="post",path="a \"q\" \\ b\nc"} 5
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 10
latency_seconds_bucket{le="0.2"} 30
latency_seconds_bucket{le="+Inf"} 40
latency_seconds_sum 5.5
latency_seconds_count 40
plain 1.5e3
nan_metric NaN
exemplar_total 4 # {trace_id="x"} 1.0
# EOF
"#;

    #[test]
    fn parses_samples_labels_escapes_and_specials() {
        let s = parse(TEXT).unwrap();
        assert_eq!(s.len(), 11);
        assert_eq!(s[0].name, "http_requests_total");
        assert_eq!(s[0].label("code"), Some("200"));
        assert_eq!(s[0].value, 1027.0);
        assert_eq!(s[2].label("path"), Some("a \"q\" \\ b\nc"));
        assert_eq!(s[5].label("le"), Some("+Inf"));
        assert_eq!(s[8].value, 1500.0);
        assert!(s[9].value.is_nan());
        assert_eq!(s[10].value, 4.0);
    }

    #[test]
    fn selectors_sum_over_labels_and_filter() {
        let s = parse(TEXT).unwrap();
        let sel = |t: &str| Selector::parse(t).unwrap();
        assert_eq!(sel("http_requests_total").sum(&s), Some(1035.0));
        assert_eq!(
            sel(r#"http_requests_total{code="200"}"#).sum(&s),
            Some(1032.0)
        );
        assert_eq!(
            sel(r#"http_requests_total{code="200", method="get"}"#).sum(&s),
            Some(1027.0)
        );
        assert_eq!(sel(r#"http_requests_total{code="500"}"#).sum(&s), None);
        assert_eq!(sel("missing_total").sum(&s), None);
        assert_eq!(sel(r#"x{code="200"}"#).to_string(), r#"x{code="200"}"#);
        for bad in ["", "1abc", "x{code=200}", "x{code=\"200\"", "x y"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_lines_are_named() {
        for (text, line) in [
            ("ok 1\nbroken\n", 2),
            ("x{a=\"1\" 2\n", 1),
            ("# c\n\nx 1 2 3\n", 3),
            ("x abc\n", 1),
            ("<html>\n", 1),
            ("x 1 notatime\n", 1),
        ] {
            match parse(text) {
                Err(MetricsError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let s = parse(TEXT).unwrap();
        let b = Selector::parse("latency_seconds")
            .unwrap()
            .buckets(&s)
            .unwrap();
        assert_eq!(b, vec![(0.1, 10.0), (0.2, 30.0), (f64::INFINITY, 40.0)]);
        // rank 20 is halfway through the (0.1, 0.2] bucket.
        assert!((histogram_quantile(0.5, &b).unwrap() - 0.15).abs() < 1e-12);
        // rank 2.5 is a quarter into the first bucket, from 0.
        assert!((histogram_quantile(0.0625, &b).unwrap() - 0.025).abs() < 1e-12);
        // In +Inf: the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &b), Some(0.2));
        assert_eq!(
            histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
    }
}
