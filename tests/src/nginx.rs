//! A throwaway nginx (Debian's package) with its own config, pinned to one
//! CPU, on a free loopback port: HTTP/1.1 or HTTP/2 (h2c with prior
//! knowledge, or ALPN h2 over TLS), with a stub_status listener of its own
//! so tests can compare their counts with the server's.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    pub port: u16,
    /// A second, plain HTTP/1.1 listener that serves only `/status`
    /// (stub_status), whatever the main one speaks.
    status_port: u16,
    /// stub_status's (accepts, requests) once nginx was ready: the probes
    /// that saw it listening are not the test's.
    baseline: (u64, u64),
    /// Status requests made since: stub_status counts them too.
    status_queries: AtomicU64,
    access_log: bool,
    dir: PathBuf,
}

pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// nginx speaking TLS: its certificate and key, and optionally a CA whose
/// client certificates it requires.
#[derive(Clone, Copy)]
pub struct NginxTls<'a> {
    pub cert: &'a std::path::Path,
    pub key: &'a std::path::Path,
    pub client_ca: Option<&'a std::path::Path>,
}

/// Everything a test may choose about the server. `Default` is the plain
/// HTTP/1.1 server of [`Nginx::start`] on CPU 0.
#[derive(Clone, Copy, Default)]
pub struct NginxOptions<'a> {
    /// The CPU its one worker is pinned to.
    pub cpu: usize,
    pub tls: Option<NginxTls<'a>>,
    /// HTTP/2 (`listen … http2`). Without TLS this is h2c with prior
    /// knowledge only: nginx 1.22 then answers no HTTP/1.1 on that port.
    /// With TLS, ALPN offers h2 and http/1.1.
    pub http2: bool,
    /// `keepalive_requests`: after this many requests on a connection nginx
    /// closes it (HTTP/1.1) or sends GOAWAY (HTTP/2). None: no limit.
    pub keepalive_requests: Option<u64>,
    /// `http2_max_concurrent_streams` (nginx's default is 128); streams
    /// above it are refused with RST_STREAM(REFUSED_STREAM).
    pub max_concurrent_streams: Option<u32>,
    /// An access log ([`Nginx::access_log`]): costs the worker a write per
    /// request, so load comparisons leave it off.
    pub access_log: bool,
    /// Listen on a Unix socket ([`Nginx::socket`]) too, beside the port,
    /// speaking what the port speaks.
    pub unix_socket: bool,
}

/// The access log's format: one line per request, fields separated by
/// single spaces (none of them can contain one).
const LOG_FORMAT: &str =
    "$server_protocol $status $request_method $uri $connection $connection_requests";

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    /// `HTTP/2.0`, `HTTP/1.1`.
    pub protocol: String,
    pub status: u16,
    pub method: String,
    pub path: String,
    /// nginx's serial number of the connection.
    pub connection: u64,
    /// The request's number on its connection, from 1.
    pub connection_request: u64,
}

impl Nginx {
    /// Starts nginx with one worker pinned to `cpu`, answering every path
    /// with a small fixed body, keep-alive without a request limit.
    pub fn start(cpu: usize) -> Result<Nginx, String> {
        Self::start_with(&NginxOptions {
            cpu,
            ..NginxOptions::default()
        })
    }

    /// The same over TLS 1.2 and 1.3, with session resumption (tickets and
    /// a session cache).
    pub fn start_tls(cpu: usize, tls: &NginxTls<'_>) -> Result<Nginx, String> {
        Self::start_with(&NginxOptions {
            cpu,
            tls: Some(*tls),
            ..NginxOptions::default()
        })
    }

    pub fn start_with(o: &NginxOptions<'_>) -> Result<Nginx, String> {
        let bin = find_nginx().ok_or("nginx not found: apt-get install nginx-light")?;
        let e = |what: &str, err: std::io::Error| format!("{what}: {err}");
        let port = free_port().map_err(|err| e("free port", err))?;
        let status_port = free_port().map_err(|err| e("free port", err))?;
        let dir = std::env::temp_dir().join(format!("loadgen-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).map_err(|err| e("temp dir", err))?;
        std::fs::write(dir.join("nginx.conf"), config(o, &dir, port, status_port))
            .map_err(|err| e("nginx.conf", err))?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| e("cannot start nginx", err))?;
        let socket = o.unix_socket.then(|| dir.join("nginx.sock"));
        let mut n = Nginx {
            child,
            port,
            status_port,
            baseline: (0, 0),
            status_queries: AtomicU64::new(0),
            access_log: o.access_log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        for p in [port, status_port] {
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                if let Ok(Some(status)) = n.child.try_wait() {
                    let log =
                        std::fs::read_to_string(n.dir.join("logs/error.log")).unwrap_or_default();
                    return Err(format!("nginx exited ({status}): {log}"));
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "nginx did not start listening on port {p} within 5 s"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // nginx binds every listener before it serves any.
        if let Some(s) = &socket
            && std::os::unix::net::UnixStream::connect(s).is_err()
        {
            return Err(format!("nginx is not listening on {}", s.display()));
        }
        n.baseline = n.stub_status();
        Ok(n)
    }
}

fn config(o: &NginxOptions<'_>, dir: &std::path::Path, port: u16, status_port: u16) -> String {
    let mask: String = {
        let mut m = vec!['0'; o.cpu + 1];
        m[0] = '1';
        m.into_iter().collect()
    };
    let user = if is_root() { "user root;\n" } else { "" };
    let ssl = if o.tls.is_some() { " ssl" } else { "" };
    let http2 = if o.http2 { " http2" } else { "" };
    let ssl_conf = o.tls.map_or(String::new(), |t| {
        format!(
            "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n{}",
            t.cert.display(),
            t.key.display(),
            t.client_ca.map_or(String::new(), |ca| format!(
                "    ssl_client_certificate {};\n    ssl_verify_client on;\n",
                ca.display()
            ))
        )
    });
    let streams = o.max_concurrent_streams.map_or(String::new(), |n| {
        format!("    http2_max_concurrent_streams {n};\n")
    });
    let unix_listen = if o.unix_socket {
        format!(
            "    listen unix:{}/nginx.sock{ssl}{http2};\n",
            dir.display()
        )
    } else {
        String::new()
    };
    let access_log = if o.access_log {
        format!(
            "    access_log {}/logs/access.log counted;\n",
            dir.display()
        )
    } else {
        String::new()
    };
    format!(
        "{user}worker_processes 1;\nworker_cpu_affinity {mask};\ndaemon off;\nmaster_process on;\n\
         error_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  log_format counted '{LOG_FORMAT}';\n\
           keepalive_requests {keepalive};\n  keepalive_timeout 300s;\n\
           client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port}{ssl}{http2} reuseport;\n{unix_listen}{ssl_conf}{streams}{access_log}\
             location / {{ default_type text/plain; return 200 \"Hello from nginx\\n\"; }}\n  }}\n\
           server {{\n    listen 127.0.0.1:{status_port};\n    location = /status {{ stub_status; }}\n  }}\n}}\n",
        d = dir.display(),
        keepalive = o.keepalive_requests.unwrap_or(1_000_000_000),
    )
}

/// nginx's own counters (stub_status), less the status requests and
/// connections that read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NginxCounts {
    /// Requests nginx read (a stream refused for its concurrency limit, or
    /// above a GOAWAY's last stream id, is not one).
    pub requests: u64,
    /// Connections accepted.
    pub connections: u64,
}

impl Nginx {
    /// The Unix socket it listens on ([`NginxOptions::unix_socket`]).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("nginx.sock")
    }

    /// The server's own counts since it started (all workers).
    pub fn counts(&self) -> NginxCounts {
        // This query is itself one request on one connection.
        let queries = self.status_queries.fetch_add(1, Ordering::SeqCst) + 1;
        let (accepts, requests) = self.stub_status();
        NginxCounts {
            requests: requests - self.baseline.1 - queries,
            connections: accepts - self.baseline.0 - queries,
        }
    }

    /// stub_status's accepted connections and requests, this one included.
    fn stub_status(&self) -> (u64, u64) {
        let body = crate::http_get(self.status_port, "/status");
        // "Active connections: 1 \nserver accepts handled requests\n 7 7 9 \n…"
        let numbers: Vec<u64> = body
            .lines()
            .nth(2)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let [accepts, _handled, requests] = numbers[..] else {
            panic!("unexpected stub_status page: {body:?}");
        };
        (accepts, requests)
    }

    /// The access log so far ([`NginxOptions::access_log`]). nginx writes a
    /// line when a request is finished, which can be just after the client
    /// has its response: this waits (up to 2 s) until there are as many
    /// lines as [`Nginx::counts`] has requests.
    pub fn access_log(&self) -> Vec<AccessLine> {
        assert!(self.access_log, "nginx was started without access_log");
        let want = self.counts().requests as usize;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let text =
                std::fs::read_to_string(self.dir.join("logs/access.log")).unwrap_or_default();
            let lines: Vec<AccessLine> = text.lines().filter_map(parse_access_line).collect();
            if lines.len() >= want || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// nginx's error log so far (warnings and worse).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }
}

fn parse_access_line(line: &str) -> Option<AccessLine> {
    let f: Vec<&str> = line.split(' ').collect();
    let [
        protocol,
        status,
        method,
        path,
        connection,
        connection_request,
    ] = f[..]
    else {
        return None;
    };
    Some(AccessLine {
        protocol: protocol.to_string(),
        status: status.parse().ok()?,
        method: method.to_string(),
        path: path.to_string(),
        connection: connection.parse().ok()?,
        connection_request: connection_request.parse().ok()?,
    })
}

impl Nginx {
    /// The worker processes (children of the master).
    pub fn workers(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut out: Vec<u32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        let (_, rest) = s.rsplit_once(')')?;
                        rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                    })
                    == Some(master)
            })
            .collect();
        out.sort_unstable();
        out
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master: it stops its workers. SIGKILL would orphan
        // them, and they would keep eating CPU under later tests (seen
        // here: workers still busy minutes after a comparison).
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
