//! A throwaway Caddy (Debian's `caddy` 2.6) serving one HTTPS site,
//! `https://localhost:PORT`, with HTTP/1.1, HTTP/2 and HTTP/3 (QUIC on the
//! same port number over UDP), a certificate from the test's [`Pki`], and a
//! JSON access log: its count of requests by protocol is the server's own.
//!
//! The site is named `localhost`: URLs must use that name (Caddy matches the
//! site by the request's host and answers another with an empty 200).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::Pki;

pub struct Caddy {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

/// The body of every response.
pub const BODY: &str = "hello from caddy";

pub fn find_caddy() -> Option<PathBuf> {
    ["/usr/bin/caddy", "/usr/local/bin/caddy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Caddy {
    /// None (after a loud SKIP) when caddy is not installed.
    pub fn start(pki: &Pki) -> Option<Caddy> {
        let Some(bin) = find_caddy() else {
            crate::skip("caddy is not installed (apt-get install caddy)");
            return None;
        };
        Some(Self::start_bin(&bin, pki).unwrap_or_else(|e| panic!("{e}")))
    }

    fn start_bin(bin: &std::path::Path, pki: &Pki) -> Result<Caddy, String> {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("loadgen-caddy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("xdg")).map_err(|e| e.to_string())?;
        let d = dir.display();
        let config = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/data\n\tservers {{\n\t\tprotocols h1 h2 h3\n\t}}\n}}\n\
             https://localhost:{port} {{\n\tbind 127.0.0.1\n\ttls {} {}\n\tlog {{\n\t\toutput file {d}/access.log\n\t\tformat json\n\t}}\n\trespond \"{BODY}\" 200\n}}\n",
            pki.server_cert.display(),
            pki.server_key.display(),
        );
        std::fs::write(dir.join("Caddyfile"), config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("caddy.log")).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.join("Caddyfile"))
            // Caddy keeps state under HOME and XDG dirs: ours, not the user's.
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("xdg"))
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start caddy: {e}"))?;
        let mut c = Caddy { child, port, dir };
        // Listening on TCP, and the HTTP/3 listener said so in the log.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(c.dir.join("caddy.log")).unwrap_or_default();
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && log.contains("enabling HTTP/3 listener")
            {
                return Ok(c);
            }
            if let Ok(Some(status)) = c.child.try_wait() {
                return Err(format!("caddy exited ({status}): {log}"));
            }
            if Instant::now() > deadline {
                return Err(format!("caddy did not start within 10 s: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Requests in the access log by protocol (`HTTP/1.1`, `HTTP/2.0`,
    /// `HTTP/3.0`), waiting up to a second for the count to stop growing
    /// (Caddy writes the line after the response).
    pub fn requests(&self, proto: &str) -> u64 {
        let count = || {
            std::fs::read_to_string(self.dir.join("access.log"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["request"]["proto"] == proto)
                .count() as u64
        };
        let mut last = count();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = count();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
