//! A gRPC server for the `--grpc` tests: Python's grpcio with generic
//! handlers (no generated code), so its count of calls is the server's
//! own. Service `loadgen.test.Echo`: `Say` answers OK with the request
//! message, `Fail` fails every call with INVALID_ARGUMENT. Each message is
//! counted by its bytes. With a descriptor set it serves reflection too,
//! as `grpc.reflection.v1alpha` (grpcio-reflection's) and/or
//! `grpc.reflection.v1` (the same messages on the newer name).
//!
//! Needs `pip install grpcio grpcio-reflection` (.ci/run does it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::python::python;

const SERVER: &str = include_str!("grpc_server.py");

/// How to start the server.
#[derive(Default)]
pub struct GrpcOptions<'a> {
    /// TLS with this certificate and key (PEM); h2c without.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// A FileDescriptorSet to serve reflection from.
    pub protoset: Option<&'a Path>,
    /// Reflection versions served: `v1`, `v1alpha` or both (`v1,v1alpha`).
    pub reflection: &'a str,
}

pub struct GrpcServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub port: u16,
}

/// The server's own count.
#[derive(Debug, Default)]
pub struct Counts {
    /// Calls by method name.
    pub calls: BTreeMap<String, u64>,
    /// Calls by request message (hex of its bytes).
    pub messages: BTreeMap<String, u64>,
}

impl GrpcServer {
    /// None (after a loud SKIP) when python3 or grpcio is missing.
    pub fn start(o: &GrpcOptions<'_>) -> Option<GrpcServer> {
        let (tls, cert, key) = match o.tls {
            Some((c, k)) => ("tls", c.to_str()?, k.to_str()?),
            None => ("plain", "-", "-"),
        };
        let protoset = o.protoset.map_or(Some("-"), |p| p.to_str())?;
        let spawned = Command::new(python())
            .args(["-c", SERVER, tls, cert, key, protoset, o.reflection])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = spawned else {
            crate::skip("python3 is not installed (apt-get install python3)");
            return None;
        };
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Ok(port) = line.trim().parse() else {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take()?, &mut err);
            let _ = child.kill();
            let _ = child.wait();
            crate::skip(&format!(
                "the Python gRPC server did not start (pip install grpcio grpcio-reflection): {}",
                err.lines().last().unwrap_or("")
            ));
            return None;
        };
        Some(GrpcServer {
            child,
            stdin,
            stdout,
            port,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server counted so far.
    pub fn counts(&mut self) -> Counts {
        writeln!(self.stdin, "counts").expect("server stdin");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("server stdout");
        let v: serde_json::Value = serde_json::from_str(&line).expect("counts JSON");
        let map = |k: &str| {
            v[k].as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Counts {
            calls: map("calls"),
            messages: map("messages"),
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
