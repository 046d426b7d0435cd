//! quinn-proto driven as the shard core will drive it (design note §1,
//! "Ownership in the core"): one client `Endpoint`, connections fed
//! datagrams and timeouts on a fake clock, `poll_transmit` pulled until it
//! has nothing, and [`super::Connection`] on the streams. The server is a
//! quinn-proto server `Endpoint` in the same process whose HTTP/3 side is
//! an independent implementation (shiguredo_http3's frames and QPACK), so
//! both ends of every byte we frame are checked by someone else's code; it
//! can misbehave one way at a time ([`harness::Behaviour`]).

mod cases;
pub(crate) mod harness;
