//! Sans-IO HTTP/3 (RFC 9114) for the client: frames, the server's
//! unidirectional streams, response streams and QPACK (RFC 9204), over
//! whatever carries QUIC stream bytes (quinn-proto in the shard core).
//! Nothing here touches a socket, a clock or a QUIC connection.
//!
//! Shaped for a load generator, like [`super::h2`]:
//!
//! - We advertise a QPACK dynamic table of zero bytes, so the server may use
//!   only the static table and literals (RFC 9204 §3.2.3): the decoder keeps
//!   no state between field sections and we open no QPACK streams (§4.2).
//! - Requests use no table either, so a request that never changes is the
//!   same HEADERS frame on every stream of every connection: built once
//!   ([`qpack::fixed_request_frame`]) and handed to QUIC by reference count.
//! - [`FrameReader`] is incremental per stream and copies nothing on the
//!   hot path: a frame that arrives whole is handed on from the input, and
//!   DATA is counted as it passes; only a HEADERS or SETTINGS frame split
//!   across reads is gathered, in a buffer the stream keeps.
//!
//! Every fault is an [`H3Error`], which knows its wire code and whether it
//! ends the connection or only the stream.

mod connection;
mod error;
mod frame;
pub mod qpack;
mod response;
mod stats;
mod uni;
pub mod varint;

#[cfg(test)]
pub(crate) mod quic_tests;
#[cfg(test)]
mod tests;

pub use connection::{Connection, Event};
pub use error::{H3Error, code, code_name};
pub use frame::{Frame, FrameReader, StreamKind, frame_type, write_frame_header};
pub use response::{ResponseEvent, ResponseReader};
pub use stats::{
    COUNTERS as QUIC_COUNTERS, PacketCounts, QuicStats, application_code_name, error_name,
};
pub use uni::{PeerSettings, PeerStreams, UniStream, UniStreamAction, client_control_stream};

/// The ALPN protocol id of HTTP/3 over QUIC v1.
pub const ALPN: &[u8] = b"h3";
