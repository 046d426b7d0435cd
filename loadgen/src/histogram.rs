//! HdrHistograms as loadgen keeps them: how they are made, added (never
//! losing a value), read, and encoded (HdrHistogram's V2-deflate, base64
//! in the JSON report). The shards' stats, TLS's, the profiler's, the
//! report and `loadgen merge` all go through here.

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// Latencies are recorded in microseconds, 1 µs … 1 h, 3 significant digits.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;

/// A latency histogram, µs. Recording saturates at [`LATENCY_MAX_US`] (the
/// shards never allocate); adding another histogram widens it to whatever
/// that one holds (a part's report written with other bounds).
pub fn new_latency_histogram() -> Histogram<u64> {
    widening(Histogram::new_with_bounds(1, LATENCY_MAX_US, 3))
}

/// A histogram of rates (requests per second), 1 … 10^10.
pub fn new_rate_histogram() -> Histogram<u64> {
    widening(Histogram::new_with_bounds(1, 10_000_000_000, 3))
}

fn widening(h: Result<Histogram<u64>, hdrhistogram::CreationError>) -> Histogram<u64> {
    let mut h = h.expect("static histogram bounds are valid");
    h.auto(true);
    h
}

/// Adds `from` to `into`, widening `into` when `from` holds larger values
/// than it can (a histogram decoded from a file may): no value is ever
/// dropped, or the percentiles of a merge would leave out requests its
/// counts include.
pub fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.auto(true);
    // With auto-resize, `add` fails only when the counts array would need
    // more than usize::MAX slots; a u64 value needs at most 64 buckets.
    into.add(from)
        .expect("an auto-resizing histogram holds any u64 value");
}

/// The value at quantile `q`, or 0 for an empty histogram.
pub fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// The mean, or 0 for an empty histogram.
pub fn mean(h: &Histogram<u64>) -> f64 {
    if h.is_empty() { 0.0 } else { h.mean() }
}

/// Share of recorded values within `mean ± k·stdev`, in percent (wrk's
/// "+/- Stdev" column).
pub fn within_stdev(h: &Histogram<u64>, k: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let mean = h.mean();
    let sd = h.stdev();
    let (lo, hi) = (mean - k * sd, mean + k * sd);
    let inside: u64 = h
        .iter_recorded()
        .filter(|v| {
            let x = h.median_equivalent(v.value_iterated_to()) as f64;
            x >= lo && x <= hi
        })
        .map(|v| v.count_at_value())
        .sum();
    100.0 * inside as f64 / h.len() as f64
}

/// HdrHistogram's V2-deflate encoding: a few hundred bytes for a typical
/// latency histogram instead of its 180 KiB of counts.
pub fn encode(h: &Histogram<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Serializing into a Vec cannot fail for a valid histogram.
    let _ = V2DeflateSerializer::new().serialize(h, &mut bytes);
    bytes
}

/// The inverse of [`encode`]; `None` for anything else. The histogram
/// keeps the bounds it was written with.
pub fn decode(bytes: &[u8]) -> Option<Histogram<u64>> {
    Deserializer::new().deserialize(&mut &bytes[..]).ok()
}

/// [`encode`], base64: how the JSON report carries a histogram.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    base64::engine::general_purpose::STANDARD.encode(encode(h))
}

/// The inverse of [`encode_histogram`]; `None` for anything else.
pub fn decode_histogram(text: &str) -> Option<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_wider_histogram_widens_instead_of_dropping() {
        let mut wide = Histogram::<u64>::new_with_bounds(1, 1 << 40, 3).unwrap();
        wide.record(2 * LATENCY_MAX_US).unwrap();
        wide.record(10).unwrap();
        // As a merge gets it: decoded from a report.
        let wide = decode_histogram(&encode_histogram(&wide)).unwrap();
        let mut total = new_latency_histogram();
        total.saturating_record(20);
        add(&mut total, &wide);
        assert_eq!(total.len(), 3);
        assert!(total.equivalent(total.max(), 2 * LATENCY_MAX_US));
        // Recording still saturates: a shard never allocates.
        let mut h = new_latency_histogram();
        h.saturating_record(u64::MAX);
        assert!(h.equivalent(h.max(), LATENCY_MAX_US));
    }

    #[test]
    fn the_codec_round_trips_and_refuses_anything_else() {
        let mut h = new_latency_histogram();
        for v in [1, 50, 1000, 3_000_000] {
            h.record(v).unwrap();
        }
        assert_eq!(decode_histogram(&encode_histogram(&h)), Some(h.clone()));
        assert_eq!(decode(&encode(&h)), Some(h));
        assert_eq!(decode_histogram("not base64"), None);
        assert_eq!(decode(b"not a histogram"), None);
    }

    #[test]
    fn within_stdev_counts_the_middle() {
        let mut h = new_latency_histogram();
        for v in [10, 10, 10, 10, 10, 10, 10, 10, 10, 1000] {
            h.record(v).unwrap();
        }
        // mean 109, stdev 297: only the outlier is outside one stdev.
        assert!((within_stdev(&h, 1.0) - 90.0).abs() < 1e-9);
    }
}
