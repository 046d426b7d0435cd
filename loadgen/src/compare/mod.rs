//! Proving a change: `loadgen compare` and `--baseline`, statistics over
//! repeated runs (the differential flamegraphs of `loadgen diff-flame` are
//! `profile::diff`'s).

pub mod runs;
