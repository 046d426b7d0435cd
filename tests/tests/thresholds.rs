//! `--threshold` as a CI gate: operators and units against a real run, the
//! table and JSON, exit 5, usage errors before the run, the precedence of
//! exit codes, and `loadgen report --threshold` on a saved report.

use loadgen_tests::{Target, run, run_json};

fn thresholds(json: &serde_json::Value) -> Vec<(String, bool)> {
    json["thresholds"]
        .as_array()
        .expect("thresholds in the JSON")
        .iter()
        .map(|t| {
            (
                t["expr"].as_str().unwrap().to_string(),
                t["ok"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn passing_and_failing_thresholds_and_exit_5() {
    let t = Target::start(1);
    let url = t.url("/");
    let passing = [
        "p99<10s",
        "p99.9<=10000ms",
        "p50<=10000000us",
        "mean<1s",
        "max<10s",
        "min>0us",
        "rps>=1",
        "rps>0.001k",
        "requests==2000",
        "requests!=1999",
        "errors==0",
        "errors<0.1%",
        "non2xx==0",
    ];
    let mut args = vec!["-t1", "-c4", "-n", "2000"];
    for p in passing {
        args.extend(["--threshold", p]);
    }
    args.push(&url);
    let (json, text, code) = run_json(&args);
    assert_eq!(code, 0, "{text}");
    let got = thresholds(&json);
    assert_eq!(got.len(), passing.len());
    for (expr, ok) in &got {
        assert!(ok, "{expr} failed: {text}");
    }
    assert!(text.contains("Thresholds:"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    let v = &json["thresholds"][0];
    assert_eq!(v["unit"], "s");
    assert!(v["value"].as_f64().unwrap() < 10.0);

    let failing = [
        "p99>10s",
        "p50<1us",
        "mean>=1s",
        "rps>=1M",
        "requests<2000",
        "errors>0",
        "errors>=0.1%",
        "non2xx!=0",
    ];
    let mut args = vec!["-t1", "-c4", "-n", "2000", "--threshold", "p99<10s"];
    for f in failing {
        args.extend(["--threshold", f]);
    }
    args.push(&url);
    let (json, text, code) = run_json(&args);
    assert_eq!(code, 5, "{text}");
    let got = thresholds(&json);
    assert_eq!(got[0], ("p99<10s".to_string(), true));
    for (expr, ok) in &got[1..] {
        assert!(!ok, "{expr} passed: {text}");
    }
    assert!(text.contains("FAIL"), "{text}");
    assert!(
        text.contains(&format!(
            "{} of {} thresholds failed",
            failing.len(),
            failing.len() + 1
        )),
        "{text}"
    );
    // The load result is all there.
    assert_eq!(json["requests"], 2000);
}

#[test]
fn a_bad_threshold_is_a_usage_error_before_the_run() {
    let t = Target::start(1);
    for (expr, says) in [
        ("p99<<5ms", "operator"),
        ("latency<5ms", "unknown metric"),
        ("p99<5parsecs", "unknown time unit"),
        ("errors<5ms", "count or a percentage"),
    ] {
        let out = run(&["-n", "100", "--threshold", expr, &t.url("/")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expr}: {err}");
        assert!(err.contains(says), "{expr}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("Running"),
            "nothing ran"
        );
    }
    assert_eq!(t.responses(), 0, "no request reached the target");
    // `unexpected` means nothing without --expect-status.
    let out = run(&["-n", "100", "--threshold", "unexpected==0", &t.url("/")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--expect-status"));
}

#[test]
fn exit_codes_have_a_precedence() {
    let t = Target::start(1);
    // 404s outside --expect-status (4) and a failed threshold (5): 4 wins,
    // and both causes are said.
    let (json, text, code) = run_json(&[
        "-t1",
        "-c2",
        "-n",
        "200",
        "--expect-status",
        "2xx",
        "--threshold",
        "unexpected==0",
        "--threshold",
        "unexpected<=100%",
        &t.url("/status/404"),
    ]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("outside --expect-status"), "{text}");
    assert!(
        text.contains("1 of 2 thresholds failed: unexpected==0"),
        "{text}"
    );
    assert_eq!(json["thresholds"][0]["value"], 200.0);
    assert_eq!(json["thresholds"][1]["value"], 100.0);
    assert_eq!(json["thresholds"][1]["ok"], true);
}

#[test]
fn a_saved_report_is_judged_again() {
    let t = Target::start(1);
    let dir = std::env::temp_dir().join(format!("loadgen-thr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.json");
    let out = run(&[
        "-t1",
        "-c2",
        "-n",
        "500",
        "--json",
        path.to_str().unwrap(),
        &t.url("/"),
    ]);
    assert!(out.status.success());
    let p = path.to_str().unwrap();
    let out = run(&[
        "report",
        p,
        "--threshold",
        "requests==500",
        "--threshold",
        "p95<10s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("p95<10s") && text.contains("pass"), "{text}");
    let out = run(&["report", p, "--threshold", "p95>10s"]);
    assert_eq!(out.status.code(), Some(5));
    let out = run(&["report", p]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("500 requests in"),
        "the summary is stored"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A failed threshold is said the same way, and gives the same status,
/// after a run, when a saved report is judged, and when a fleet's parts
/// are merged. `report` once said nothing on stderr, and `merge` did not
/// name the thresholds that failed.
#[test]
fn a_failed_threshold_is_said_alike_by_run_report_and_merge() {
    let t = Target::start(1);
    let dir = std::env::temp_dir().join(format!("loadgen-thr-alike-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let gate = ["--threshold", "requests>=1", "--threshold", "p99>100s"];
    let said = "loadgen: 1 of 2 thresholds failed: p99>100s\n";
    let check = |out: std::process::Output, what: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{what}: {err}");
        assert!(err.ends_with(said), "{what}: {err}");
        assert_eq!(err.matches("thresholds failed").count(), 1, "{what}: {err}");
    };
    let url = t.url("/");
    let mut args = vec!["-t1", "-c2", "-n", "100"];
    let run_json = path("run.json");
    args.extend(["--json", &run_json, &url]);
    args.extend(gate);
    check(run(&args), "run");
    let mut args = vec!["report", run_json.as_str()];
    args.extend(gate);
    check(run(&args), "report");
    let parts = [path("a.json"), path("b.json")];
    for (k, p) in ["1/2", "2/2"].iter().zip(&parts) {
        let out = run(&["-t1", "-c2", "-n", "100", "--part", k, "--json", p, &url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut args = vec!["merge", parts[0].as_str(), parts[1].as_str()];
    args.extend(gate);
    check(run(&args), "merge");
    let _ = std::fs::remove_dir_all(dir);
}
