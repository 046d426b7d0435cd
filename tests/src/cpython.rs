//! The CPythons on this machine and py-spy, the referee of the Python
//! frames in loadgen's profiles (`tests/tests/python_frames.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Every CPython 3 on the machine, by the file it really is: Debian's
/// `/usr/bin/python3`, `python3` on PATH (pyenv's shim, for one) and
/// pyenv's versions. (real path, version as `sys.version_info[:2]`).
pub fn pythons() -> Vec<(PathBuf, (u32, u32))> {
    let mut candidates: Vec<PathBuf> = vec!["/usr/bin/python3".into()];
    if let Ok(out) = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
    {
        candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
    }
    let pyenv = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".pyenv")
        });
    if let Ok(dir) = std::fs::read_dir(pyenv.join("versions")) {
        for v in dir.flatten() {
            candidates.push(v.path().join("bin/python3"));
        }
    }
    let mut out = BTreeMap::new();
    for c in candidates {
        let Ok(real) = std::fs::canonicalize(&c) else {
            continue;
        };
        let Ok(v) = Command::new(&real)
            .args(["-c", "import sys; print(*sys.version_info[:2])"])
            .output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&v.stdout);
        let mut it = text.split_whitespace().map(|s| s.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (it.next(), it.next())
            && major == 3
        {
            out.insert(real, (major, minor));
        }
    }
    out.into_iter().collect()
}

/// The supported ones (3.11, 3.12, 3.13).
pub fn supported_pythons() -> Vec<(PathBuf, (u32, u32))> {
    pythons()
        .into_iter()
        .filter(|(_, v)| matches!(v.1, 11..=13))
        .collect()
}

/// py-spy's path (`pip install py-spy`), or None after a loud SKIP.
pub fn py_spy() -> Option<String> {
    let mut candidates = vec!["py-spy".to_string()];
    if let Ok(home) = std::env::var("HOME") {
        candidates.push(format!("{home}/.local/bin/py-spy"));
    }
    candidates.push("/usr/local/bin/py-spy".into());
    for c in candidates {
        if crate::have_cmd(&c, &["--version"]) {
            return Some(c);
        }
    }
    crate::skip("py-spy is not installed (pip install py-spy)");
    None
}

/// A Python program started with `python`, that printed a line when
/// ready; killed when dropped.
pub struct PyProgram {
    pub child: Child,
    /// The line it printed when ready.
    pub ready: String,
}

impl PyProgram {
    pub fn start(python: &std::path::Path, source: &str, args: &[&str]) -> PyProgram {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(source)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start python");
        let mut ready = String::new();
        let _ = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut ready);
        PyProgram {
            child,
            ready: ready.trim().to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PyProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP service with known hot functions: each request runs a
/// pure-Python loop (`hot_loop`) and renders JSON (`render`). Threaded, with
/// TCP_NODELAY (see `python.rs`). Prints its port when ready.
pub const SERVICE: &str = r#"
import http.server, json
def hot_loop(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
def render(rows):
    return json.dumps([{"id": i, "name": "row%d" % i, "tags": ["a", "b"]} for i in range(rows)]).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        hot_loop(20000)
        body = render(200)
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

/// Two threads busy in different functions (`handler_a` → `spin_a`,
/// `handler_b` → `spin_b`) beside a trivial HTTP server (the load loadgen
/// needs to run). With `argv[1]`, it exits that many seconds after its
/// first request. Prints its port when ready.
pub const TWO_THREADS: &str = r#"
import http.server, sys, threading, time, os
LIFE = float(sys.argv[1]) if len(sys.argv) > 1 else None
def spin_a():
    x = 0
    for i in range(20000):
        x += i
    return x
def handler_a():
    while True:
        spin_a()
def spin_b():
    s = ""
    for i in range(2000):
        s = str(i)
    return s
def handler_b():
    while True:
        spin_b()
threading.Thread(target=handler_a, daemon=True).start()
threading.Thread(target=handler_b, daemon=True).start()
def stop():
    time.sleep(LIFE)
    os._exit(0)
started = threading.Lock()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        if LIFE is not None and started.acquire(blocking=False):
            threading.Thread(target=stop, daemon=True).start()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Writes a copy of the CPython executable `python` to `out` with its
/// `Py_Version` (the PY_VERSION_HEX an interpreter reports in its dynamic
/// symbols) set to `hex`: an interpreter that says it is another version
/// and runs as before. Done in Python: the tests need no ELF tools.
pub fn with_version(python: &std::path::Path, out: &std::path::Path, hex: u32) {
    const PATCH: &str = r#"
import struct, sys
path, out, new = sys.argv[1], sys.argv[2], int(sys.argv[3], 16)
d = bytearray(open(path, 'rb').read())
shoff, = struct.unpack_from('<Q', d, 0x28)
shentsize, shnum = struct.unpack_from('<HH', d, 0x3a)
secs = [struct.unpack_from('<IIQQQQIIQQ', d, shoff + i * shentsize) for i in range(shnum)]
done = False
for s in secs:
    if s[1] == 11:  # SHT_DYNSYM
        strtab = secs[s[6]]
        for k in range(s[5] // 24):
            name, info, other, shndx, value, size = struct.unpack_from('<IBBHQQ', d, s[4] + k * 24)
            end = d.index(b'\0', strtab[4] + name)
            if d[strtab[4] + name:end] == b'Py_Version':
                sec = secs[shndx]
                struct.pack_into('<I', d, value - sec[3] + sec[4], new)
                done = True
assert done, "no Py_Version"
open(out, 'wb').write(d)
"#;
    let st = Command::new(python)
        .args(["-c", PATCH])
        .arg(python)
        .arg(out)
        .arg(format!("{hex:x}"))
        .status()
        .expect("python");
    assert!(st.success(), "patching Py_Version failed");
    make_executable(out);
}

/// Writes a copy of `python` whose dynamic symbol `_PyRuntime` is renamed:
/// an interpreter stripped of what the profiler finds it by. It still runs
/// (its own code refers to the runtime by address).
pub fn without_runtime_symbol(python: &std::path::Path, out: &std::path::Path) {
    let mut d = std::fs::read(python).expect("read python");
    let needle = b"\0_PyRuntime\0";
    let i = d
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("_PyRuntime in the dynamic string table");
    d[i + 1..i + 11].copy_from_slice(b"_PyRuntimX");
    std::fs::write(out, d).expect("write");
    make_executable(out);
}

fn make_executable(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// An HTTP service whose handler waits 3 ms per request in a known Python
/// function (`Handler.do_GET` → `wait_here` → `time.sleep`), for the
/// off-CPU stacks. Prints its port when ready.
pub const SLEEPER: &str = r#"
import http.server, time
def wait_here():
    time.sleep(0.003)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        wait_here()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
