//! `--html FILE`: one self-contained page. Everything on it comes from the
//! JSON [`Report`] (so `loadgen report RUN.json --html FILE` draws the same
//! page later): the header and wrk summary, charts drawn with plotters as
//! inline SVG, the tables, and inferno's interactive flamegraphs, each in
//! an `<iframe srcdoc>` so its script, search and zoom work as in the
//! standalone SVG. Nothing is fetched: no CDN, no fonts, no images; the
//! page's Content-Security-Policy forbids any fetch.

mod charts;
mod markup;
mod offcpu;
mod page;
#[cfg(test)]
mod tests;

use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("cannot draw a chart: {0}")]
    Chart(String),
    #[error("cannot draw a flamegraph: {0}")]
    Flamegraph(String),
}

pub use charts::SearchPoint;

/// Renders the page for `doc`.
pub fn render(doc: &Report) -> Result<String, HtmlError> {
    page::Page::new(doc).render()
}

/// The page of a `find-max` search: what was asked and found (`text`, as
/// printed), and its steps as a chart.
pub fn render_search(
    title: &str,
    text: &str,
    points: &[SearchPoint],
    slo_us: Option<f64>,
    answer: Option<f64>,
) -> Result<String, HtmlError> {
    page::search_page(title, text, charts::search(points, slo_us, answer)?)
}
