//! A second, independent HTTP/2 server: Go's net/http over TLS (HTTP/2 by
//! default through ALPN), from Debian's golang-go 1.19, standard library
//! only. The program is written out and built once per test process; the
//! binary is cached under `target/` by the hash of its source.
//!
//! Besides the TLS port it listens on a plain HTTP/1.1 port for `/stats`,
//! so reading its counts is not one of the requests it counts.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::pki::Pki;

const MAIN_GO: &str = r#"// Test server for loadgen: net/http over TLS, HTTP/2 through ALPN.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// h2Config mirrors net/http's bundled, unexported http2Server of Go 1.19
// field for field: Go 1.19's standard library has no public way to set
// MaxConcurrentStreams (net/http.Server.HTTP2 came in Go 1.24, and
// golang.org/x/net cannot be downloaded here). main() refuses to use it
// on any other Go version.
type h2Config struct {
	MaxHandlers                  int
	MaxConcurrentStreams         uint32
	MaxReadFrameSize             uint32
	PermitProhibitedCipherSuites bool
	IdleTimeout                  time.Duration
	MaxUploadBufferPerConnection int32
	MaxUploadBufferPerStream     int32
	NewWriteScheduler            func() interface{}
	CountError                   func(errType string)
	state                        unsafe.Pointer
}

//go:linkname configureHTTP2 net/http.http2ConfigureServer
func configureHTTP2(s *http.Server, conf *h2Config) error

var requests, h2Requests, connections, bodyBytes, trailersSent int64

const body = "Hello from Go\n"

func serve(w http.ResponseWriter, r *http.Request) {
	atomic.AddInt64(&requests, 1)
	if r.ProtoMajor == 2 {
		atomic.AddInt64(&h2Requests, 1)
	}
	n, _ := io.Copy(io.Discard, r.Body)
	atomic.AddInt64(&bodyBytes, n)
	w.Header().Set("Content-Type", "text/plain")
	if r.URL.Path == "/trailers" {
		// Announced, then set after the body: HTTP/2 sends them in a
		// HEADERS frame with END_STREAM after the DATA.
		w.Header().Set("Trailer", "X-Trailer, X-Body-Bytes")
		w.WriteHeader(200)
		io.WriteString(w, body)
		w.Header().Set("X-Trailer", "done")
		w.Header().Set("X-Body-Bytes", fmt.Sprint(n))
		atomic.AddInt64(&trailersSent, 1)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	io.WriteString(w, body)
}

func stats(w http.ResponseWriter, r *http.Request) {
	json.NewEncoder(w).Encode(map[string]int64{
		"requests":      atomic.LoadInt64(&requests),
		"h2_requests":   atomic.LoadInt64(&h2Requests),
		"connections":   atomic.LoadInt64(&connections),
		"body_bytes":    atomic.LoadInt64(&bodyBytes),
		"trailers_sent": atomic.LoadInt64(&trailersSent),
	})
}

func main() {
	cert := flag.String("cert", "", "certificate (PEM)")
	key := flag.String("key", "", "private key (PEM)")
	maxStreams := flag.Uint("max-concurrent-streams", 0, "SETTINGS_MAX_CONCURRENT_STREAMS (0: Go's default, 250)")
	flag.Parse()
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(serve),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}},
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				atomic.AddInt64(&connections, 1)
			}
		},
		ErrorLog: nil,
	}
	if *maxStreams > 0 {
		if !strings.HasPrefix(runtime.Version(), "go1.19") {
			fmt.Fprintf(os.Stderr, "-max-concurrent-streams relies on Go 1.19's internal layout; this is %s\n", runtime.Version())
			os.Exit(1)
		}
		if err := configureHTTP2(srv, &h2Config{MaxConcurrentStreams: uint32(*maxStreams)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	statsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(statsLn, http.HandlerFunc(stats))
	fmt.Printf("%d %d\n", ln.Addr().(*net.TCPAddr).Port, statsLn.Addr().(*net.TCPAddr).Port)
	// The test process holds our stdin: when it ends, so do we.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	err = srv.ServeTLS(ln, "", "")
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
"#;

/// Go 1.19 wants a body for a function declared without one unless the
/// package has an assembly file; an empty one is enough.
const LINKNAME_S: &str = "// Lets main.go declare go:linkname functions without a body.\n";

const GO_MOD: &str = "module loadgenh2\n\ngo 1.19\n";

/// The server's binary, built at most once per test process (and reused
/// across processes while the source is unchanged). Err says why not.
fn binary() -> Result<&'static PathBuf, &'static String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(build).as_ref()
}

fn build() -> Result<PathBuf, String> {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(format!("{MAIN_GO}{LINKNAME_S}{GO_MOD}").as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dir = crate::target_dir().join("loadgen-go");
    let bin = dir.join(format!("h2server-{hex}"));
    if bin.exists() {
        return Ok(bin);
    }
    // Each process builds in its own directory and renames the result
    // into place, so concurrent builds cannot see a half-written binary.
    let src = dir.join(format!("src-{hex}-{}", std::process::id()));
    std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    for (name, text) in [
        ("main.go", MAIN_GO),
        ("linkname.s", LINKNAME_S),
        ("go.mod", GO_MOD),
    ] {
        std::fs::write(src.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    let tmp = src.join("h2server");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(&src)
        // Everything local: no module downloads, the build cache under
        // target/ (CI's HOME may not be writable or set).
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0")
        .output()
        .map_err(|e| format!("go not found ({e}): apt-get install golang-go"))?;
    if !out.status.success() {
        return Err(format!(
            "go build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&tmp, &bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let _ = std::fs::remove_dir_all(&src);
    Ok(bin)
}

/// What a test may choose about the Go server.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoOptions {
    /// SETTINGS_MAX_CONCURRENT_STREAMS (Go's default is 250). Set through
    /// Go 1.19's internal http2 configuration (see main.go).
    pub max_concurrent_streams: Option<u32>,
    /// taskset the server to this CPU.
    pub cpu: Option<usize>,
}

/// The server's own counts (`/stats` on its plain port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoStats {
    /// Requests its handler ran for.
    pub requests: u64,
    /// Of those, the ones that came over HTTP/2.
    pub h2_requests: u64,
    /// TLS connections accepted.
    pub connections: u64,
    /// Request body bytes its handler read.
    pub body_bytes: u64,
    /// Responses to `/trailers` (each ends with a trailer HEADERS frame).
    pub trailers_sent: u64,
}

/// A running Go server. Every path answers 200 with `Hello from Go\n`
/// (14 bytes, with a content-length) after reading the request body;
/// `/trailers` answers the same body without a length, then the trailers
/// `x-trailer: done` and `x-body-bytes: N` (the request body's length).
pub struct GoServer {
    child: Child,
    pub port: u16,
    stats_port: u16,
}

impl GoServer {
    /// Builds (once) and starts the server with `pki`'s server
    /// certificate (valid for localhost and 127.0.0.1). None after a loud
    /// SKIP when Go is not installed.
    pub fn start(pki: &Pki, o: &GoOptions) -> Option<GoServer> {
        if !crate::have_cmd("go", &["version"]) {
            crate::skip("go is not installed (apt-get install golang-go)");
            return None;
        }
        let bin = binary().unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = match o.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("-cert")
            .arg(&pki.server_cert)
            .arg("-key")
            .arg(&pki.server_key);
        if let Some(n) = o.max_concurrent_streams {
            cmd.arg("-max-concurrent-streams").arg(n.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let ports: Vec<u16> = line
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let [port, stats_port] = ports[..] else {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait for the Go server");
            panic!(
                "the Go server did not print its ports ({line:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        Some(GoServer {
            child,
            port,
            stats_port,
        })
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stats(&self) -> GoStats {
        let body = crate::http_get(self.stats_port, "/stats");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("Go server stats {body:?}: {e}"));
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
        GoStats {
            requests: n("requests"),
            h2_requests: n("h2_requests"),
            connections: n("connections"),
            body_bytes: n("body_bytes"),
            trailers_sent: n("trailers_sent"),
        }
    }
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
