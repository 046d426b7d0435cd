//! HdrHistogram's own file formats, so its tooling works unchanged: the
//! interval log (HistogramLogWriter's V2-compressed, base64 format) and
//! the percentile distribution (`.hgrm`, as wrk2 and HdrHistogram print).

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::stats::Second;

/// Writes one interval per second of the run. Values are µs; the `max`
/// column is divided by 1000 (ms), so HistogramLogProcessor wants
/// `-outputValueUnitRatio 1000`.
pub fn write_interval_log<W: Write>(
    out: &mut W,
    series: &[Second],
    started_at: SystemTime,
    elapsed: Duration,
) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("Written by loadgen; latency values in microseconds")
        .with_start_time(started_at)
        .with_base_time(started_at)
        .with_max_value_divisor(1000.0)
        .begin_log_with(out, &mut serializer)?;
    for (i, second) in series.iter().enumerate() {
        let start = Duration::from_secs(i as u64);
        let length = elapsed.saturating_sub(start).min(Duration::from_secs(1));
        log.write_histogram(&second.latency, start, length, None)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
    }
    Ok(())
}

/// Writes the percentile distribution in HdrHistogram's
/// `outputPercentileDistribution` format, values in ms (µs / 1000).
pub fn write_percentiles<W: Write>(out: &mut W, h: &Histogram<u64>) -> io::Result<()> {
    const SCALE: f64 = 1000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / SCALE;
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, sd) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean(), h.stdev())
    };
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        mean / SCALE,
        sd / SCALE
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        2048
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::new_latency_histogram;
    use base64::Engine;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn interval_log_round_trips() {
        let mut series = Vec::new();
        for i in 0..3u64 {
            let mut h = new_latency_histogram();
            for v in 1..=100 {
                h.record(v * (i + 1)).unwrap();
            }
            series.push(Second {
                responses: 100,
                errors: 0,
                non_2xx: 0,
                latency: h,
            });
        }
        let mut buf = Vec::new();
        write_interval_log(
            &mut buf,
            &series,
            SystemTime::now(),
            Duration::from_millis(2500),
        )
        .unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains("#[StartTime: "), "{text}");
        let mut de = Deserializer::new();
        let mut got = Vec::new();
        for entry in IntervalLogIterator::new(&buf) {
            if let Ok(LogEntry::Interval(ih)) = entry {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(ih.encoded_histogram())
                    .unwrap();
                let h: Histogram<u64> = de.deserialize(&mut bytes.as_slice()).unwrap();
                got.push((ih.start_timestamp(), ih.duration(), h));
            }
        }
        assert_eq!(got.len(), 3);
        for (i, (start, len, h)) in got.iter().enumerate() {
            assert_eq!(*start, Duration::from_secs(i as u64));
            assert_eq!(h, &series[i].latency);
            let want = if i == 2 { 500 } else { 1000 };
            assert_eq!(len.as_millis(), want);
        }
    }

    #[test]
    fn percentiles_have_the_standard_shape() {
        let mut h = new_latency_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let mut buf = Vec::new();
        write_percentiles(&mut buf, &h).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert!(text.contains("#[Mean    = "), "{text}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
        let last_row = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap();
        assert!(last_row.contains("1.000000000000"), "{last_row}");
        assert!(last_row.trim().starts_with("1.000"), "{last_row}");
    }
}
