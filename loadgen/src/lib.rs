//! loadgen: a shard-per-core io_uring HTTP/1.1 load generator.
//!
//! Data flows one way: [`config`] → [`engine`] shards → per-shard
//! [`stats`] → merge → [`report`].

pub mod cli;
pub mod compare;
pub mod config;
pub mod engine;
pub mod http;
pub mod profile;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod signal;
pub mod stats;
pub mod target;
pub mod units;
pub mod url;
