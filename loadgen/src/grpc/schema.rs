//! Where a method's request type comes from: `.proto` files compiled in
//! process (protox, no protoc), a FileDescriptorSet (`--protoset`), or
//! the server's reflection service ([`super::reflection`]). All end as a
//! descriptor pool, and the method is looked up in it.

use std::path::{Path, PathBuf};

use miette::Diagnostic;
use prost_reflect::{DescriptorPool, MethodDescriptor};

use super::GrpcError;

/// Compiles `files`, imports looked up in `includes` (each file's own
/// directory when none are given). A file that does not compile is one
/// line: `file:line: what is wrong`.
pub fn compile(files: &[PathBuf], includes: &[PathBuf]) -> Result<DescriptorPool, GrpcError> {
    let includes: Vec<PathBuf> = if includes.is_empty() {
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .map(|f| match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.dedup();
        dirs
    } else {
        includes.to_vec()
    };
    let set = protox::compile(files, &includes).map_err(|e| GrpcError::Proto(where_(&e)))?;
    DescriptorPool::from_file_descriptor_set(set).map_err(|e| GrpcError::Proto(e.to_string()))
}

/// `file:line: message` of a protox error, as far as it knows them.
fn where_(e: &protox::Error) -> String {
    let line = e.labels().and_then(|mut l| l.next()).and_then(|label| {
        let src = e.source_code()?;
        let span = src.read_span(label.inner(), 0, 0).ok()?;
        Some(span.line() + 1)
    });
    let cause = match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    match (e.file(), line) {
        (Some(f), Some(l)) => format!("{f}:{l}: {cause}"),
        (Some(f), None) => format!("{f}: {cause}"),
        _ => cause,
    }
}

/// A FileDescriptorSet as protoc writes it (`--descriptor_set_out`, with
/// `--include_imports`).
pub fn protoset(path: &Path) -> Result<DescriptorPool, GrpcError> {
    let bytes =
        std::fs::read(path).map_err(|e| GrpcError::Protoset(path.to_path_buf(), e.to_string()))?;
    DescriptorPool::decode(bytes.as_slice())
        .map_err(|e| GrpcError::Protoset(path.to_path_buf(), e.to_string()))
}

/// `service`'s `method` in `pool`, a unary one; else an error that lists
/// what there is.
pub fn method(
    pool: &DescriptorPool,
    service: &str,
    method: &str,
) -> Result<MethodDescriptor, GrpcError> {
    let Some(svc) = pool.get_service_by_name(service) else {
        let mut names: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        names.sort();
        return Err(GrpcError::UnknownService {
            service: service.into(),
            known: list(&names),
        });
    };
    let Some(m) = svc.methods().find(|m| m.name() == method) else {
        let names: Vec<String> = svc.methods().map(|m| m.name().to_string()).collect();
        return Err(GrpcError::UnknownMethod {
            service: service.into(),
            method: method.into(),
            known: list(&names),
        });
    };
    if m.is_client_streaming() || m.is_server_streaming() {
        return Err(GrpcError::Streaming(format!("{service}/{method}")));
    }
    Ok(m)
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
