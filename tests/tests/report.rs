//! The text summary and the JSON agree; Ctrl-C still reports.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loadgen_tests::{Target, loadgen_bin, run, run_json};

#[test]
fn json_has_the_documented_fields_and_agrees_with_the_text() {
    let t = Target::start(1);
    let (json, text, code) = run_json(&["-t1", "-c8", "-d", "1s", "--latency", &t.url("/")]);
    assert_eq!(code, 0, "{text}");
    for key in [
        "url",
        "engine",
        "shards",
        "connections",
        "duration_s",
        "requests",
        "rps",
        "bytes_read",
        "bytes_written",
        "latency_us",
        "status",
        "errors",
    ] {
        assert!(!json[key].is_null(), "missing {key}: {json}");
    }
    for key in [
        "min", "mean", "stdev", "max", "p50", "p75", "p90", "p99", "p99_9", "p99_99",
    ] {
        assert!(
            json["latency_us"][key].is_number(),
            "missing latency_us.{key}"
        );
    }
    for key in [
        "connect", "read", "write", "timeout", "parse", "closed", "reset",
    ] {
        assert!(json["errors"][key].is_number(), "missing errors.{key}");
    }
    for key in ["2xx", "3xx", "4xx", "5xx", "codes"] {
        assert!(!json["status"][key].is_null(), "missing status.{key}");
    }
    let requests = json["requests"].as_u64().unwrap();
    assert!(requests > 100);
    assert!(
        text.contains(&format!("  {requests} requests in ")),
        "text and JSON disagree on requests: {text}"
    );
    let rps = json["rps"].as_f64().unwrap();
    assert!(text.contains(&format!("Requests/sec: {rps:9.2}")), "{text}");
    assert!(text.contains("Running 1s test @ "), "{text}");
    assert!(text.contains("  1 threads and 8 connections"), "{text}");
    assert!(text.contains("  Latency Distribution"), "{text}");
    assert!(text.contains("    Latency "), "{text}");
    assert!(text.contains("    Req/Sec "), "{text}");
    let p = json["latency_us"]["p50"].as_u64().unwrap();
    assert!(p >= 1 && p <= json["latency_us"]["max"].as_u64().unwrap());
}

#[test]
fn json_to_a_file_keeps_the_text_on_stdout() {
    let t = Target::start(1);
    let path = std::env::temp_dir().join(format!("loadgen-report-{}.json", std::process::id()));
    let out = run(&[
        "-t1",
        "-c2",
        "-n",
        "100",
        "--json",
        path.to_str().unwrap(),
        &t.url("/"),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("100 requests in"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["requests"], 100);
    let _ = std::fs::remove_file(path);
}

/// Waits (bounded) until the target has answered `n` requests: the load
/// is running.
fn wait_for_load(t: &Target, n: u64) {
    let started = Instant::now();
    while t.responses() < n {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the load never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) for the child to exit after a signal.
fn exit_of(mut child: std::process::Child) -> std::process::Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_mid_run_still_reports() {
    let t = Target::start(1);
    let path = std::env::temp_dir().join(format!("loadgen-sigint-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let spawned = loadgen_tests::start_clock();
    let child = Command::new(loadgen_bin())
        .args(["-t1", "-c8", "-d", "30s", "--json"])
        .arg(&path)
        .arg(t.url("/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_load(&t, 1000);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = exit_of(child);
    let lived = spawned.elapsed().as_secs_f64();
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("requests in"), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["interrupted"], true);
    assert!(json["requests"].as_u64().unwrap() >= 1000);
    let secs = json["duration_s"].as_f64().unwrap();
    assert!(secs > 0.0 && secs < lived, "measured {secs} s of {lived} s");
    let _ = std::fs::remove_file(path);
}

#[test]
fn sigint_in_a_pause_between_runs_reports_the_finished_runs() {
    use std::io::BufRead;
    let t = Target::start(1);
    let dir = std::env::temp_dir().join(format!("loadgen-pause-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json_path, html_path) = (dir.join("runs.json"), dir.join("runs.html"));
    let mut child = Command::new(loadgen_bin())
        .args(["-t1", "-c2", "-n", "200", "--runs", "5", "--pause", "60s"])
        .arg("--json")
        .arg(&json_path)
        .arg("--html")
        .arg(&html_path)
        .arg(t.url("/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Each run prints its line when it ends; the first is followed by a
    // 60 s pause, which the signal must end.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains("run 1/5:") {
        let before = text.len();
        stdout.read_line(&mut text).unwrap();
        assert!(text.len() > before, "loadgen ended early: {text}");
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let started = Instant::now();
    let out = exit_of(child);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the pause ignored the signal for {:?}",
        started.elapsed()
    );
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    assert!(out.status.success(), "{:?}: {text}", out.status);
    assert!(!text.contains("run 2/5"), "no run after the stop: {text}");
    assert!(text.contains("200 requests in"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(json["interrupted"], true);
    assert_eq!(json["requests"], 200, "the finished run: {json}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<html"), "the HTML page is written");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_stop_before_the_first_run_still_reports() {
    use std::os::unix::process::CommandExt;
    let t = Target::start(1);
    let mut cmd = Command::new(loadgen_bin());
    cmd.args(["-t1", "-c2", "-d", "30s", "--runs", "3", "--json", "-"])
        .arg(t.url("/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec, and only blocks and
    // raises a signal in it (both async-signal-safe). The blocked SIGINT
    // stays pending across exec, so it arrives the moment loadgen's
    // handler unblocks it: between installing the handler and the first
    // run, where it once left no runs and panicked.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::raise(libc::SIGINT);
            Ok(())
        });
    }
    let out = exit_of(cmd.spawn().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["interrupted"], true);
    assert!(json.get("runs").is_none(), "one run, cut short: {json}");
    assert!(err.contains("interrupted"), "{err}");
}

#[test]
fn the_json_names_the_engine_that_ran() {
    let t = Target::start(1);
    let (json, text, _) = run_json(&["-t1", "-c1", "-n", "1", &t.url("/")]);
    // `auto` picks glommio on kernels without DEFER_TASKRUN, and says so.
    let auto = if text.contains("notice: using the glommio engine") {
        "glommio"
    } else {
        "io_uring"
    };
    assert_eq!(json["engine"], auto, "{text}");
    for (flag, name) in [("uring", "io_uring"), ("glommio", "glommio")] {
        let (json, text, _) = run_json(&["-t1", "-c1", "-n", "1", "--engine", flag, &t.url("/")]);
        assert_eq!(json["engine"], name, "{text}");
    }
}

/// The first-column field names of the README's JSON table.
fn readme_json_fields() -> Vec<String> {
    let readme =
        std::fs::read_to_string(loadgen_tests::workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("### JSON report")
        .nth(1)
        .expect("the README has a JSON report section");
    let table = &section[section.find("\n|").expect("with a table") + 1..];
    let mut fields = Vec::new();
    for line in table.lines().take_while(|l| l.starts_with('|')) {
        let first = line.split('|').nth(1).unwrap_or("");
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 && part != "field" {
                fields.push(part.to_string());
            }
        }
    }
    fields
}

#[test]
fn every_field_the_readme_documents_is_in_real_output() {
    let fields = readme_json_fields();
    assert!(fields.len() > 25, "{fields:?}");
    let t = Target::start(1);
    let dir = std::env::temp_dir().join(format!("loadgen-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("mix.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[request]]\nname = \"home\"\nurl = \"{}\"\n\n[[request]]\nname = \"item\"\nurl = \"/bytes/{{{{rand:1:50}}}}\"\n",
            t.url("/")
        ),
    )
    .unwrap();
    // Open loop, a scenario, --expect-status and two runs: every optional
    // field but the profile.
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-R",
        "200",
        "-d",
        "1s",
        "--runs",
        "2",
        "--expect-status",
        "2xx",
        "--scenario",
        scenario.to_str().unwrap(),
        "--threshold",
        "requests>0",
        "--server-metrics",
        &t.url("/metrics"),
    ]);
    assert_eq!(code, 0, "{text}");
    // The same against it as a baseline: the `baseline` field.
    let base = dir.join("base.json");
    std::fs::write(&base, serde_json::to_string(&json).unwrap()).unwrap();
    let (with_base, text, code) = run_json(&[
        "-t1",
        "-c2",
        "-d",
        "1s",
        "--baseline",
        base.to_str().unwrap(),
        &t.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    // A part of a fleet, templated (`part_seed`), and its merge (`parts`).
    let part_path = dir.join("part.json");
    let out = run(&[
        "-t1",
        "-c2",
        "-n",
        "20",
        "--part",
        "1/2",
        "--json",
        part_path.to_str().unwrap(),
        &t.url("/bytes/{{rand:1:9}}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let part: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&part_path).unwrap()).unwrap();
    let merged = run(&["merge", part_path.to_str().unwrap(), "--json", "-"]);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let merged: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    let mut docs = vec![json, with_base, part, merged];
    let mut skipped: Vec<&str> = Vec::new();
    if loadgen_tests::can_profile() {
        loadgen_tests::privileged_ran();
        let pid = t.pid().to_string();
        let (json, text, code) = run_json(&[
            "-t1",
            "-c4",
            "-d",
            "1s",
            "--profile-pid",
            &pid,
            "--off-cpu",
            &t.url("/cpu/200"),
        ]);
        assert_eq!(code, 0, "{text}");
        docs.push(json);
    } else {
        loadgen_tests::skip("the `profile` field needs CAP_BPF and CAP_PERFMON (run as root)");
        skipped.extend(["profile", "profile.off_cpu", "profile.sched"]);
    }
    // https: the `tls` section.
    match (
        loadgen_tests::nginx::find_nginx(),
        loadgen_tests::pki::Pki::new(),
    ) {
        (Some(_), Ok(pki)) => {
            let nginx = loadgen_tests::nginx::Nginx::start_tls(
                0,
                &loadgen_tests::nginx::NginxTls {
                    cert: &pki.server_cert,
                    key: &pki.server_key,
                    client_ca: None,
                },
            )
            .unwrap();
            let url = format!("https://localhost:{}/", nginx.port);
            let ca = pki.ca.to_str().unwrap();
            let (json, text, code) = run_json(&["-t1", "-c2", "-n", "100", "--cacert", ca, &url]);
            assert_eq!(code, 0, "{text}");
            docs.push(json);
        }
        _ => {
            loadgen_tests::skip("the `tls` field needs nginx and openssl");
            skipped.push("tls");
        }
    }
    for f in &fields {
        if skipped.contains(&f.as_str()) {
            continue;
        }
        // `a.b` is field b of field a.
        let get = |d: &serde_json::Value| f.split('.').try_fold(d, |v, k| v.get(k)).is_some();
        assert!(
            docs.iter().any(get),
            "the README documents `{f}`, but no report has it"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
