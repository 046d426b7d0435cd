//! The server's reflection service (`grpc.reflection.v1`, else
//! `v1alpha`: the same messages under two names), asked for the file that
//! defines the service, and the files it imports, before the run. Its
//! messages are declared here with prost's derive; the exchange runs on
//! the sans-IO HTTP/2 connection over any blocking byte stream the caller
//! opened (TCP or a Unix socket, with TLS or without).

use std::io::{Read, Write};

use prost::Message as _;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;

use super::{GrpcError, frame, status};
use crate::http::h2::hpack::RequestFields;
use crate::http::h2::{Connection, Event, H2Stats, Head, Settings};

/// The two names of the service, newest first.
pub const SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[derive(Clone, PartialEq, prost::Message)]
struct ServerReflectionRequest {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(string, optional, tag = "3")]
    file_by_filename: Option<String>,
    #[prost(string, optional, tag = "4")]
    file_containing_symbol: Option<String>,
    #[prost(string, optional, tag = "7")]
    list_services: Option<String>,
}

/// The response's `oneof message_response`, as optional fields (the same
/// bytes on the wire).
#[derive(Clone, PartialEq, prost::Message)]
struct ServerReflectionResponse {
    #[prost(message, optional, tag = "4")]
    file_descriptor_response: Option<FileDescriptorResponse>,
    #[prost(message, optional, tag = "6")]
    list_services_response: Option<ListServiceResponse>,
    #[prost(message, optional, tag = "7")]
    error_response: Option<ErrorResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileDescriptorResponse {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file_descriptor_proto: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    service: Vec<ServiceResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ServiceResponse {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ErrorResponse {
    #[prost(int32, tag = "1")]
    error_code: i32,
    #[prost(string, tag = "2")]
    error_message: String,
}

/// What a reflection request asks.
enum Ask<'a> {
    Symbol(&'a str),
    File(&'a str),
    Services,
}

/// One HTTP/2 connection to the server, calling its reflection service.
pub struct Client<S> {
    io: S,
    conn: Connection,
    st: H2Stats,
    fields: RequestFields,
    /// `Host` and the caller's metadata (`-H`), as HTTP/1.1 header lines.
    headers: String,
    scheme: &'static str,
    /// Which of [`SERVICES`] answers (found by the first call).
    service: usize,
    buf: Vec<u8>,
}

impl<S: Read + Write> Client<S> {
    /// Starts HTTP/2 on `io` (connected, and through TLS with ALPN h2 on
    /// `https`). `headers` are `Name: value` lines sent with every call.
    pub fn new(io: S, scheme: &'static str, host: &str, metadata: &[(String, String)]) -> Self {
        let mut conn = Connection::new(Settings {
            streams: 1,
            stream_window: (1 << 24) - 1,
            conn_window: (1 << 24) - 1,
            max_header_list: 1 << 20,
        });
        conn.keep_bodies();
        let mut st = H2Stats::default();
        conn.start(&mut st);
        let mut headers = format!("Host: {host}\r\n");
        for (n, v) in metadata {
            headers.push_str(&format!("{n}: {v}\r\n"));
        }
        Client {
            io,
            conn,
            st,
            fields: RequestFields::new(),
            headers,
            scheme,
            service: 0,
            buf: vec![0; 64 * 1024],
        }
    }

    /// A pool with the file that defines `symbol` (a service's full name)
    /// and every file it imports. A server without the service gives
    /// [`GrpcError::UnknownService`] with the services it has.
    pub fn pool_for(&mut self, symbol: &str) -> Result<DescriptorPool, GrpcError> {
        let mut files: Vec<FileDescriptorProto> = Vec::new();
        let mut asked: Vec<String> = Vec::new();
        let first = match self.ask(Ask::Symbol(symbol)) {
            Ok(r) => r,
            Err(GrpcError::ReflectionRefused(why)) if why.contains("NOT_FOUND") => {
                return Err(self.unknown_service(symbol));
            }
            Err(e) => return Err(e),
        };
        let mut todo = vec![first];
        while let Some(r) = todo.pop() {
            if let Some(e) = r.error_response {
                if e.error_code == status::NOT_FOUND as i32 && files.is_empty() {
                    return Err(self.unknown_service(symbol));
                }
                return Err(GrpcError::ReflectionRefused(format!(
                    "{} {}",
                    status::name(e.error_code.clamp(0, 255) as u8),
                    e.error_message
                )));
            }
            let Some(fd) = r.file_descriptor_response else {
                return Err(GrpcError::ReflectionRefused(
                    "an answer without files".into(),
                ));
            };
            for bytes in fd.file_descriptor_proto {
                let f = FileDescriptorProto::decode(bytes.as_slice())
                    .map_err(|e| GrpcError::ReflectionRefused(format!("a bad file: {e}")))?;
                if !files.iter().any(|g| g.name == f.name) {
                    files.push(f);
                }
            }
            // Imports the server did not send with the file: asked by name.
            let missing: Vec<String> = files
                .iter()
                .flat_map(|f| f.dependency.iter())
                .filter(|d| !files.iter().any(|f| f.name() == d.as_str()))
                .filter(|d| !asked.contains(d))
                .cloned()
                .collect();
            for d in missing {
                asked.push(d.clone());
                todo.push(self.ask(Ask::File(&d))?);
            }
        }
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_protos(files)
            .map_err(|e| GrpcError::ReflectionRefused(format!("its files do not build: {e}")))?;
        Ok(pool)
    }

    /// The service is not there: the error lists those that are.
    fn unknown_service(&mut self, symbol: &str) -> GrpcError {
        let mut names: Vec<String> = match self.ask(Ask::Services) {
            Ok(r) => r
                .list_services_response
                .map(|l| l.service.into_iter().map(|s| s.name).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        names.retain(|n| !SERVICES.contains(&n.as_str()));
        names.sort();
        GrpcError::UnknownService {
            service: symbol.into(),
            known: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        }
    }

    /// One request on a stream of its own, half-closed at once; the
    /// server's one answer.
    fn ask(&mut self, ask: Ask<'_>) -> Result<ServerReflectionResponse, GrpcError> {
        let req = match ask {
            Ask::Symbol(s) => ServerReflectionRequest {
                file_containing_symbol: Some(s.into()),
                ..Default::default()
            },
            Ask::File(f) => ServerReflectionRequest {
                file_by_filename: Some(f.into()),
                ..Default::default()
            },
            Ask::Services => ServerReflectionRequest {
                list_services: Some(String::new()),
                ..Default::default()
            },
        };
        let body = frame::body_of(&req.encode_to_vec());
        loop {
            let path = format!("/{}/ServerReflectionInfo", SERVICES[self.service]);
            let (http, code, answer) = self.call(&path, &body)?;
            let code = status::of_response(http, code);
            if code == status::UNIMPLEMENTED && self.service + 1 < SERVICES.len() {
                self.service += 1;
                continue;
            }
            if code != status::OK {
                return Err(GrpcError::ReflectionRefused(format!(
                    "{} from {}",
                    status::name(code),
                    SERVICES[self.service]
                )));
            }
            let msg = answer
                .get(frame::PREFIX_LEN..)
                .filter(|_| frame::is_framed(&answer))
                .ok_or_else(|| GrpcError::ReflectionRefused("not one message".into()))?;
            return ServerReflectionResponse::decode(msg)
                .map_err(|e| GrpcError::ReflectionRefused(format!("a bad answer: {e}")));
        }
    }

    /// `POST path` with `body`; the HTTP status, `grpc-status` and the
    /// response body.
    fn call(&mut self, path: &str, body: &[u8]) -> Result<(u16, Option<u8>, Vec<u8>), GrpcError> {
        let head = format!(
            "POST {path} HTTP/1.1\r\n{}content-type: application/grpc\r\nte: trailers\r\n\r\n",
            self.headers
        );
        self.fields
            .from_http1(head.as_bytes(), self.scheme.as_bytes())
            .map_err(|e| GrpcError::Reflection(format!("a header HTTP/2 cannot carry: {e}")))?;
        let fields = &self.fields;
        self.conn
            .open_stream(0, Head::Fields(fields), body, &mut self.st)
            .map_err(|_| GrpcError::Reflection("no stream ids left".into()))?;
        let mut events = Vec::new();
        let mut out = Vec::new();
        loop {
            self.conn.take_output(&mut out);
            self.io
                .write_all(&out)
                .and_then(|()| self.io.flush())
                .map_err(|e| GrpcError::Reflection(e.to_string()))?;
            let n = self
                .io
                .read(&mut self.buf)
                .map_err(|e| GrpcError::Reflection(e.to_string()))?;
            if n == 0 {
                return Err(GrpcError::Reflection(
                    "the server closed the connection".into(),
                ));
            }
            events.clear();
            self.conn
                .read(&self.buf[..n], &mut events, &mut self.st)
                .map_err(|e| GrpcError::Reflection(e.to_string()))?;
            for e in &events {
                match *e {
                    Event::Complete { status, grpc, .. } => {
                        self.conn.take_output(&mut out);
                        let _ = self.io.write_all(&out);
                        return Ok((status, grpc, self.conn.take_body(0)));
                    }
                    Event::Reset { code, .. } => {
                        return Err(GrpcError::Reflection(format!("stream reset ({code})")));
                    }
                    Event::Malformed { .. } => {
                        return Err(GrpcError::Reflection("a malformed response".into()));
                    }
                    Event::Unprocessed { .. } => {
                        return Err(GrpcError::Reflection(
                            "the server refused the stream".into(),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}
