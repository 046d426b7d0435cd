//! Sans-IO HTTP/2 client (RFC 9113): frames, the connection's state
//! machine, and HPACK. The shard core drives it; nothing here touches a
//! socket or a clock.

mod connection;
pub mod frame;
pub mod hpack;
mod stats;

pub use connection::{ConnError, Connection, Event, Exhausted, Head, Settings};
pub use stats::{H2Stats, RESET_CODES};
