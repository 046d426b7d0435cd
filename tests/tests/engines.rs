//! Two independent I/O paths over one HTTP core must agree: the same `-n`
//! loads through the io_uring engine and the glommio engine give identical
//! request and byte counts, and both match the target's own count.

use std::process::Command;

use loadgen_tests::{Target, loadgen_bin, run_json};

fn counts(t: &Target, engine: &str, args: &[&str], path: &str) -> (u64, u64, u64) {
    let before = t.responses();
    let url = t.url(path);
    let mut all = vec!["--engine", engine];
    all.extend_from_slice(args);
    all.push(&url);
    let (json, text, code) = run_json(&all);
    assert_eq!(code, 0, "{engine} {args:?}: {text}");
    assert_eq!(
        json["engine"],
        if engine == "uring" {
            "io_uring"
        } else {
            "glommio"
        }
    );
    let served = t.responses() - before;
    (
        json["requests"].as_u64().unwrap(),
        json["bytes_read"].as_u64().unwrap(),
        served,
    )
}

#[test]
fn both_engines_count_the_same() {
    let t = Target::start(1);
    for (args, path, n) in [
        (&["-t1", "-c16", "-n", "5000"][..], "/", 5000),
        (
            &["-t1", "-c16", "-n", "5000", "--pipeline", "16"],
            "/",
            5000,
        ),
        (
            &["-t2", "-c7", "-n", "5001", "--pipeline", "3", "--no-pin"],
            "/",
            5001,
        ),
        (&["-t1", "-c4", "-n", "300"], "/chunked/7000", 300),
        (&["-t1", "-c4", "-n", "200"], "/eof/3000", 200),
        (
            &["-t1", "-c2", "-n", "200", "-m", "HEAD"],
            "/bytes/999",
            200,
        ),
    ] {
        let uring = counts(&t, "uring", args, path);
        let glommio = counts(&t, "glommio", args, path);
        assert_eq!(
            uring, glommio,
            "{args:?} {path}: io_uring vs glommio (requests, bytes, served)"
        );
        assert_eq!(uring.0, n);
        assert_eq!(uring.2, n, "the target's own count");
    }
}

#[test]
fn glommio_runs_duration_and_open_loop_modes() {
    let t = Target::start(1);
    let (json, text, code) =
        run_json(&["--engine", "glommio", "-t1", "-c8", "-d", "1s", &t.url("/")]);
    assert_eq!(code, 0, "{text}");
    assert!(json["requests"].as_u64().unwrap() > 100);
    let secs = json["duration_s"].as_f64().unwrap();
    assert!((0.95..1.1).contains(&secs), "{secs}");
    let (json, text, code) = run_json(&[
        "--engine",
        "glommio",
        "-t1",
        "-c8",
        "-d",
        "2s",
        "-R",
        "1000",
        &t.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    let rps = json["rps"].as_f64().unwrap();
    assert!((rps - 1000.0).abs() <= 20.0, "{rps}");
    assert!(json["service_time_us"]["p50"].as_u64().unwrap() > 0);
}

#[test]
fn auto_picks_io_uring_here_and_falls_back_when_told_the_kernel_lacks_it() {
    let t = Target::start(1);
    let (json, text, _) = run_json(&["-t1", "-c2", "-n", "10", &t.url("/")]);
    assert_eq!(json["engine"], "io_uring", "{text}");
    assert_eq!(json["ring_mode"], "defer_taskrun");
    assert!(!text.contains("notice"), "{text}");

    let out = Command::new(loadgen_bin())
        .env("LOADGEN_FORCE_NO_DEFER_TASKRUN", "1")
        .args(["-t1", "-c2", "-n", "10", "--json", "-"])
        .arg(t.url("/"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notice: using the glommio engine") && err.contains("DEFER_TASKRUN"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["engine"], "glommio");
    assert_eq!(json["requests"], 10);
    // glommio builds no ring of ours: no mode to report (it said "plain").
    assert!(json["ring_mode"].is_null(), "{json}");
}

#[test]
fn io_uring_engine_falls_back_to_weaker_ring_modes_with_a_notice() {
    let t = Target::start(1);
    for (mode, want) in [("coop", "coop_taskrun"), ("plain", "plain")] {
        let out = Command::new(loadgen_bin())
            .env("LOADGEN_RING_MODE", mode)
            .args([
                "--engine",
                "uring",
                "-t1",
                "-c4",
                "-n",
                "2000",
                "--pipeline",
                "4",
                "--json",
                "-",
            ])
            .arg(t.url("/"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("notice: io_uring ran with"), "{err}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["ring_mode"], want);
        assert_eq!(json["requests"], 2000);
    }
}

#[test]
fn glommio_memlock_shortfall_is_one_clear_line() {
    let t = Target::start(1);
    let out = Command::new("prlimit")
        .args(["--memlock=65536:65536", "--"])
        .arg(loadgen_bin())
        .args(["--engine", "glommio", "-t1", "-c2", "-n", "10"])
        .arg(t.url("/"))
        .output()
        .expect("prlimit (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("512 KiB of locked memory") && err.contains("ulimit -l"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
