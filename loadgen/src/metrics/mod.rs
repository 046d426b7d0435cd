//! Prometheus, both ways: loadgen's own live metrics served during the run
//! (`--metrics-listen`, [`live`] and [`serve`]), and the target's metrics
//! scraped around the measured window to check our count against the
//! server's (`--server-metrics`, [`scrape`], [`exposition`], [`server`]).

pub mod exposition;
pub mod live;
pub mod scrape;
pub mod serve;
pub mod server;

pub use exposition::{Sample, Selector};
pub use live::{Info, Live};
pub use serve::Endpoint;
pub use server::{ClientCount, ServerCheck, ServerMetrics, Window};

#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot listen on {0} for --metrics-listen: {1} (is the port in use? pick another address, or port 0 for any)"
    )]
    Listen(std::net::SocketAddr, std::sync::Arc<std::io::Error>),
    #[error("cannot scrape {0}: {1}")]
    Scrape(String, String),
    #[error("malformed exposition at line {line} ({why}): {text:?}")]
    Malformed {
        line: usize,
        why: String,
        text: String,
    },
    #[error("bad metric name {0:?}: {1}; write NAME or NAME{{label=\"value\"}}")]
    Selector(String, String),
}

impl MetricsError {
    pub(crate) fn listen(addr: std::net::SocketAddr, e: std::io::Error) -> MetricsError {
        MetricsError::Listen(addr, std::sync::Arc::new(e))
    }
}
