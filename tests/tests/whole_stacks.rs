//! Whole stacks by default (`--unwind auto`, no `--stack-bytes`): deep C
//! stacks with and without frame pointers reach `main`, Debian's Python
//! and Go's stacks reach their roots, and a stack deeper than a limit is
//! said to be. Root (or CAP_BPF + CAP_PERFMON) needed; SKIP loudly
//! without, and LOADGEN_REQUIRE_ALL=1 makes that a failure.

use loadgen::profile::Folded;
use loadgen_tests::go::{GoOptions, GoServer};
use loadgen_tests::nghttp2::have_nghttp2;
use loadgen_tests::pki::Pki;
use loadgen_tests::profiling::{folded, serial, start_deep, tmp};
use loadgen_tests::python::PyServer;
use loadgen_tests::{Target, run_json, skip};

/// Share of samples whose stack holds `frame`.
fn share_with(f: &Folded, frame: &str) -> f64 {
    let hit: u64 = f
        .stacks
        .iter()
        .filter(|(s, _)| s.iter().any(|x| x == frame))
        .map(|(_, n)| n)
        .sum();
    hit as f64 / f.total().max(1) as f64
}

/// Share of samples whose outermost user frame is one of `roots`.
fn rooted_in(f: &Folded, roots: &[&str]) -> f64 {
    let hit: u64 = f
        .stacks
        .iter()
        // s[0] is the process name.
        .filter(|(s, _)| s.get(1).is_some_and(|r| roots.contains(&r.as_str())))
        .map(|(_, n)| n)
        .sum();
    hit as f64 / f.total().max(1) as f64
}

/// Profiles `pid` under a light load of the built-in target with `extra`
/// flags; returns the report, the text and the folded stacks.
fn profile(pid: u32, name: &str, extra: &[&str]) -> (serde_json::Value, String, Folded) {
    let t = Target::start(1);
    let path = tmp(&format!("{name}.folded"));
    let (pid, url) = (pid.to_string(), t.url("/"));
    let args = [
        &["-t1", "-c2", "-d", "3s", "--profile-pid", &pid][..],
        extra,
        &["--folded", path.to_str().unwrap(), &url],
    ]
    .concat();
    let (json, text, code) = run_json(&args);
    assert_eq!(code, 0, "{text}");
    let f = folded(&path);
    let _ = std::fs::remove_file(path);
    (json, text, f)
}

/// Samples whose stack holds all `depth + 1` frames of `deep` under
/// `main`: the whole recursion.
fn whole_share(f: &Folded, depth: usize) -> f64 {
    let whole: u64 = f
        .stacks
        .iter()
        .filter(|(s, _)| {
            s.iter().any(|x| x == "main") && s.iter().filter(|x| *x == "deep").count() == depth + 1
        })
        .map(|(_, n)| n)
        .sum();
    whole as f64 / f.total().max(1) as f64
}

/// The default profile of a 100-frame recursion built with `flags`: DWARF,
/// the copy raised past 16 KiB, and the whole recursion under `main` in
/// ≥ 90 % of the samples. Returns the default's whole share.
fn deep_is_whole_by_default(name: &str, flags: &[&str]) -> Option<(f64, u32)> {
    let (child, bin) = start_deep(name, flags, 100)?;
    let (json, text, f) = profile(child.id(), name, &[]);
    let p = &json["profile"];
    assert_eq!(p["unwind"], "dwarf", "{text}");
    assert_eq!(p["stack_bytes"], 16384, "{text}");
    let raised = p["stack_bytes_max"].as_u64().unwrap();
    assert!(raised > 32768, "copy not raised: {text}");
    assert!(text.contains("raised to"), "{text}");
    assert!(f.total() >= 100, "only {} samples: {text}", f.total());
    let main = share_with(&f, "main");
    let whole = whole_share(&f, 100);
    assert!(main >= 0.9, "main in {:.1}%: {text}", 100.0 * main);
    assert!(whole >= 0.9, "whole in {:.1}%: {text}", 100.0 * whole);
    assert!(!text.contains("deeper than"), "{text}");
    let _ = std::fs::remove_file(bin);
    drop(child);
    Some((whole, raised as u32))
}

#[test]
fn a_100_frame_stack_with_frame_pointers_is_whole_by_default_and_as_with_fp() {
    let Some(_g) = serial() else { return };
    // ~384 bytes a frame: ~38 KiB.
    let flags = ["-O2", "-fno-omit-frame-pointer", "-DPAD=360"];
    let Some((auto, _)) = deep_is_whole_by_default("deepfp", &flags) else {
        return;
    };
    let (child, bin) = start_deep("deepfp2", &flags, 100).unwrap();
    let (json, text, f) = profile(child.id(), "deepfp-fp", &["--unwind", "fp"]);
    assert_eq!(json["profile"]["unwind"], "fp", "{text}");
    let fp = whole_share(&f, 100);
    eprintln!(
        "whole: auto {:.1}%, --unwind fp {:.1}%",
        100.0 * auto,
        100.0 * fp
    );
    assert!(
        auto + 0.05 >= fp,
        "auto {:.1}% < fp {:.1}%",
        100.0 * auto,
        100.0 * fp
    );
    let _ = std::fs::remove_file(bin);
}

#[test]
fn a_48k_stack_without_frame_pointers_is_whole_by_default() {
    let Some(_g) = serial() else { return };
    // ~480 bytes a frame: ~48 KiB, three times the first copy.
    let flags = ["-O2", "-fomit-frame-pointer", "-DPAD=460"];
    let Some((_, raised)) = deep_is_whole_by_default("deepnofp", &flags) else {
        return;
    };
    assert!(raised >= 48 * 1024, "{raised}");
}

#[test]
fn an_explicit_stack_bytes_is_kept_and_the_cut_is_said() {
    let Some(_g) = serial() else { return };
    let Some((child, bin)) = start_deep("deepfixed", &["-O2", "-DPAD=460"], 100) else {
        return;
    };
    let (json, text, f) = profile(child.id(), "deepfixed", &["--stack-bytes", "16k"]);
    let p = &json["profile"];
    assert_eq!(p["stack_bytes_max"], 16384, "{text}");
    assert!(share_with(&f, "main") < 0.1, "{text}");
    assert!(
        text.contains("of stacks were deeper than --stack-bytes 16k"),
        "{text}"
    );
    let _ = std::fs::remove_file(bin);
}

#[test]
fn stacks_deeper_than_the_frame_limits_are_said_to_be() {
    let Some(_g) = serial() else { return };
    // 1500 frames of 32 bytes: 48 KiB, more frames than either walk takes.
    let flags = ["-O2", "-fno-omit-frame-pointer", "-DPAD=8"];
    let Some((child, bin)) = start_deep("deep1500", &flags, 1500) else {
        return;
    };
    let (_, text, f) = profile(child.id(), "deep1500", &[]);
    assert!(
        text.contains("of stacks were deeper than 1024 frames"),
        "{text}"
    );
    assert!(f.stacks.iter().any(|(s, _)| s.len() > 1000), "{text}");
    let (_, text, _) = profile(child.id(), "deep1500-fp", &["--unwind", "fp"]);
    assert!(
        text.contains("of frame-pointer stacks reached the kernel's 127-frame limit"),
        "{text}"
    );
    let _ = std::fs::remove_file(bin);
}

#[test]
fn debian_python_threads_are_rooted_in_start_thread() {
    let Some(_g) = serial() else { return };
    // No sleep: the handler threads burn CPU in the interpreter.
    let Some(py) = PyServer::start(0, None) else {
        return;
    };
    let path = tmp("python.folded");
    let url = format!("http://127.0.0.1:{}/", py.port);
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-d",
        "3s",
        "--profile",
        "--folded",
        path.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["profile"]["unwind"], "dwarf", "{text}");
    let f = folded(&path);
    let _ = std::fs::remove_file(path);
    assert!(f.total() >= 50, "{text}");
    let rooted = rooted_in(&f, &["_start", "__clone3", "clone3", "start_thread"]);
    assert!(
        rooted >= 0.9,
        "rooted in _start or a thread start in {:.1}%: {text}\n{:?}",
        100.0 * rooted,
        f.stacks.iter().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn go_is_as_whole_by_default_as_with_frame_pointers() {
    let Some(_g) = serial() else { return };
    if !have_nghttp2() {
        return;
    }
    let pki = match Pki::new() {
        Ok(p) => p,
        Err(e) => {
            skip(&e);
            return;
        }
    };
    let Some(go) = GoServer::start(&pki, &GoOptions::default()) else {
        return;
    };
    // Go keeps frame pointers, and its goroutines switch stacks (mcall,
    // systemstack): a walk in the kernel follows the switch, a walk
    // through a copy of one stack does not. Auto picks frame pointers.
    let roots = [
        "runtime.goexit.abi0",
        "runtime.goexit",
        "runtime.mstart.abi0",
        "runtime.mstart",
    ];
    let mut shares = Vec::new();
    for unwind in ["auto", "fp"] {
        let path = tmp(&format!("go-{unwind}.folded"));
        let (json, text, code) = run_json(&[
            "-t1",
            "-c4",
            "--http2",
            "-k",
            "-d",
            "3s",
            "--unwind",
            unwind,
            "--profile-pid",
            &go.pid().to_string(),
            "--folded",
            path.to_str().unwrap(),
            &go.url("/"),
        ]);
        assert_eq!(code, 0, "{text}");
        assert_eq!(json["profile"]["unwind_requested"], unwind, "{text}");
        assert_eq!(json["profile"]["unwind"], "fp", "{text}");
        let f = folded(&path);
        let _ = std::fs::remove_file(path);
        assert!(f.total() >= 50, "{text}");
        let rooted = rooted_in(&f, &roots);
        eprintln!(
            "go, --unwind {unwind}: rooted in {:.1}% of {}",
            100.0 * rooted,
            f.total()
        );
        let mut top = f.stacks.clone();
        top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        top.retain(|(s, _)| !s.get(1).is_some_and(|r| roots.contains(&r.as_str())));
        for (s, n) in top.iter().take(8) {
            eprintln!("  {n} {}", s.join(";"));
        }
        shares.push(rooted);
    }
    assert!(
        shares[0] + 0.05 >= shares[1] && shares[0] >= 0.8,
        "rooted: auto {:.1}%, fp {:.1}%",
        100.0 * shares[0],
        100.0 * shares[1]
    );
}
