//! `--off-cpu` against real processes with known answers: a threaded
//! Python server that sleeps 5 ms per request, the same server sharing its
//! CPU with two CPU hogs, a C program whose reader blocks on a pipe its
//! writer fills, an idle target, a target that exits mid-run, and no
//! privileges. Root (or CAP_BPF + CAP_PERFMON) needed: SKIP loudly
//! without, and LOADGEN_REQUIRE_ALL=1 makes that a failure.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use loadgen::profile::Folded;
use loadgen_tests::profiling::{
    Reap, folded, run_json_killing, run_unprivileged, serial, start_ready, tmp,
};
use loadgen_tests::python::PyServer;
use loadgen_tests::{Target, build_c, loadgen_bin, run_json, run_json_on, skip};

/// µs in the stacks that have a frame containing `needle`.
fn us_with(f: &Folded, needle: &str) -> u64 {
    f.stacks
        .iter()
        .filter(|(s, _)| s.iter().any(|fr| fr.contains(needle)))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn python_sleeps_add_up_to_requests_times_the_sleep() {
    let Some(_g) = serial() else { return };
    let Some(py) = PyServer::start(5, None) else {
        return;
    };
    let folded_path = tmp("py.folded");
    let svg = tmp("py.svg");
    let pid = py.pid().to_string();
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-d",
        "3s",
        "--off-cpu",
        "--profile-pid",
        &pid,
        "--off-cpu-folded",
        folded_path.to_str().unwrap(),
        "--off-cpu-flamegraph",
        svg.to_str().unwrap(),
        &py.url(),
    ]);
    assert_eq!(code, 0, "{text}");
    let requests = json["requests"].as_u64().unwrap();
    assert!(requests > 300, "{requests} requests: {text}");
    let f = folded(&folded_path);
    // Every stack ends in its state.
    assert!(
        f.stacks
            .iter()
            .all(|(s, _)| ["[S]", "[D]", "[R]"].contains(&s.last().unwrap().as_str())),
        "a stack without a state leaf"
    );
    // Each request sleeps 5 ms once; the sleeps are the off-CPU time in
    // stacks through clock_nanosleep.
    let slept = us_with(&f, "nanosleep") as f64;
    let expected = requests as f64 * 5000.0;
    eprintln!(
        "nanosleep: {slept:.0} µs for {requests} requests × 5 ms = {:.3} of the expected",
        slept / expected
    );
    assert!(
        (slept - expected).abs() <= 0.25 * expected,
        "{slept:.0} µs in nanosleep stacks, expected {expected:.0} (±25%) for {requests} requests: {text}"
    );
    // Python has no frame pointers: the interpreter's frames come from
    // DWARF unwinding of the stack copies.
    assert!(
        f.stacks
            .iter()
            .any(|(s, _)| s.iter().any(|fr| fr.contains("nanosleep"))
                && s.iter().any(|fr| fr.contains("PyEval"))),
        "no Python frames under the sleeps"
    );
    let p = &json["profile"];
    let off = &p["off_cpu"];
    let total = off["total_us"].as_f64().unwrap();
    let by = &off["by_state"];
    let sum = by["sleep_us"].as_f64().unwrap()
        + by["disk_us"].as_f64().unwrap()
        + by["preempted_us"].as_f64().unwrap();
    assert!((sum - total).abs() < 1.0, "{off}");
    assert!(by["sleep_us"].as_f64().unwrap() >= slept * 0.9, "{off}");
    let top = &off["blocking"][0];
    assert_eq!(top["state"], "S", "{off}");
    let woken = off["wakers"].as_array().unwrap();
    assert!(
        woken
            .iter()
            .any(|w| w["waker"].as_str().unwrap().contains("hrtimer_wakeup")),
        "the sleeps end on a timer: {woken:?}"
    );
    let sched = &p["sched"];
    assert!(sched["wakeups"].as_u64().unwrap() > requests, "{sched}");
    let q = &sched["runq_latency_us"];
    assert!(q["p50"].as_u64().unwrap() <= q["p99"].as_u64().unwrap());
    assert!(p["cost"]["sched"]["target_events"].as_u64().unwrap() > 0);
    // The text table.
    assert!(text.contains("Where the target waited:"), "{text}");
    assert!(text.contains("do_nanosleep"), "{text}");
    assert!(text.contains("Run-queue latency"), "{text}");
    // Second by second, next to the client's p99.
    let series = json["series"].as_array().unwrap();
    assert!(series.len() >= 3);
    for s in &series[..3] {
        let ms = s["target_off_cpu_ms"].as_f64().unwrap();
        assert!(ms > 100.0, "{s}");
        assert!(s["target_runq_p99_us"].as_u64().is_some(), "{s}");
        assert!(s["target_on_cpu_samples"].as_u64().is_some(), "{s}");
        assert!(s["p99_us"].as_u64().unwrap() >= 5000, "{s}");
    }
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("Off-CPU time"), "title");
    assert!(svg_text.contains("counts in µs"), "title says the unit");
    assert!(svg_text.contains("do_nanosleep"));
    for p in [folded_path, svg] {
        let _ = std::fs::remove_file(p);
    }
}

/// A shell loop burning CPU `cpu`.
fn hog(cpu: usize) -> Reap {
    Reap(
        Command::new("taskset")
            .args(["-c", &cpu.to_string(), "sh", "-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("taskset (util-linux)"),
    )
}

fn runq_p99(py: &PyServer) -> (u64, serde_json::Value) {
    let pid = py.pid().to_string();
    let (json, text, code) = run_json_on(
        "1",
        &[
            "-t1",
            "-c4",
            "-d",
            "3s",
            "--off-cpu",
            "--profile-pid",
            &pid,
            &py.url(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let p99 = json["profile"]["sched"]["runq_latency_us"]["p99"]
        .as_u64()
        .unwrap_or_else(|| panic!("no run-queue latency: {text}"));
    (p99, json)
}

#[test]
fn cpu_hogs_on_the_servers_cpu_raise_run_queue_latency() {
    let Some(_g) = serial() else { return };
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        skip("the CPU-hog test needs 2 CPUs: the server and its hogs on one, loadgen on the other");
        return;
    }
    let Some(py) = PyServer::start(5, Some(0)) else {
        return;
    };
    // Unhogged twice, the lower kept: other work on this host can take
    // CPU 0 for a while, which is a hog too.
    let quiet = runq_p99(&py).0.min(runq_p99(&py).0);
    let hogs = [hog(0), hog(0)];
    let (hogged, json) = runq_p99(&py);
    drop(hogs);
    assert!(
        hogged >= 1000,
        "run-queue p99 with two hogs on the server's CPU: {hogged} µs (quiet: {quiet} µs)"
    );
    assert!(
        hogged >= 3 * quiet,
        "hogged p99 {hogged} µs is not several times the quiet run's {quiet} µs"
    );
    // The per-second p99 shows it too.
    let worst = json["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["target_runq_p99_us"].as_u64())
        .max()
        .unwrap();
    assert!(worst >= 1000, "{worst}");
    // The HTML page drawn from this report has the off-CPU part: the
    // per-second run-queue chart, the blue flamegraph, the blocking table.
    let (json_path, html_path) = (tmp("hogs.json"), tmp("hogs.html"));
    std::fs::write(&json_path, json.to_string()).unwrap();
    let out = Command::new(loadgen_bin())
        .args(["report", json_path.to_str().unwrap(), "--html"])
        .arg(&html_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    let part = html
        .split("id=\"off-cpu\"")
        .nth(1)
        .expect("an off-CPU section");
    assert!(
        part.contains("target run-queue p99"),
        "the per-second chart"
    );
    assert!(part.contains("title=\"Off-CPU flamegraph\""));
    assert!(
        part.contains("<th class=\"l\">blocked in</th>"),
        "the blocking table"
    );
}

const PIPE_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static int fds[2];
__attribute__((noinline)) void writer_fill(void) {
    char b[64] = {1};
    if (write(fds[1], b, sizeof b) < 0) _exit(1);
}
static void *writer(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "pipewriter");
    for (;;) {
        struct timespec t = {0, 2000000};
        nanosleep(&t, 0);
        writer_fill();
    }
    return 0;
}
__attribute__((noinline)) void reader_wait(void) {
    char b[64];
    if (read(fds[0], b, sizeof b) <= 0) _exit(1);
}
int main(void) {
    if (pipe(fds)) return 1;
    pthread_t t;
    pthread_create(&t, 0, writer, 0);
    printf("ready\n");
    fflush(stdout);
    for (;;) reader_wait();
}
"#;

#[test]
fn the_waker_of_a_pipe_wait_is_the_writers_write() {
    let Some(_g) = serial() else { return };
    // -O0 and frame pointers, so that --unwind fp walks it too.
    let Some(bin) = build_c(
        "pipe",
        PIPE_PROGRAM,
        &["-O0", "-fno-omit-frame-pointer", "-pthread"],
    ) else {
        return;
    };
    let c = start_ready(&bin, &[]);
    let t = Target::start(1);
    let pid = c.id().to_string();
    // DWARF (auto: the waker is the target itself, so its stack is copied
    // and unwound too) and frame pointers (stack ids in the kernel).
    for (mode, writer_frame) in [("auto", "writer_fill"), ("fp", "writer")] {
        let (json, text, code) = run_json(&[
            "-t1",
            "-c1",
            "-d",
            "2s",
            "--off-cpu",
            "--unwind",
            mode,
            "--profile-pid",
            &pid,
            &t.url("/"),
        ]);
        assert_eq!(code, 0, "{text}");
        let off = &json["profile"]["off_cpu"];
        let rows = off["blocking"].as_array().unwrap();
        let read = rows
            .iter()
            .find(|r| r["blocked_in"].as_str().unwrap().contains("pipe_read"))
            .unwrap_or_else(|| panic!("--unwind {mode}: no pipe_read wait: {text}"));
        let by = read["woken_by"].as_str().unwrap_or_default();
        assert!(
            by.contains("pipe_write"),
            "--unwind {mode}: woken by {by:?}: {text}"
        );
        // ~2 ms a wait, every wait: most of the reader's window.
        assert!(read["us"].as_f64().unwrap() > 1.5e6, "{read}");
        let waker = off["wakers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["woke"].as_str().unwrap().contains("pipe_read"))
            .unwrap_or_else(|| panic!("--unwind {mode}: no waker of the pipe wait: {off}"));
        let stack: Vec<&str> = waker["stack"].as_str().unwrap().split(';').collect();
        assert!(
            stack.contains(&writer_frame),
            "--unwind {mode}: {writer_frame} not in the waker's stack {stack:?}"
        );
        // The write path, the user side (libc's write) into the kernel's
        // (pipe_write, anon_pipe_write on 6.18).
        for needle in ["write", "vfs_write_[k]", "pipe_write_[k]"] {
            assert!(
                stack.iter().any(|f| f.contains(needle)),
                "--unwind {mode}: no {needle} in the waker's stack {stack:?}"
            );
        }
    }
    drop(c);
    let _ = std::fs::remove_file(bin);
}

#[test]
fn an_idle_target_says_so_in_one_line() {
    let Some(_g) = serial() else { return };
    let idle = Reap(Command::new("sleep").arg("60").spawn().unwrap());
    let t = Target::start(1);
    let svg = tmp("idle.svg");
    let (json, text, code) = run_json(&[
        "-t1",
        "-c2",
        "-d",
        "1s",
        "--off-cpu-flamegraph",
        svg.to_str().unwrap(),
        "--profile-pid",
        &idle.id().to_string(),
        &t.url("/"),
    ]);
    drop(idle);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("no off-CPU waits"))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one warning, one line about the flamegraph: {text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("WARNING:")), "{text}");
    assert!(
        lines.iter().any(|l| l.contains("no flamegraph written")),
        "{text}"
    );
    assert!(!svg.exists());
    let off = &json["profile"]["off_cpu"];
    assert_eq!(off["total_us"].as_f64(), Some(0.0), "{off}");
    assert!(json["requests"].as_u64().unwrap() > 100);
}

const EXITING_PROGRAM: &str = r#"
#include <stdio.h>
#include <time.h>
int main(void) {
    printf("ready\n");
    fflush(stdout);
    struct timespec t = {0, 1000000};
    for (;;) nanosleep(&t, 0);
}
"#;

#[test]
fn a_target_that_exits_mid_run_keeps_its_waits() {
    let Some(_g) = serial() else { return };
    let Some(bin) = build_c("offexit", EXITING_PROGRAM, &["-O1"]) else {
        return;
    };
    // 1 ms sleeps until it is killed a second into the 3 s window (a
    // zombie until reaped below).
    let mut c = start_ready(&bin, &[]);
    let t = Target::start(1);
    let args = [
        "-t1",
        "-c2",
        "-d",
        "3s",
        "--off-cpu",
        "--profile-pid",
        &c.id().to_string(),
        &t.url("/"),
    ];
    let (json, text, code) = run_json_killing(&args, &c);
    let _ = c.0.wait();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("exited during the run"), "{text}");
    let off = &json["profile"]["off_cpu"];
    assert!(off["waits"].as_u64().unwrap() > 200, "{off}");
    assert!(
        off["by_state"]["sleep_us"].as_f64().unwrap() > 200_000.0,
        "{off}"
    );
    assert!(json["requests"].as_u64().unwrap() > 100);
    let _ = std::fs::remove_file(bin);
}

#[test]
fn without_privileges_off_cpu_says_why_once_and_the_load_runs() {
    let Some(_g) = serial() else { return };
    let t = Target::start(1);
    let json = run_unprivileged("--off-cpu", &t.url("/"));
    assert!(json["series"][0].get("target_off_cpu_ms").is_none());
}

#[test]
fn compare_and_diff_flame_read_off_cpu_profiles_per_request() {
    let Some(_g) = serial() else { return };
    let dir = tmp("cmp");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    // The same server sleeping 2 ms, then 6 ms, per request: three runs
    // each, so `compare` samples run by run.
    for sleep in [2u32, 6] {
        let Some(py) = PyServer::start(sleep, None) else {
            return;
        };
        let json = dir.join(format!("{sleep}.json"));
        let folded = dir.join(format!("{sleep}.folded"));
        let pid = py.pid().to_string();
        let out = loadgen_tests::run(&[
            "-t1",
            "-c4",
            "-d",
            "1s",
            "--runs",
            "3",
            "--off-cpu",
            "--profile-pid",
            &pid,
            "--off-cpu-folded",
            folded.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            &py.url(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        files.push((json, folded));
    }
    let (base, new) = (&files[0], &files[1]);
    let out = loadgen_tests::run(&[
        "compare",
        base.0.to_str().unwrap(),
        new.0.to_str().unwrap(),
        "--json",
    ]);
    let c: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(c["samples"], "runs", "{c}");
    let row = c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "off-CPU per request")
        .unwrap_or_else(|| panic!("no off-CPU row: {c}"));
    // A request waits about 3× as long, and the server serves a third as
    // many: the total would hide it, per request it shows.
    assert_eq!(row["verdict"], "slower", "{row}");
    assert!(row["delta_pct"].as_f64().unwrap() > 50.0, "{row}");
    let svg = dir.join("diff.svg");
    let out = loadgen_tests::run(&[
        "diff-flame",
        base.1.to_str().unwrap(),
        new.1.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--base-report",
        base.0.to_str().unwrap(),
        "--new-report",
        new.0.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Off-CPU µs per request"), "{text}");
    // What a request waited in the sleeps, from the files themselves.
    let per_request = |(json, f): &(PathBuf, PathBuf)| {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        us_with(&folded(f), "nanosleep") as f64 / doc["requests"].as_f64().unwrap()
    };
    let (b, n) = (per_request(base), per_request(new));
    assert!(
        (1500.0..3000.0).contains(&b) && (4500.0..8000.0).contains(&n),
        "sleep µs per request: {b:.0} → {n:.0}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("µs"));
    let _ = std::fs::remove_dir_all(dir);
}
