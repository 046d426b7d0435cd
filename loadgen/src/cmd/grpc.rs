//! `--grpc`: the flags of a gRPC run turned into the one request it sends
//! and what the run counts. The schema, message and reflection rules are
//! `loadgen::grpc`'s; this file reads the files and opens the connection
//! reflection needs.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loadgen::grpc::{self, GrpcError, MessageType, Method, reflection, schema};
use loadgen::http::RequestSpec;
use loadgen::peer::Peer;
use loadgen::scenario::{ConnGen, Entry, Scenario, ShardGen};
use loadgen::tls::TlsSettings;
use loadgen::url::Url;
use prost_reflect::DescriptorPool;

use super::cli::RunArgs;

#[derive(Debug, thiserror::Error)]
pub enum GrpcSetupError {
    #[error("--grpc {0}")]
    Method(String),
    #[error(
        "--grpc is one call for the whole run: with --scenario, make requests gRPC calls in the file (grpc = \"SERVICE/METHOD\")"
    )]
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
    #[error("body: {0}")]
    Body(GrpcError),
    #[error("scenario request {0:?}: {1}")]
    Step(String, Box<GrpcSetupError>),
    #[error(
        "--proto and --protoset give the schema of gRPC calls: add --grpc SERVICE/METHOD, or grpc = \"SERVICE/METHOD\" requests to the --scenario file"
    )]
    SchemaWithoutCalls,
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Where the server is, for reflection.
pub struct Reach<'a> {
    pub peer: &'a Peer,
    pub tls: Option<&'a TlsSettings>,
    pub timeout: Duration,
}

/// `--grpc SERVICE/METHOD` with `-b`/`--body-file`: the run's one call,
/// its message as given (JSON, or framed protobuf bytes from a `.bin`
/// file), made a call by [`prepare`].
pub fn single(args: &RunArgs, call: &str, url: &Url) -> Result<Entry, GrpcSetupError> {
    let method = Method::parse(call).map_err(GrpcSetupError::Method)?;
    if args.method.is_some() {
        return Err(GrpcSetupError::MethodFlag);
    }
    if url.target != "/" {
        return Err(GrpcSetupError::Path(url.target.clone()));
    }
    let mut spec = RequestSpec::get(&url.host_header(), &method.path());
    spec.body = match (&args.body, &args.body_file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).map_err(|e| GrpcSetupError::BodyFile(path.clone(), e))?;
            if grpc::frame::is_raw_file(path) {
                grpc::frame::body_of(&bytes)
            } else {
                bytes
            }
        }
        (None, None) => Vec::new(),
    };
    Ok(Entry {
        name: format!("POST {}", method.path()),
        weight: 1,
        spec,
        grpc: Some(method),
    })
}

/// The schema: compiled from the flags once, or asked of the server's
/// reflection once per service.
struct Schemas<'a> {
    args: &'a RunArgs,
    flags: Option<Option<DescriptorPool>>,
    reflected: Vec<(String, DescriptorPool)>,
}

impl Schemas<'_> {
    /// The schema the flags give, if any.
    fn given(&mut self) -> Result<Option<&DescriptorPool>, GrpcError> {
        if self.flags.is_none() {
            let args = self.args;
            let pool = if let Some(p) = &args.protoset {
                Some(schema::protoset(p)?)
            } else if !args.proto.is_empty() {
                Some(schema::compile(&args.proto, &args.import_path)?)
            } else {
                None
            };
            self.flags = Some(pool);
        }
        Ok(self.flags.as_ref().and_then(Option::as_ref))
    }

    /// The schema that defines `service`: the flags', else the server's.
    fn for_service(
        &mut self,
        service: &str,
        url: &Url,
        metadata: &[(String, String)],
        reach: &Reach<'_>,
    ) -> Result<&DescriptorPool, GrpcError> {
        self.given()?;
        if let Some(Some(pool)) = &self.flags {
            return Ok(pool);
        }
        let i = match self.reflected.iter().position(|(s, _)| s == service) {
            Some(i) => i,
            None => {
                let pool = reflect(service, url, metadata, reach)?;
                self.reflected.push((service.to_string(), pool));
                self.reflected.len() - 1
            }
        };
        Ok(&self.reflected[i].1)
    }
}

/// Makes each gRPC entry a call: `POST /SERVICE/METHOD` with gRPC's
/// headers, and its message as protobuf bytes. A JSON message without
/// placeholders is encoded here, once; a templated one stays JSON and its
/// type is returned (by entry) for the sender to encode each rendering
/// with. The schema is read once; a method, field or value that does not
/// fit is an error naming the request (in a scenario).
pub fn prepare(
    args: &RunArgs,
    entries: &mut [Entry],
    url: &Url,
    metadata: &[(String, String)],
    reach: &Reach<'_>,
) -> Result<Vec<Option<Arc<MessageType>>>, GrpcSetupError> {
    let mut schemas = Schemas {
        args,
        flags: None,
        reflected: Vec::new(),
    };
    let named = args.scenario.is_some();
    let mut messages = Vec::with_capacity(entries.len());
    for e in entries.iter_mut() {
        let Some(method) = e.grpc.clone() else {
            messages.push(None);
            continue;
        };
        let m = prepare_one(
            &mut e.spec,
            &method,
            &mut schemas,
            url,
            metadata,
            reach,
            named,
        )
        .map_err(|err| match named {
            true => GrpcSetupError::Step(e.name.clone(), Box::new(err)),
            false => err,
        })?;
        messages.push(m);
    }
    Ok(messages)
}

fn prepare_one(
    spec: &mut RequestSpec,
    m: &Method,
    schemas: &mut Schemas<'_>,
    url: &Url,
    metadata: &[(String, String)],
    reach: &Reach<'_>,
    named: bool,
) -> Result<Option<Arc<MessageType>>, GrpcSetupError> {
    spec.method = "POST".into();
    spec.target = m.path();
    let mut headers = vec![
        ("content-type".into(), grpc::CONTENT_TYPE.into()),
        ("te".into(), "trailers".into()),
        (
            "grpc-timeout".into(),
            grpc::timeout_header(schemas.args.timeout),
        ),
    ];
    headers.append(&mut spec.headers);
    spec.headers = headers;
    let raw = spec.body.is_empty() || grpc::frame::is_framed(&spec.body);
    if raw {
        // Bytes as they are (an empty message needs no schema); a schema
        // given must still have the method.
        if let Some(pool) = schemas.given()? {
            schema::method(pool, &m.service, &m.method)?;
        }
        spec.body = grpc::frame::body_of(&spec.body);
        return Ok(None);
    }
    let pool = schemas.for_service(&m.service, url, metadata, reach)?;
    let input = MessageType::new(schema::method(pool, &m.service, &m.method)?.input());
    if spec.body.windows(2).any(|w| w == b"{{") {
        // Templated: rendered per call, encoded by the sender.
        return Ok(Some(Arc::new(input)));
    }
    let json = std::mem::take(&mut spec.body);
    input
        .encode(&json, &mut spec.body)
        .map_err(|e| match named {
            true => GrpcSetupError::Body(e),
            false => GrpcSetupError::Message(e),
        })?;
    Ok(None)
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

/// Gives each compiled call with a templated message its type
/// (`messages`, by request), and checks that its first rendering (the
/// first feed rows, the first `{{seq}}`) is a message of that type: a bad
/// field or value is found before the run.
pub fn attach(
    scenario: &mut Scenario,
    messages: Vec<Option<Arc<MessageType>>>,
) -> Result<(), GrpcSetupError> {
    for (i, message) in messages.into_iter().enumerate() {
        let Some(message) = message else { continue };
        scenario.requests[i].message = Some(message.clone());
        let mut sg = ShardGen::new(scenario, 0, 1);
        let mut cg = ConnGen::new(scenario, 0, 0);
        let mut out = Vec::new();
        scenario.render_request(i, &mut sg, &mut cg, 0, &mut out);
        let body = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(&out[..], |i| &out[i + 4..]);
        let mut framed = Vec::new();
        if let Err(e) = message.encode(body, &mut framed) {
            return Err(match scenario.named {
                true => GrpcSetupError::Step(
                    scenario.requests[i].name.clone(),
                    Box::new(GrpcSetupError::Body(e)),
                ),
                false => GrpcSetupError::Message(e),
            });
        }
    }
    Ok(())
}
