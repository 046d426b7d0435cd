//! loadgen: a shard-per-core HTTP/1.1 load generator with exact latency and
//! a profiler of the target.
//!
//! Data flows one way: [`config`] → [`engine`] threads, each running a
//! [`shard`] core → per-shard [`stats`] → merge → [`report`]. [`sys`] holds
//! the system calls; the command line lives in the binary.

pub mod compare;
pub mod config;
pub mod engine;
pub mod fleet;
pub mod grpc;
pub mod histogram;
pub mod http;
pub mod metrics;
pub mod peer;
pub mod profile;
pub mod report;
pub mod sample;
pub mod scenario;
pub mod schedule;
pub mod search;
pub mod shard;
pub mod signal;
pub mod stats;
pub mod sys;
pub mod target;
pub mod threshold;
pub mod tls;
pub mod units;
pub mod url;
