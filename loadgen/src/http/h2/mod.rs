//! HTTP/2 (RFC 9113) pieces, sans-IO like the HTTP/1.1 client beside them.

pub mod hpack;
