//! `--scenario FILE`: a TOML list of requests.
//!
//! ```toml
//! [[request]]
//! name = "item"                       # default: "METHOD URL"
//! url = "/items/{{rand:1:100000}}"    # or http://host:port/...
//! weight = 8                          # default 1
//! method = "GET"                      # default GET
//! headers = ["X-Trace: {{uuid}}"]     # like -H
//! body = '{"id": {{seq}}}'            # or body_file = "payload.json"
//!
//! [[request]]
//! name = "say"                        # default: the method
//! grpc = "helloworld.Greeter/SayHello"  # a unary gRPC call (over HTTP/2)
//! body = '{"name": "u{{seq}}"}'       # the message as proto3 JSON; or
//!                                     # body_file = "m.json" / "m.bin"
//! ```
//!
//! A gRPC request's `url` is optional and names the server only; its
//! message is checked against the schema by the caller (`cmd::grpc`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Entry;
use crate::grpc::Method;
use crate::http::{RequestError, RequestSpec};
use crate::url::{Url, UrlError};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read scenario {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("scenario {0} line {1}: {2}")]
    Toml(PathBuf, usize, String),
    #[error("scenario {0} has no [[request]] tables; add at least one")]
    Empty(PathBuf),
    #[error("scenario request {0:?}: {1}")]
    Url(String, UrlError),
    #[error(
        "scenario request {0:?} has a path-only URL: give a full http:// URL, or a base URL on the command line"
    )]
    NoBase(String),
    #[error(
        "scenario request {0:?} goes to {1}, but the scenario's host is {2}: all requests of a scenario share one host"
    )]
    Host(String, String, String),
    #[error("scenario request {0:?}: weight must be at least 1")]
    Weight(String),
    #[error("scenario request name {0:?} is used twice; names must be unique")]
    Duplicate(String),
    #[error("scenario request {0:?}: give body or body_file, not both")]
    BodyAndFile(String),
    #[error("scenario request {0:?}: cannot read body_file {1}: {2}")]
    BodyFile(String, PathBuf, std::io::Error),
    #[error("scenario request {0:?}: {1}")]
    Header(String, RequestError),
    #[error("scenario request {0:?} needs a url (or grpc = \"SERVICE/METHOD\" for a gRPC call)")]
    NoUrl(String),
    #[error("scenario request {0:?}: grpc = {1}")]
    Grpc(String, String),
    #[error("scenario request {0:?} is a gRPC call, which is a POST: drop method")]
    GrpcMethod(String),
    #[error(
        "scenario request {0:?} is a gRPC call: its url names the server only (http://host:port), the path is /SERVICE/METHOD (got {1:?})"
    )]
    GrpcPath(String, String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    request: Vec<FileRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRequest {
    name: Option<String>,
    url: Option<String>,
    grpc: Option<String>,
    method: Option<String>,
    weight: Option<u32>,
    #[serde(default)]
    headers: Vec<String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
}

/// Reads a scenario. Path-only URLs are relative to `base` (the command
/// line's URL); otherwise the first request's URL is the base. Returns
/// the base and the requests, headers in file order.
pub fn load_file(path: &Path, base: Option<&Url>) -> Result<(Url, Vec<Entry>), FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Read(path.to_path_buf(), e))?;
    let file: File = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| {
            let upto = &text.as_bytes()[..s.start.min(text.len())];
            upto.iter().filter(|&&b| b == b'\n').count() + 1
        });
        FileError::Toml(
            path.to_path_buf(),
            line,
            e.message().trim().replace('\n', " "),
        )
    })?;
    if file.request.is_empty() {
        return Err(FileError::Empty(path.to_path_buf()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut base = base.cloned();
    let mut entries: Vec<Entry> = Vec::with_capacity(file.request.len());
    for r in file.request {
        let call = r.grpc.as_deref().map(Method::parse);
        let name = match (&r.name, &call, &r.url) {
            (Some(n), _, _) => n.clone(),
            (None, Some(_), _) => r.grpc.clone().unwrap_or_default(),
            (None, None, Some(url)) => format!("{} {url}", r.method.as_deref().unwrap_or("GET")),
            (None, None, None) => {
                return Err(FileError::NoUrl(format!("request {}", entries.len() + 1)));
            }
        };
        let call = call
            .transpose()
            .map_err(|e| FileError::Grpc(name.clone(), e))?;
        if call.is_some() && r.method.is_some() {
            return Err(FileError::GrpcMethod(name));
        }
        let target = match r.url.as_deref() {
            None if call.is_none() => return Err(FileError::NoUrl(name)),
            None | Some("") if base.is_none() => return Err(FileError::NoBase(name)),
            None => "/".into(),
            Some(url) if url.starts_with('/') => {
                if base.is_none() {
                    return Err(FileError::NoBase(name));
                }
                url.to_string()
            }
            Some(raw) => {
                let url = Url::parse(raw).map_err(|e| FileError::Url(name.clone(), e))?;
                match &base {
                    Some(b) if b.origin() != url.origin() => {
                        return Err(FileError::Host(name, url.origin(), b.origin()));
                    }
                    Some(_) => {}
                    None => base = Some(url.clone()),
                }
                url.target
            }
        };
        let target = match &call {
            Some(_) if target != "/" => return Err(FileError::GrpcPath(name, target)),
            Some(m) => m.path(),
            None => target,
        };
        let host = base.as_ref().map(Url::host_header).unwrap_or_default();
        let weight = r.weight.unwrap_or(1);
        if weight == 0 {
            return Err(FileError::Weight(name));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(FileError::Duplicate(name));
        }
        let mut spec = RequestSpec::get(&host, &target);
        let default = if call.is_some() { "POST" } else { "GET" };
        spec.method = r.method.unwrap_or_else(|| default.into());
        for h in &r.headers {
            spec.headers.push(
                RequestSpec::parse_header(h).map_err(|e| FileError::Header(name.clone(), e))?,
            );
        }
        spec.body = match (r.body, r.body_file) {
            (Some(_), Some(_)) => return Err(FileError::BodyAndFile(name)),
            (Some(b), None) => b.into_bytes(),
            (None, Some(f)) => {
                let f = dir.join(f);
                let bytes = std::fs::read(&f)
                    .map_err(|e| FileError::BodyFile(name.clone(), f.clone(), e))?;
                if call.is_some() && crate::grpc::frame::is_raw_file(&f) {
                    // Protobuf bytes: sent as they are, framed.
                    crate::grpc::frame::body_of(&bytes)
                } else {
                    bytes
                }
            }
            (None, None) => Vec::new(),
        };
        entries.push(Entry {
            name,
            weight,
            spec,
            grpc: call,
        });
    }
    // Every request either found a base or set it.
    let base = base.ok_or_else(|| FileError::Empty(path.to_path_buf()))?;
    Ok((base, entries))
}
