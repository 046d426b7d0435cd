//! Proving a change: `--runs`, `loadgen compare`, `loadgen diff-flame` and
//! `--baseline`, against the built-in target doing twice the work.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use loadgen_tests::{Target, can_profile, run, skip};

static SERIAL: Mutex<()> = Mutex::new(());

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadgen-cmp-{}-{name}", std::process::id()))
}

fn runs(t: &Target, path: &str, json: &Path, extra: &[&str]) {
    let url = t.url(path);
    let mut args = vec![
        "-t1",
        "-c8",
        "-d",
        "1s",
        "--runs",
        "5",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run 5/5"), "{text}");
}

#[test]
fn twice_the_work_is_significantly_slower() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(1);
    let (base, new) = (tmp("base.json"), tmp("new.json"));
    // Work that dominates a request (~150 µs against ~50 µs of the rest),
    // so that twice of it shows through a loaded machine: at 1000
    // iterations (~30 µs) twice the work cost only 10 % of the throughput
    // while other builds ran, and the test saw no difference.
    runs(&t, "/cpu/5000", &base, &[]);
    runs(&t, "/cpu/10000", &new, &[]);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&new).unwrap()).unwrap();
    assert_eq!(
        report["runs"].as_array().unwrap().len(),
        5,
        "every run is in the report"
    );
    assert!(!report["runs"][0]["series"].as_array().unwrap().is_empty());

    let out = run(&[
        "compare",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["samples"], "runs");
    let tput = &c["metrics"][0];
    assert_eq!(tput["metric"], "throughput");
    assert_eq!(tput["verdict"], "slower", "{c}");
    assert!(tput["delta_pct"].as_f64().unwrap() < -15.0, "{c}");
    assert!(tput["p_value"].as_f64().unwrap() < 0.05);

    // The same comparison as a CI gate.
    let out = run(&[
        "compare",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
        "--fail-if-slower",
        "10",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Welch t") || text.contains("Mann-Whitney U"),
        "{text}"
    );
    assert!(text.contains("bootstrap"), "{text}");
    // Against itself: no difference, and the gate passes.
    let out = run(&[
        "compare",
        base.to_str().unwrap(),
        base.to_str().unwrap(),
        "--fail-if-slower",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no significant difference"));
    for p in [base, new] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn differential_flamegraph_shows_the_burn_growing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_profile() {
        skip("diff-flame needs profiles, which need CAP_BPF and CAP_PERFMON (run as root)");
        return;
    }
    let t = Target::start(1);
    let (bj, nj, bf, nf, svg) = (
        tmp("pb.json"),
        tmp("pn.json"),
        tmp("pb.folded"),
        tmp("pn.folded"),
        tmp("diff.svg"),
    );
    runs(
        &t,
        "/",
        &bj,
        &["--profile", "--folded", bf.to_str().unwrap()],
    );
    runs(
        &t,
        "/cpu/2000",
        &nj,
        &["--profile", "--folded", nf.to_str().unwrap()],
    );
    let out = run(&[
        "diff-flame",
        bf.to_str().unwrap(),
        nf.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--base-report",
        bj.to_str().unwrap(),
        "--new-report",
        nj.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["self_share_up"][0]["name"], "cpu_burn_round", "{d}");
    assert!(
        d["samples_per_request"]["change_pct"].as_f64().unwrap() > 50.0,
        "{d}"
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("cpu_burn_round") && svg_text.trim_end().ends_with("</svg>"));

    // --baseline does the same in one go.
    let diff2 = tmp("diff2.svg");
    let out = run(&[
        "-t1",
        "-c8",
        "-d",
        "1s",
        "--runs",
        "3",
        "--profile",
        "--baseline",
        bj.to_str().unwrap(),
        "--diff-flamegraph",
        diff2.to_str().unwrap(),
        &t.url("/cpu/2000"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Compared with") && text.contains("cpu_burn_round"),
        "{text}"
    );
    assert!(std::fs::metadata(&diff2).is_ok());
    for p in [bj, nj, bf, nf, svg, diff2] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn bad_inputs_are_one_line() {
    let empty = tmp("empty.folded");
    std::fs::write(&empty, "").unwrap();
    let one = tmp("one.folded");
    std::fs::write(&one, "a;b 3\n").unwrap();
    let out = run(&[
        "diff-flame",
        empty.to_str().unwrap(),
        one.to_str().unwrap(),
        "-o",
        "/tmp/x-loadgen.svg",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("need samples") && !err.contains("panicked"),
        "{err}"
    );
    let out = run(&["compare", "/nonexistent.json", one.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let out = run(&["compare", one.to_str().unwrap(), one.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loadgen JSON report"));
    let _ = std::fs::remove_file(empty);
    let _ = std::fs::remove_file(one);
}

#[test]
fn scenario_runs_are_compared_per_request() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(1);
    let mix = |heavy: &str| {
        let p = tmp(&format!("mix-{heavy}.toml"));
        std::fs::write(
            &p,
            format!(
                "[[request]]\nname = \"light\"\nurl = \"{}\"\n\n[[request]]\nname = \"heavy\"\nurl = \"/cpu/{heavy}\"\n",
                t.url("/cpu/50")
            ),
        )
        .unwrap();
        p
    };
    let (base, new) = (tmp("mix-base.json"), tmp("mix-new.json"));
    for (heavy, json) in [("1000", &base), ("3000", &new)] {
        let scenario = mix(heavy);
        let out = run(&[
            "-t1",
            "-c8",
            "-d",
            "1s",
            "--runs",
            "3",
            "--json",
            json.to_str().unwrap(),
            "--scenario",
            scenario.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&[
        "compare",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = c["metrics"].as_array().unwrap();
    let heavy_p50 = rows
        .iter()
        .find(|r| r["request"] == "heavy" && r["metric"] == "p50 latency")
        .unwrap_or_else(|| panic!("no per-request row: {c}"));
    assert!(heavy_p50["delta_pct"].as_f64().unwrap() > 50.0, "{c}");
    assert!(rows.iter().any(|r| r["request"] == "light"), "{c}");
    let text = run(&["compare", base.to_str().unwrap(), new.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("heavy: p50 latency"));
}
