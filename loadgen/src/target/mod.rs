//! The built-in target: a small, fast keep-alive HTTP/1.1 server for tests,
//! the demo, and calibrating the client. One event loop per thread, each
//! with its own `SO_REUSEPORT` listener, so threads share nothing but the
//! response counters they publish.

mod metrics;
mod routes;
mod server;

pub use routes::{HELLO, cpu_burn, route};
pub use server::{Server, TargetConfig, TargetError};
