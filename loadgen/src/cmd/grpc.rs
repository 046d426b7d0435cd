//! `--grpc`: the flags of a gRPC run turned into the one request it sends
//! and what the run counts. The schema, message and reflection rules are
//! `loadgen::grpc`'s; this file reads the files and opens the connection
//! reflection needs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use loadgen::grpc::{self, GrpcError, GrpcRun, MessageType, reflection, schema};
use loadgen::http::RequestSpec;
use loadgen::peer::Peer;
use loadgen::scenario::{ConnGen, Scenario, ShardGen};
use loadgen::tls::TlsSettings;
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
    #[error("-b/--body-file: {0}")]
    Message(GrpcError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Where the server is, for reflection.
pub struct Reach<'a> {
    pub peer: &'a Peer,
    pub tls: Option<&'a TlsSettings>,
    pub timeout: Duration,
}

/// The call's request (`POST /SERVICE/METHOD`, gRPC's headers, the
/// framed message as its body when it never changes) and, for a JSON
/// template, the message type each rendering is encoded with.
pub fn request(
    args: &RunArgs,
    call: &str,
    url: &Url,
    metadata: &[(String, String)],
    reach: &Reach<'_>,
) -> Result<(RequestSpec, Option<Arc<MessageType>>), GrpcSetupError> {
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
    let json = match (&args.body, &args.body_file) {
        (Some(b), _) => Some(b.clone().into_bytes()),
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).map_err(|e| GrpcSetupError::BodyFile(path.clone(), e))?;
            if is_raw(path) {
                check_method(args, service, method)?;
                spec.body = grpc::frame::body_of(&bytes);
                return Ok((spec, None));
            }
            Some(bytes)
        }
        (None, None) => None,
    };
    let Some(json) = json else {
        // An empty message needs no schema; one given is still checked.
        check_method(args, service, method)?;
        spec.body = grpc::frame::body_of(&[]);
        return Ok((spec, None));
    };
    let pool = match pool(args)? {
        Some(p) => p,
        None => reflect(service, url, metadata, reach)?,
    };
    let input = MessageType::new(schema::method(&pool, service, method)?.input());
    if json.windows(2).any(|w| w == b"{{") {
        // Templated: rendered per call, encoded by the sender.
        spec.body = json;
        return Ok((spec, Some(Arc::new(input))));
    }
    input
        .encode(&json, &mut spec.body)
        .map_err(GrpcSetupError::Message)?;
    Ok((spec, None))
}

/// The schema the flags give, if any.
fn pool(args: &RunArgs) -> Result<Option<prost_reflect::DescriptorPool>, GrpcError> {
    if let Some(p) = &args.protoset {
        return schema::protoset(p).map(Some);
    }
    if !args.proto.is_empty() {
        return schema::compile(&args.proto, &args.import_path).map(Some);
    }
    Ok(None)
}

/// With a schema given, the method must be in it (whatever the body).
fn check_method(args: &RunArgs, service: &str, method: &str) -> Result<(), GrpcError> {
    if let Some(pool) = pool(args)? {
        schema::method(&pool, service, method)?;
    }
    Ok(())
}

/// Anything a reflection client can talk through.
trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// The server's reflection service, asked for `service`'s files.
fn reflect(
    service: &str,
    url: &Url,
    metadata: &[(String, String)],
    reach: &Reach<'_>,
) -> Result<prost_reflect::DescriptorPool, GrpcError> {
    let io = connect(reach).map_err(|e| GrpcError::Reflection(format!("connecting: {e}")))?;
    let scheme = if url.tls { "https" } else { "http" };
    reflection::Client::new(io, scheme, &url.host_header(), metadata).pool_for(service)
}

fn connect(reach: &Reach<'_>) -> std::io::Result<Box<dyn Io>> {
    let t = Some(reach.timeout.max(Duration::from_secs(1)));
    let io: Box<dyn Io> = match reach.peer {
        Peer::Tcp(a) => {
            let s = std::net::TcpStream::connect_timeout(a, reach.timeout)?;
            s.set_read_timeout(t)?;
            s.set_write_timeout(t)?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
        Peer::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p)?;
            s.set_read_timeout(t)?;
            s.set_write_timeout(t)?;
            Box::new(s)
        }
    };
    let Some(tls) = reach.tls else {
        return Ok(io);
    };
    let conn = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
        .map_err(std::io::Error::other)?;
    Ok(Box::new(rustls::StreamOwned::new(conn, io)))
}

/// A body file of protobuf bytes, sent as they are (framed unless they
/// already are).
fn is_raw(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bin") || e.eq_ignore_ascii_case("pb"))
}

/// Gives the compiled scenario's call its message type, and checks that
/// the first rendering (the first feed rows, the first `{{seq}}`) is a
/// message of that type: a bad field or value is found before the run.
pub fn attach(scenario: &mut Scenario, message: Arc<MessageType>) -> Result<(), GrpcSetupError> {
    scenario.requests[0].grpc = Some(message.clone());
    let mut sg = ShardGen::new(scenario, 0, 1);
    let mut cg = ConnGen::new(scenario, 0, 0);
    let mut out = Vec::new();
    scenario.render(&mut sg, &mut cg, 0, &mut out);
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&out[..], |i| &out[i + 4..]);
    let mut framed = Vec::new();
    message
        .encode(body, &mut framed)
        .map_err(GrpcSetupError::Message)
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
