//! `--metrics-listen` watched by a real Prometheus (Debian's `prometheus`,
//! scraping every second) over a 10 s run, and the exposition checked by
//! `promtool check metrics`, both loadgen's and the built-in target's.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use loadgen_tests::{Target, free_port, have, http_get, loadgen_bin, skip};

/// One test at a time: the Prometheus test checks the gaps between
/// scrapes, which another load on the same two CPUs would stretch.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts Prometheus scraping `127.0.0.1:target` every second; returns
/// once it says it is ready.
fn start_prometheus(target: u16) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("loadgen-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: loadgen\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start prometheus");
    let p = Prometheus {
        child,
        port,
        _dir: TempDir(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut line = String::new();
            let _ = BufReader::new(s).read_line(&mut line);
            if line.contains(" 200 ") {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_a_ten_second_run_every_second() {
    let _g = serial();
    if !have("prometheus") || !have("promtool") {
        skip("Prometheus is not installed (apt-get install prometheus)");
        return;
    }
    let t = Target::start(1);
    // The target's own exposition is valid Prometheus text too.
    let (ok, why) = promtool_check(&http_get(t.port, "/metrics"));
    assert!(ok, "promtool rejects the target's /metrics: {why}");

    let metrics_port = free_port();
    let prom = start_prometheus(metrics_port);
    // Prometheus hands new targets to its scrapers a few seconds after it
    // starts: wait until it has tried ours once (it is down until the run).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = http_get(prom.port, "/api/v1/targets");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let tried = v["data"]["activeTargets"]
            .as_array()
            .and_then(|t| t.first())
            .and_then(|t| t["lastScrape"].as_str())
            .is_some_and(|t| !t.starts_with("0001-"));
        if tried {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut child = Command::new(loadgen_bin())
        .args(["-t1", "-c4", "-d10s", "--json", "-", "--metrics-listen"])
        .arg(format!("127.0.0.1:{metrics_port}"))
        .arg(t.url("/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The header (on stderr with --json -) names the endpoint once it serves.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut header = String::new();
    while !header.contains("live metrics:") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no metrics line: {header}"
        );
        header.push_str(&line);
    }
    assert!(
        header.contains(&format!("http://127.0.0.1:{metrics_port}/metrics")),
        "{header}"
    );
    // Wait for the first publication (after one second), then check it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let exposition = loop {
        let body = http_get(metrics_port, "/metrics");
        if body
            .lines()
            .any(|l| l.starts_with("loadgen_requests_total ") && !l.ends_with(" 0"))
        {
            break body;
        }
        assert!(Instant::now() < deadline, "no requests published: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ok, why) = promtool_check(&exposition);
    assert!(
        ok,
        "promtool rejects loadgen's /metrics: {why}\n{exposition}"
    );
    for name in [
        "loadgen_requests_total",
        "loadgen_responses_total{status=\"2xx\"}",
        "loadgen_errors_total{kind=\"timeout\"}",
        "loadgen_request_duration_seconds_bucket{le=\"+Inf\"}",
        "loadgen_connections 4",
    ] {
        assert!(exposition.contains(name), "no {name} in {exposition}");
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let requests = report["requests"].as_u64().unwrap();
    let series = report["series"].as_array().unwrap();
    // What Prometheus may have missed: the seconds after its last scrape
    // (shards publish once per second; it scrapes once per second).
    let tail: u64 = series
        .iter()
        .rev()
        .take(3)
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();

    let body = http_get(
        prom.port,
        &format!(
            "/api/v1/query?query={}",
            encode("loadgen_requests_total[60s]")
        ),
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
    assert_eq!(v["status"], "success", "{body}");
    let values = v["data"]["result"][0]["values"].as_array().expect(&body);
    let points: Vec<(f64, f64)> = values
        .iter()
        .map(|p| {
            (
                p[0].as_f64().unwrap(),
                p[1].as_str().unwrap().parse::<f64>().unwrap(),
            )
        })
        .collect();
    assert!(points.len() >= 8, "a sample every second of 10: {points:?}");
    for w in points.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            (0.5..=1.6).contains(&gap),
            "scrapes {gap} s apart: {points:?}"
        );
        assert!(w[1].1 >= w[0].1, "a counter never goes down: {points:?}");
    }
    let last = points.last().unwrap().1 as u64;
    assert!(last <= requests, "stored {last} > run's {requests}");
    assert!(
        requests - last <= tail,
        "stored {last}, run {requests}: more than the last seconds ({tail}) apart"
    );
}

/// `--metrics-linger`: after the run, the endpoint keeps serving the
/// run's final numbers (equal to the report's), then the process exits on
/// its own; Ctrl-C ends the linger early. Needs no Prometheus.
#[test]
fn the_final_numbers_are_served_after_the_run_with_metrics_linger() {
    let _g = serial();
    let t = Target::start(1);
    let port = free_port();
    let json = std::env::temp_dir().join(format!("loadgen-linger-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let mut child = Command::new(loadgen_bin())
        .args(["-t1", "-c2", "-d1s", "--metrics-linger", "4s", "--json"])
        .arg(&json)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg(t.url("/"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The report is written before the linger starts.
    let report: serde_json::Value = loop {
        if let Some(v) = std::fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no report");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(child.try_wait().unwrap().is_none(), "still serving");
    let body = http_get(port, "/metrics");
    let served = body
        .lines()
        .find_map(|l| l.strip_prefix("loadgen_requests_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no loadgen_requests_total: {body}"));
    assert_eq!(
        served as u64,
        report["requests"].as_u64().unwrap(),
        "{body}"
    );
    assert!(body.contains("loadgen_connections 0"), "{body}");
    // Ctrl-C ends the linger at once.
    // SAFETY: kill only sends a signal to the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "serving the final metrics at http://127.0.0.1:{port}/metrics"
        )),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "Ctrl-C ended the linger: {:?}",
        started.elapsed()
    );
    // Without Ctrl-C it ends by itself after the linger.
    let port = free_port().to_string();
    let started = loadgen_tests::start_clock();
    let out = loadgen_tests::run(&[
        "-t1",
        "-c1",
        "-d500ms",
        "--metrics-linger",
        "1s",
        "--metrics-listen",
        &format!("127.0.0.1:{port}"),
        &t.url("/"),
    ]);
    assert!(out.status.success());
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(1400)..Duration::from_secs(10)).contains(&took),
        "{took:?}"
    );
    // Without --metrics-listen the flag is a usage error.
    let out = loadgen_tests::run(&["--metrics-linger", "1s", &t.url("/")]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_file(&json);
}
