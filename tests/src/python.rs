//! A threaded Python HTTP server (`http.server.ThreadingHTTPServer`, one
//! thread per connection) whose handler sleeps a fixed time per request:
//! the off-CPU profiler's known answer. Debian's python3 is built without
//! frame pointers, so its stacks come from DWARF unwinding.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const SERVER: &str = r#"
import http.server, sys, time
SLEEP = float(sys.argv[1]) / 1000.0
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in two writes: without TCP_NODELAY the second
    # waits for a delayed ACK (40 ms) and the load measures that instead.
    disable_nagle_algorithm = True
    def do_GET(self):
        time.sleep(SLEEP)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

pub struct PyServer {
    child: Child,
    pub port: u16,
}

/// The python3 to run: `$LOADGEN_PYTHON`, else `python3` on PATH.
pub fn python() -> String {
    std::env::var("LOADGEN_PYTHON").unwrap_or_else(|_| "python3".into())
}

impl PyServer {
    /// Starts the server, sleeping `sleep_ms` per request, pinned to
    /// `cpu` if given. None (after a loud SKIP) without python3.
    pub fn start(sleep_ms: u32, cpu: Option<usize>) -> Option<PyServer> {
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", &c.to_string(), &python()]);
                t
            }
            None => Command::new(python()),
        };
        let spawned = cmd
            .args(["-c", SERVER, &sleep_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // A load that stops mid-request leaves broken pipes behind.
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = spawned else {
            crate::skip("python3 is not installed (apt-get install python3)");
            return None;
        };
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let Ok(port) = line.trim().parse() else {
            let _ = child.kill();
            let _ = child.wait();
            crate::skip(&format!("python3 did not start the server: {line:?}"));
            return None;
        };
        Some(PyServer { child, port })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
