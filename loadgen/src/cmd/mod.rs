//! The binary's commands. Library code does the work; these wire it to
//! flags, files and the terminal. What every command shares is here once:
//! a usage error ([`Usage`], exit 2), where text and files go
//! ([`output`]), and how the exit status is decided ([`exit`]).

pub mod cli;
pub mod compare;
pub mod demo;
pub mod exit;
pub mod find_max;
pub mod grpc;
pub mod merge;
pub mod output;
pub mod report;
pub mod run;
pub mod setup;
pub mod target;

/// Bad usage, found before anything is sent (or, for a saved report,
/// before anything is written): one line on stderr, exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// `e` as a usage error, for `map_err`.
pub fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    Usage(e.to_string()).into()
}
