//! A throwaway nginx (Debian's package) with its own config, pinned to one
//! CPU, on a free loopback port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    pub port: u16,
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
pub struct NginxTls<'a> {
    pub cert: &'a std::path::Path,
    pub key: &'a std::path::Path,
    pub client_ca: Option<&'a std::path::Path>,
}

impl Nginx {
    /// Starts nginx with one worker pinned to `cpu`, answering every path
    /// with a small fixed body, keep-alive without a request limit.
    pub fn start(cpu: usize) -> Result<Nginx, String> {
        Self::start_with(cpu, None)
    }

    /// The same over TLS 1.2 and 1.3, with session resumption (tickets and
    /// a session cache).
    pub fn start_tls(cpu: usize, tls: &NginxTls<'_>) -> Result<Nginx, String> {
        Self::start_with(cpu, Some(tls))
    }

    fn start_with(cpu: usize, tls: Option<&NginxTls<'_>>) -> Result<Nginx, String> {
        let bin = find_nginx().ok_or("nginx not found: apt-get install nginx-light")?;
        let e = |what: &str, err: std::io::Error| format!("{what}: {err}");
        let port = free_port().map_err(|err| e("free port", err))?;
        let dir = std::env::temp_dir().join(format!("loadgen-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).map_err(|err| e("temp dir", err))?;
        let mask: String = {
            let mut m = vec!['0'; cpu + 1];
            m[0] = '1';
            m.into_iter().collect()
        };
        let user = if is_root() { "user root;\n" } else { "" };
        let (ssl, ssl_conf) = match tls {
            None => ("", String::new()),
            Some(t) => (
                " ssl",
                format!(
                    "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n{}",
                    t.cert.display(),
                    t.key.display(),
                    t.client_ca.map_or(String::new(), |ca| format!(
                        "    ssl_client_certificate {};\n    ssl_verify_client on;\n",
                        ca.display()
                    ))
                ),
            ),
        };
        let conf = format!(
            "{user}worker_processes 1;\nworker_cpu_affinity {mask};\ndaemon off;\nmaster_process on;\n\
             error_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000000;\n  keepalive_timeout 300s;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port}{ssl} reuseport;\n{ssl_conf}\
                 location / {{ default_type text/plain; return 200 \"Hello from nginx\\n\"; }}\n  }}\n}}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).map_err(|err| e("nginx.conf", err))?;
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
        let mut n = Nginx { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                let log = std::fs::read_to_string(n.dir.join("logs/error.log")).unwrap_or_default();
                return Err(format!("nginx exited ({status}): {log}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not start listening on port {port} within 5 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(n)
    }
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
