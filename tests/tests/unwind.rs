//! DWARF unwinding against real processes: Debian's nginx (no frame
//! pointers) compared with `perf record --call-graph dwarf` on the same
//! load, a C program built without frame pointers, and glibc's calls in
//! our own target. Root (or CAP_BPF + CAP_PERFMON) needed; SKIP loudly
//! without, and LOADGEN_REQUIRE_ALL=1 makes that a failure.

use loadgen_tests::nginx::{Nginx, find_nginx};
use loadgen_tests::perf::{PerfRecord, perf_usable};
use loadgen_tests::profiling::{CALL_CHAIN, folded, serial, start_call_chain, tmp};
use loadgen_tests::{Target, run, run_json, skip};

/// Share of samples whose stack holds `frame` (each stack root first).
fn share<'a>(stacks: impl Iterator<Item = (&'a [String], u64)>, frame: &str) -> (f64, u64) {
    let (mut hit, mut total) = (0, 0);
    for (s, n) in stacks {
        total += n;
        if s.iter().any(|f| f == frame) {
            hit += n;
        }
    }
    (hit as f64 / total.max(1) as f64, total)
}

#[test]
fn nginx_without_frame_pointers_profiles_like_perf_dwarf() {
    let Some(_g) = serial() else { return };
    if find_nginx().is_none() {
        skip("nginx is not installed (apt-get install nginx-light)");
        return;
    }
    if let Err(why) = perf_usable() {
        skip(&why);
        return;
    }
    let nginx = Nginx::start(0).expect("start nginx");
    let workers = nginx.workers();
    assert_eq!(workers.len(), 1, "one worker: {workers:?}");
    let worker = workers[0];
    // perf records the same worker over the same load: it starts first,
    // loadgen's window opens after a warm-up, and perf stops when loadgen
    // is done.
    let perf = PerfRecord::start(worker, 99, 16384).expect("perf record");
    let path = tmp("nginx.folded");
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let (json, text, code) = run_json(&[
        "-t1",
        "-c32",
        "-d",
        "4s",
        "--warmup",
        "500ms",
        "--profile-pid",
        &worker.to_string(),
        "--folded",
        path.to_str().unwrap(),
        &url,
    ]);
    let perf_stacks = perf.finish();
    assert_eq!(code, 0, "{text}");
    let p = &json["profile"];
    assert_eq!(p["unwind"], "dwarf", "auto picks DWARF for nginx: {text}");
    assert!(text.contains("unwound with DWARF CFI"), "{text}");
    assert!(
        !text.contains("lacks frame pointers"),
        "the frame-pointer warning should not fire: {text}"
    );
    let ours = folded(&path);
    let our_stacks = || ours.stacks.iter().map(|(s, n)| (s.as_slice(), *n));
    let perf_iter = || perf_stacks.iter().map(|s| (s.as_slice(), 1));
    let (main, n) = share(our_stacks(), "main");
    assert!(n >= 100, "only {n} samples: {text}");
    assert!(
        main >= 0.9,
        "main in {:.1}% of {n} samples: {text}",
        100.0 * main
    );
    let (_, perf_n) = share(perf_iter(), "main");
    assert!(perf_n >= 100, "perf recorded only {perf_n} samples");
    for f in [
        "main",
        "ngx_process_events_and_timers",
        "ngx_http_core_run_phases",
    ] {
        let (a, na) = share(our_stacks(), f);
        let (b, nb) = share(perf_iter(), f);
        // Two samples of the same process: allow four standard errors of
        // the difference of the proportions, and never less than 8 points.
        let p = (a * na as f64 + b * nb as f64) / (na + nb) as f64;
        let se = (p * (1.0 - p) * (1.0 / na as f64 + 1.0 / nb as f64)).sqrt();
        let tol = (4.0 * se).max(0.08);
        eprintln!(
            "{f}: loadgen {:.1}% of {na}, perf {:.1}% of {nb}",
            100.0 * a,
            100.0 * b
        );
        assert!(
            (a - b).abs() <= tol,
            "{f}: loadgen {:.1}% of {na} samples, perf --call-graph dwarf {:.1}% of {nb} (tolerance {:.1} points)",
            100.0 * a,
            100.0 * b,
            100.0 * tol
        );
    }
    let cost = &p["cost"];
    for k in [
        "bpf_ns_per_sample",
        "bpf_cpu_pct",
        "ringbuf_bytes",
        "user_unwind_s",
        "user_symbolize_s",
    ] {
        assert!(cost[k].is_number(), "cost.{k} missing: {cost}");
    }
    assert!(
        cost["ringbuf_bytes"].as_u64().unwrap() > 100 * 4096,
        "{cost}"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn c_built_without_frame_pointers_gets_its_whole_chain() {
    let Some(_g) = serial() else { return };
    let Some((child, bin)) = start_call_chain("nofp", &["-O2", "-fomit-frame-pointer"]) else {
        return;
    };
    let t = Target::start(1);
    let path = tmp("nofp.folded");
    let (json, text, code) = run_json(&[
        "-t1",
        "-c2",
        "-d",
        "2s",
        "--profile-pid",
        &child.id().to_string(),
        "--folded",
        path.to_str().unwrap(),
        &t.url("/"),
    ]);
    drop(child);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["profile"]["unwind"], "dwarf", "{text}");
    let f = folded(&path);
    let chain = [&["__libc_start_call_main"][..], &CALL_CHAIN].concat();
    let full: u64 = f
        .stacks
        .iter()
        .filter(|(s, _)| s.windows(chain.len()).any(|w| w == chain))
        .map(|(_, n)| n)
        .sum();
    assert!(f.total() > 50, "{text}");
    assert!(
        full * 10 >= f.total() * 9,
        "{} in {full} of {} samples: {text}",
        chain.join(";"),
        f.total()
    );
    assert!(!text.contains("lacks frame pointers"), "{text}");
    for p in [path, bin] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn our_targets_libc_calls_sit_under_drive_not_the_root() {
    let Some(_g) = serial() else { return };
    let t = Target::start(1);
    let path = tmp("target.folded");
    let (json, text, code) = run_json(&[
        "-t1",
        "-c8",
        "-d",
        "2s",
        "--profile",
        "--folded",
        path.to_str().unwrap(),
        &t.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["profile"]["unwind"], "dwarf", "{text}");
    let f = folded(&path);
    for call in ["__libc_send", "__libc_recv"] {
        let (mut under, mut total) = (0, 0);
        for (s, n) in &f.stacks {
            if let Some(i) = s.iter().position(|fr| fr == call) {
                total += n;
                if s[..i].iter().any(|fr| fr == "drive") {
                    under += n;
                }
            }
        }
        assert!(total > 0, "no {call} in the profile: {text}");
        assert!(
            under * 10 >= total * 9,
            "{call} under drive in {under} of {total} samples"
        );
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn auto_keeps_frame_pointers_when_stack_copies_would_flood_the_ring() {
    let Some(_g) = serial() else { return };
    let t = Target::start(1);
    // 10 kHz × 64 KiB on a busy CPU is over the 512 MiB/s budget.
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-d",
        "1s",
        "--profile",
        "--profile-freq",
        "10000",
        "--stack-bytes",
        "64k",
        &t.url("/cpu/500"),
    ]);
    assert_eq!(code, 0, "{text}");
    let p = &json["profile"];
    assert_eq!(p["unwind"], "fp", "{text}");
    assert_eq!(p["unwind_requested"], "auto");
    assert!(
        p["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("ring-buffer budget")),
        "{text}"
    );
    assert!(text.contains("unwound with frame pointers"), "{text}");
}

#[test]
fn bad_unwind_flags_are_one_line_usage_errors() {
    for args in [
        &["--stack-bytes", "5000"][..],
        &["--stack-bytes", "128k"],
        &["--unwind", "lbr"],
    ] {
        let out = run(&[args, &["-d", "1s", "http://127.0.0.1:1/"]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().next().unwrap_or("");
        assert!(
            line.contains("--stack-bytes must be") || line.contains("--unwind must be"),
            "{args:?}: {err}"
        );
    }
}
