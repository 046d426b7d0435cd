//! Reading what `--hdr-log` writes: HdrHistogram's interval log, one
//! base64 V2 histogram per interval.

use std::path::Path;

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

/// Every interval's histogram in the log at `path`, in order.
pub fn intervals(path: &Path) -> Vec<Histogram<u64>> {
    let bytes = std::fs::read(path).unwrap();
    let mut de = Deserializer::new();
    IntervalLogIterator::new(&bytes)
        .filter_map(|entry| match entry {
            Ok(LogEntry::Interval(ih)) => Some(ih),
            _ => None,
        })
        .map(|ih| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(ih.encoded_histogram())
                .unwrap();
            de.deserialize(&mut raw.as_slice()).unwrap()
        })
        .collect()
}
