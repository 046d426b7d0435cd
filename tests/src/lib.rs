//! Helpers shared by loadgen's integration tests (and `cargo xtask`):
//! locating the `loadgen` binary, running the built-in target as a child
//! process, starting nginx, and running loadgen with a JSON report.

pub mod aioquic;
pub mod caddy;
pub mod cpython;
pub mod ebpf;
pub mod go;
pub mod grpc;
pub mod h2server;
pub mod hdr_log;
pub mod hostile;
pub mod netns;
pub mod netns_loss;
pub mod nghttp2;
pub mod nginx;
pub mod perf;
pub mod pki;
pub mod profiling;
pub mod python;
pub mod recorder;
pub mod udp_relay;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The workspace root (where `target/` lives unless CARGO_TARGET_DIR says
/// otherwise).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path to a `loadgen` binary: `$LOADGEN_BIN`, or one built now (release,
/// so load tests measure the real engine) with the cargo running the tests.
pub fn loadgen_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("LOADGEN_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "loadgen", "--bin", "loadgen"])
            .current_dir(workspace_root())
            .status()
            .expect("cannot run cargo to build loadgen");
        assert!(status.success(), "building the loadgen binary failed");
        target_dir().join("release/loadgen")
    })
}

/// The time now, once the loadgen binary is built: a test that bounds a
/// run's wall time starts its clock here, or the first test of a file to
/// need the binary counts the build (minutes) against its bound.
pub fn start_clock() -> std::time::Instant {
    loadgen_bin();
    std::time::Instant::now()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` in the
/// workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The built-in target, running as a child process on a free port.
pub struct Target {
    child: Child,
    pub port: u16,
}

impl Target {
    pub fn start(threads: usize) -> Target {
        Self::start_with(threads, &[])
    }

    pub fn start_with(threads: usize, extra: &[&str]) -> Target {
        Self::spawn(Command::new(loadgen_bin()), threads, extra)
    }

    /// A target on `port`, which another may share (the target's
    /// listeners use SO_REUSEPORT, so the kernel spreads connections over
    /// the processes).
    pub fn start_on(threads: usize, port: u16) -> Target {
        Self::spawn_on(Command::new(loadgen_bin()), port, threads, &[])
    }

    /// The target with its threads confined to `cpu` (taskset).
    pub fn start_pinned(threads: usize, cpu: usize) -> Target {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &cpu.to_string()]).arg(loadgen_bin());
        Self::spawn(cmd, threads, &[])
    }

    /// The same at a real-time priority (root), so other work on `cpu`
    /// never delays its answers.
    pub fn start_pinned_realtime(threads: usize, cpu: usize) -> Target {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &cpu.to_string(), "chrt", "--fifo", "10"])
            .arg(loadgen_bin());
        Self::spawn(cmd, threads, &[])
    }

    fn spawn(cmd: Command, threads: usize, extra: &[&str]) -> Target {
        Self::spawn_on(cmd, 0, threads, extra)
    }

    fn spawn_on(mut cmd: Command, port: u16, threads: usize, extra: &[&str]) -> Target {
        let mut child = cmd
            .args([
                "target",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--threads",
            ])
            .arg(threads.to_string())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start loadgen target");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("target printed nothing");
        let port = line
            .rsplit_once("127.0.0.1:")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("cannot find the port in {line:?}"));
        Target { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The target's own count of responses sent.
    pub fn responses(&self) -> u64 {
        let body = http_get(self.port, "/__stats");
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
        v["responses"].as_u64().expect("responses field")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Size of one keep-alive response to `GET path`: fetched with
/// `Connection: close`, less the header that request adds.
pub fn keepalive_response_len(port: u16, path: &str) -> u64 {
    let raw = http_get_raw(port, path);
    let extra =
        if raw.windows(19).any(|w| w == b"Connection: close\r\n") && !path.starts_with("/eof/") {
            19
        } else {
            0
        };
    raw.len() as u64 - extra
}

/// A minimal blocking GET returning the body (for `/__stats`).
pub fn http_get(port: u16, path: &str) -> String {
    let raw = http_get_raw(port, path);
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The complete bytes of one response to `GET path` with
/// `Connection: close`.
pub fn http_get_raw(port: u16, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    out
}

/// Runs loadgen with `args` plus `--json -`; returns the parsed report, the
/// text summary (stderr) and the exit code.
pub fn run_json(args: &[&str]) -> (serde_json::Value, String, i32) {
    let out = run(&[args, &["--json", "-"]].concat());
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "loadgen {args:?} did not print JSON ({e}); stdout: {}; stderr: {text}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (json, text, out.status.code().unwrap_or(-1))
}

/// [`run_json`] with loadgen pinned to `cpus` (a taskset list), so that
/// it does not share a CPU with the process it loads.
pub fn run_json_on(cpus: &str, args: &[&str]) -> (serde_json::Value, String, i32) {
    let out = Command::new("timeout")
        .args(["60", "taskset", "-c", cpus])
        .arg(loadgen_bin())
        .args(args)
        .args(["--json", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run loadgen under taskset");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("loadgen {args:?} did not print JSON ({e}); stderr: {text}"));
    (json, text, out.status.code().unwrap_or(-1))
}

/// Runs loadgen with `args`, bounded to 60 s.
pub fn run(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(loadgen_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run loadgen")
}

/// Environment switch that turns "skipped for lack of X" into a failure
/// (CI sets it, so CI always runs everything).
pub fn require_all() -> bool {
    std::env::var_os("LOADGEN_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// Skips loudly, or fails when `LOADGEN_REQUIRE_ALL=1`.
pub fn skip(why: &str) {
    if require_all() {
        panic!("required test cannot run: {why}");
    }
    eprintln!("\n*** SKIP: {why} (set LOADGEN_REQUIRE_ALL=1 to make this a failure) ***\n");
}

/// What a measured run returns: the report, the text, the exit code, and
/// the child's own wall time, CPU time (user+sys) and peak RSS (KiB).
pub struct Measured {
    pub json: serde_json::Value,
    pub text: String,
    pub code: i32,
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

/// Runs loadgen with `args` plus `--json -`, reaping it with `wait4` to get
/// its own resource usage.
pub fn run_measured(args: &[&str]) -> Measured {
    use std::io::Read;
    let started = start_clock();
    let mut child = Command::new(loadgen_bin())
        .args(args)
        .args(["--json", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run loadgen");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut out = Vec::new();
    let _ = stdout.read_to_end(&mut out);
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which `child` will not reap again.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert!(pid > 0, "wait4 failed");
    std::mem::forget(child);
    let wall = started.elapsed();
    let text = err_reader.join().unwrap_or_default();
    let tv =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    let json = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("loadgen {args:?} printed no JSON ({e}): {text}"));
    Measured {
        json,
        text,
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss as u64,
    }
}

/// User+system CPU time a process has used so far (from /proc/PID/stat).
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Compiles C source `src` with `flags` into a temporary binary named
/// after `name`; None (after a loud SKIP) without a working C compiler.
pub fn build_c(name: &str, src: &str, flags: &[&str]) -> Option<PathBuf> {
    let dir = std::env::temp_dir();
    let c = dir.join(format!("loadgen-c-{}-{name}.c", std::process::id()));
    let bin = dir.join(format!("loadgen-c-{}-{name}", std::process::id()));
    std::fs::write(&c, src).ok()?;
    let status = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&c)
        .status();
    let _ = std::fs::remove_file(&c);
    if !matches!(status, Ok(s) if s.success()) {
        skip("no working C compiler (cc)");
        return None;
    }
    Some(bin)
}

/// Whether this process may load BPF programs and open perf events.
pub fn can_profile() -> bool {
    loadgen::profile::missing_capabilities().is_none()
}

/// Where privileged tests note that they ran (`.ci/run` sets it and lists
/// them at the end, so CI output says which ran rather than skipped).
pub const PRIVILEGED_LOG: &str = "LOADGEN_PRIVILEGED_LOG";

/// Records that the calling test (libtest names its thread after it) got
/// past its privilege check.
pub fn privileged_ran() {
    use std::io::Write;
    let Some(path) = std::env::var_os(PRIVILEGED_LOG) else {
        return;
    };
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        // One write per line: tests append at once, and `writeln!` may
        // write the name and its newline separately.
        let _ = f.write_all(format!("{name}\n").as_bytes());
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then
/// released), for a server that must be told its port in advance.
pub fn free_port() -> u16 {
    nginx::free_port().expect("cannot bind a free port")
}

/// A port on 127.0.0.1 where nothing listens, kept so while this lives: a
/// socket bound to it that never listens, so connects are refused and no
/// other server can take the port. A port found free and let go once went
/// to a target another test started the same second, and the "nothing
/// listening" run beside it got 20988 answers.
pub struct ClosedPort {
    _held: socket2::Socket,
    pub port: u16,
}

pub fn closed_port() -> ClosedPort {
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&addr.into()).unwrap();
    let port = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .unwrap();
    ClosedPort { _held: s, port }
}

/// Runs `cmd --version`: whether an optional tool is installed.
pub fn have(cmd: &str) -> bool {
    have_cmd(cmd, &["--version"])
}

/// Runs `cmd args…` (a harmless query such as `go version`): whether it
/// is installed and works.
pub fn have_cmd(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
