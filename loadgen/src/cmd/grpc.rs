//! `--grpc`: the flags of a gRPC run turned into the one request it sends
//! and what the run counts. The message rules are `loadgen::grpc`'s.

use std::path::{Path, PathBuf};

use loadgen::grpc::{self, GrpcRun};
use loadgen::http::RequestSpec;
use loadgen::url::Url;

use super::cli::RunArgs;

#[derive(Debug, thiserror::Error)]
pub enum GrpcSetupError {
    #[error("{0}")]
    Method(String),
    #[error("--grpc with --scenario is not supported: run one method per loadgen")]
    Scenario,
    #[error("--grpc calls are POSTs: drop -m/--method")]
    MethodFlag,
    #[error(
        "--grpc names the path (/SERVICE/METHOD): give the URL without one, e.g. http://127.0.0.1:50051 (got path {0:?})"
    )]
    Path(String),
    #[error("cannot read --body-file {0}: {1}")]
    BodyFile(PathBuf, std::io::Error),
    #[error(
        "--grpc: a JSON message needs the method's schema, which this build cannot read yet: give --body-file FILE.bin holding the message's protobuf bytes"
    )]
    NoSchema,
}

/// The call's request: `POST /SERVICE/METHOD`, gRPC's headers, and the
/// framed message as its body.
pub fn request(args: &RunArgs, call: &str, url: &Url) -> Result<RequestSpec, GrpcSetupError> {
    let (service, method) = grpc::split_method(call).map_err(GrpcSetupError::Method)?;
    if args.method.is_some() {
        return Err(GrpcSetupError::MethodFlag);
    }
    if url.target != "/" {
        return Err(GrpcSetupError::Path(url.target.clone()));
    }
    let mut spec = RequestSpec::get(&url.host_header(), &format!("/{service}/{method}"));
    spec.method = "POST".into();
    spec.headers = vec![
        ("content-type".into(), grpc::CONTENT_TYPE.into()),
        ("te".into(), "trailers".into()),
        ("grpc-timeout".into(), grpc::timeout_header(args.timeout)),
    ];
    spec.body = match (&args.body, &args.body_file) {
        (None, None) => grpc::frame::body_of(&[]),
        (None, Some(path)) if is_raw(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| GrpcSetupError::BodyFile(path.clone(), e))?;
            grpc::frame::body_of(&bytes)
        }
        _ => return Err(GrpcSetupError::NoSchema),
    };
    Ok(spec)
}

/// A body file of protobuf bytes, sent as they are (framed unless they
/// already are).
fn is_raw(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bin") || e.eq_ignore_ascii_case("pb"))
}

/// What the run calls and which statuses it expects.
pub fn run(call: &str, expect: Vec<u8>) -> Result<GrpcRun, GrpcSetupError> {
    let (service, method) = grpc::split_method(call).map_err(GrpcSetupError::Method)?;
    Ok(GrpcRun {
        service: service.into(),
        method: method.into(),
        expect,
    })
}
