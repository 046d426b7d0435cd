//! Proving a change: `loadgen compare` (statistics over repeated runs) and
//! `loadgen diff-flame` (differential flamegraphs).

pub mod diff;
pub mod runs;
pub mod stats;
