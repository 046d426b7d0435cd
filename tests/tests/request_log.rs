//! `--request-log FILE` against nginx: one line per completed request,
//! whose 2xx lines are the report's 2xx and whose latencies give the
//! report's percentiles; open-loop lines carry the intended time;
//! scenario lines their request's name; bad paths refused before the run.

use std::collections::HashMap;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use loadgen_tests::nginx::{Nginx, NginxOptions, find_nginx};
use loadgen_tests::{run, run_json, skip};

fn have_nginx() -> bool {
    if find_nginx().is_none() {
        skip("nginx is not installed (apt-get install nginx-light)");
        return false;
    }
    true
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadgen-rlog-{}-{name}", std::process::id()))
}

/// The log as its header's columns → the lines' values.
struct Log {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Log {
    fn read(path: &PathBuf) -> Log {
        let text = std::fs::read_to_string(path).expect("the request log");
        assert!(text.ends_with('\n'), "a line cut short");
        let mut lines = text.lines();
        let columns: Vec<String> = lines
            .next()
            .expect("a header")
            .split('\t')
            .map(String::from)
            .collect();
        let rows: Vec<Vec<String>> = lines
            .map(|l| l.split('\t').map(String::from).collect())
            .collect();
        for r in &rows {
            assert_eq!(r.len(), columns.len(), "{r:?}");
        }
        Log { columns, rows }
    }

    fn col(&self, name: &str) -> Vec<&str> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns));
        self.rows.iter().map(|r| r[i].as_str()).collect()
    }

    fn num(&self, name: &str) -> Vec<u64> {
        self.col(name).iter().map(|v| v.parse().unwrap()).collect()
    }
}

/// The log agrees with the report: a line per completed request, its 2xx
/// lines the report's 2xx, and its latencies (of the responses) give the
/// report's p50 and p99 within 1 %.
fn agrees(log: &Log, json: &serde_json::Value, what: &str) {
    assert_eq!(log.rows.len() as u64, json["requests"], "{what}: lines");
    let status = log.num("status");
    let c2xx = status.iter().filter(|s| (200..300).contains(*s)).count() as u64;
    assert_eq!(c2xx, json["status"]["2xx"], "{what}: 2xx lines");
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for (lat, st) in log.num("latency_us").iter().zip(&status) {
        if *st != 0 {
            h.record((*lat).max(1)).unwrap();
        }
    }
    for (q, key) in [(0.5, "p50"), (0.99, "p99")] {
        let ours = h.value_at_quantile(q) as f64;
        let report = json["latency_us"][key].as_f64().unwrap();
        assert!(
            (ours - report).abs() <= 0.01 * report,
            "{what}: {key} of the log {ours} µs, of the report {report} µs"
        );
    }
    let shards = json["shards"].as_u64().unwrap();
    assert!(log.num("shard").iter().all(|&s| s < shards), "{what}");
}

#[test]
fn a_line_per_request_on_both_engines_over_http1_and_http2() {
    if !have_nginx() {
        return;
    }
    let h1 = Nginx::start(0).expect("nginx");
    let h2 = Nginx::start_with(&NginxOptions {
        http2: true,
        ..NginxOptions::default()
    })
    .expect("nginx h2c");
    let path = tmp("both.tsv");
    let p = path.to_str().unwrap();
    // Built before the clock below starts.
    loadgen_tests::loadgen_bin();
    for engine in ["uring", "glommio"] {
        for (nginx, extra) in [
            (&h1, &["--pipeline", "4"][..]),
            (&h2, &["--http2", "--streams", "8"][..]),
        ] {
            let url = format!("http://127.0.0.1:{}/", nginx.port);
            let mut args = vec!["-n", "6000", "-c8", "-t2", "--engine", engine];
            args.extend_from_slice(extra);
            args.extend(["--request-log", p, &url]);
            let t0 = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64;
            let (json, text, code) = run_json(&args);
            let what = format!("{engine} {extra:?}");
            assert_eq!(code, 0, "{what}: {text}");
            let log = Log::read(&path);
            assert_eq!(
                log.columns,
                [
                    "start_unix_us",
                    "shard",
                    "conn",
                    "status",
                    "latency_us",
                    "ttfb_us",
                    "bytes",
                    "error"
                ]
            );
            agrees(&log, &json, &what);
            assert_eq!(log.rows.len(), 6000, "{what}");
            // nginx's body, "Hello from nginx\n", on every line.
            assert!(log.num("bytes").iter().all(|&b| b == 17), "{what}");
            assert!(log.col("error").iter().all(|e| e.is_empty()), "{what}");
            let (lat, ttfb) = (log.num("latency_us"), log.num("ttfb_us"));
            assert!(lat.iter().zip(&ttfb).all(|(l, t)| t <= l), "{what}");
            let t1 = t0 + 60_000_000;
            assert!(
                log.num("start_unix_us").iter().all(|&s| s >= t0 && s < t1),
                "{what}: start times in the run"
            );
        }
    }
    let _ = std::fs::remove_file(path);
}

/// Open loop: every line has the time its request was meant to leave, no
/// later than it left, spread over the run at the rate asked for; the
/// latency is the corrected one (the report's).
#[test]
fn open_loop_lines_carry_the_intended_time() {
    if !have_nginx() {
        return;
    }
    let nginx = Nginx::start(0).expect("nginx");
    let path = tmp("open.tsv");
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let (json, text, code) = run_json(&[
        "-R",
        "2000",
        "-d",
        "2s",
        "-c8",
        "-t2",
        "--request-log",
        path.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, 0, "{text}");
    let log = Log::read(&path);
    assert_eq!(log.columns.last().unwrap(), "intended_unix_us");
    agrees(&log, &json, "open loop");
    let (start, intended) = (log.num("start_unix_us"), log.num("intended_unix_us"));
    assert!(
        start.iter().zip(&intended).all(|(s, i)| i <= s),
        "a request left before it was due"
    );
    // Each shard's schedule runs on its own clock, from its own start.
    for shard in 0..2 {
        let mine: Vec<u64> = intended
            .iter()
            .zip(log.num("shard"))
            .filter(|(_, s)| *s == shard)
            .map(|(i, _)| *i)
            .collect();
        let span = mine.iter().max().unwrap() - mine.iter().min().unwrap();
        assert!(
            (1_900_000..=2_000_000).contains(&span),
            "shard {shard}'s intended times span {span} µs of a 2 s run"
        );
    }
    // The corrected latency runs from the intended time.
    for ((s, i), l) in start.iter().zip(&intended).zip(log.num("latency_us")) {
        assert!(l + 1 >= s - i, "latency {l} µs, sent {} µs late", s - i);
    }
    let _ = std::fs::remove_file(path);
}

/// Scenarios name each line's request; sampling keeps one line in N.
#[test]
fn scenario_lines_are_named_and_sampling_keeps_one_in_n() {
    if !have_nginx() {
        return;
    }
    let nginx = Nginx::start(0).expect("nginx");
    let scenario = tmp("mix.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[request]]\nname = \"home page\"\nurl = \"http://127.0.0.1:{}/\"\nweight = 3\n\n[[request]]\nname = \"item\"\nurl = \"/items/{{{{seq}}}}\"\n",
            nginx.port
        ),
    )
    .unwrap();
    let path = tmp("named.tsv");
    let p = path.to_str().unwrap();
    let s = scenario.to_str().unwrap();
    let (json, text, code) = run_json(&["-n", "4000", "-c4", "--scenario", s, "--request-log", p]);
    assert_eq!(code, 0, "{text}");
    let log = Log::read(&path);
    assert_eq!(log.columns.last().unwrap(), "name");
    agrees(&log, &json, "scenario");
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for n in log.col("name") {
        *by_name.entry(n).or_default() += 1;
    }
    for r in json["by_request"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        assert_eq!(by_name.get(name).copied(), r["requests"].as_u64(), "{name}");
    }
    // One shard: exactly the 1st, 11th, 21st … line.
    let (json, text, code) = run_json(&[
        "-n",
        "4000",
        "-c4",
        "-t1",
        "--scenario",
        s,
        "--request-log",
        p,
        "--request-log-sample",
        "10",
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 4000);
    assert_eq!(Log::read(&path).rows.len(), 400);
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(scenario);
}

/// Bad paths are one line and exit 2 before anything is sent.
#[test]
fn bad_log_paths_are_refused_before_the_run() {
    let dir = tmp("dir");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("no/such/dir/log.tsv");
    // Nothing listens on port 9: a run that started would fail otherwise.
    let url = "http://127.0.0.1:9/";
    for (path, says) in [
        ("-", "--request-log needs a file"),
        (missing.to_str().unwrap(), "cannot write --request-log"),
        (dir.to_str().unwrap(), "cannot write --request-log"),
    ] {
        let out = run(&["-n", "10", "--request-log", path, url]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{path}: {err}");
        assert!(err.contains(says), "{path}: {err}");
        assert!(out.stdout.is_empty(), "{path}: ran anyway");
    }
    let log = dir.join("x.tsv");
    let out = run(&[
        "find-max",
        "--slo",
        "p99<10ms",
        "--request-log",
        log.to_str().unwrap(),
        url,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--request-log"), "{err}");
    let out = run(&["--request-log-sample", "0", "--request-log", "x", url]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
