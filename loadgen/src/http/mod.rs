//! Sans-IO HTTP/1.1 client core: request bytes out, response events in.
//!
//! Nothing here touches a socket or a clock, so the same code serves the
//! io_uring engine, the tests, the fuzzer and the benchmarks.

mod chunked;
pub mod h2;
pub mod h3;
mod request;
mod response;

pub use request::{RequestError, RequestSpec, bad_target_byte};
pub use response::{ParseError, Response, ResponseParser};
