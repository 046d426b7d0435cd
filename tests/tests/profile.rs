//! The profiler against real processes. These need CAP_BPF + CAP_PERFMON
//! (root, which CI has); without them they SKIP loudly, and
//! LOADGEN_REQUIRE_ALL=1 turns that into a failure.

use std::path::Path;

use loadgen::profile::Folded;
use loadgen_tests::profiling::{
    CALL_CHAIN, folded, run_json_killing, run_unprivileged, serial, start_call_chain, start_ready,
    tmp,
};
use loadgen_tests::{Target, build_c, process_cpu, run, run_json};

#[test]
fn finds_the_hot_function_with_the_expected_sample_count() {
    let Some(_g) = serial() else { return };
    let t = Target::start(1);
    let folded_path = tmp("hot.folded");
    let cpu_before = process_cpu(t.pid());
    let (json, text, code) = run_json(&[
        "-t1",
        "-c8",
        "-d",
        "4s",
        "--profile",
        "--folded",
        folded_path.to_str().unwrap(),
        &t.url("/cpu/3000"),
    ]);
    let target_cpu = (process_cpu(t.pid()) - cpu_before).as_secs_f64();
    assert_eq!(code, 0, "{text}");
    let p = &json["profile"];
    assert_eq!(
        p["pids"][0],
        t.pid(),
        "--profile found another process: {p}"
    );
    let top = &p["functions"][0];
    assert_eq!(top["name"], "cpu_burn_round", "{text}");
    assert!(top["self_pct"].as_f64().unwrap() > 50.0, "{text}");
    // 99 Hz on each CPU, counting only while the target runs: freq × the
    // target's CPU time in the window.
    let samples = p["samples"].as_f64().unwrap();
    let expected = 99.0 * target_cpu;
    assert!(
        (samples - expected).abs() <= 0.3 * expected,
        "{samples} samples, expected ≈ {expected:.0} (target used {target_cpu:.2} s of CPU)"
    );
    // The hot function is reached through its named caller.
    let f = folded(&folded_path);
    assert!(
        f.stacks.iter().any(|(s, _)| s
            .windows(2)
            .any(|w| w[0] == "cpu_burn" && w[1] == "cpu_burn_round")),
        "no cpu_burn;cpu_burn_round in the folded stacks"
    );
    let _ = std::fs::remove_file(folded_path);
}

#[test]
fn kernel_frames_are_symbolized() {
    let Some(_g) = serial() else { return };
    let t = Target::start(1);
    let folded_path = tmp("kernel.folded");
    let out = run(&[
        "-t1",
        "-c8",
        "-d",
        "2s",
        "--profile-pid",
        &t.pid().to_string(),
        "--folded",
        folded_path.to_str().unwrap(),
        &t.url("/"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = folded(&folded_path);
    let kernel: Vec<&String> = f
        .stacks
        .iter()
        .flat_map(|(s, _)| s)
        .filter(|fr| fr.ends_with("_[k]"))
        .collect();
    assert!(
        !kernel.is_empty(),
        "no kernel frames in a syscall-heavy profile"
    );
    let named = kernel
        .iter()
        .filter(|fr| !fr.starts_with("[unknown]"))
        .count();
    assert!(
        named * 10 >= kernel.len() * 9,
        "{named} of {} kernel frames named",
        kernel.len()
    );
    assert!(
        kernel
            .iter()
            .any(|fr| fr.contains("sys_") || fr.contains("tcp_")),
        "no syscall or TCP frames: {:?}",
        &kernel[..kernel.len().min(10)]
    );
    let _ = std::fs::remove_file(folded_path);
}

fn profile_pid(pid: u32, folded_path: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let t = Target::start(1);
    let pid = pid.to_string();
    let url = t.url("/");
    let mut args = vec![
        "-t1",
        "-c2",
        "-d",
        "2s",
        "--profile-pid",
        &pid,
        "--folded",
        folded_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let (json, text, code) = run_json(&args);
    assert_eq!(code, 0, "{text}");
    (json, text)
}

#[test]
fn with_unwind_fp_c_with_frame_pointers_unwinds_fully_without_does_not_and_says_so() {
    let Some(_g) = serial() else { return };
    let Some((fp, fp_bin)) = start_call_chain(
        "cfp",
        // -O0: gcc 12 at -O1 gives a leaf that never touches the stack no
        // frame even with -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
        // (its caller then drops out of the stack: seen here); at -O0 every
        // function gets one, so the whole chain must show.
        &["-O0", "-fno-omit-frame-pointer"],
    ) else {
        return;
    };
    let path = tmp("cfp.folded");
    let (json, text) = profile_pid(fp.id(), &path, &["--unwind", "fp"]);
    drop(fp);
    let f = folded(&path);
    let chain = CALL_CHAIN;
    let full: u64 = f
        .stacks
        .iter()
        .filter(|(s, _)| s.windows(4).any(|w| w == chain))
        .map(|(_, n)| n)
        .sum();
    assert!(
        full * 2 > f.total(),
        "main;level1;level2;level3 in {full} of {} samples: {text}",
        f.total()
    );
    assert!(!text.contains("lacks frame pointers"), "{text}");
    assert!(json["profile"]["samples"].as_u64().unwrap() > 50);

    let Some((nofp, nofp_bin)) = start_call_chain("cnofp", &["-O2", "-fomit-frame-pointer"]) else {
        return;
    };
    let path2 = tmp("cnofp.folded");
    let (json, text) = profile_pid(nofp.id(), &path2, &["--unwind", "fp"]);
    drop(nofp);
    assert!(text.contains("lacks frame pointers"), "{text}");
    assert!(text.contains("-fno-omit-frame-pointer"), "{text}");
    assert!(
        json["profile"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("frame pointers"))
    );
    for p in [path, path2, fp_bin, nofp_bin] {
        let _ = std::fs::remove_file(p);
    }
}

/// A "JIT": machine code copied into an anonymous executable mapping and
/// named in /tmp/perf-PID.map, as JVMs, V8 and CPython 3.12 `-X perf` do.
const JIT_PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static const unsigned char code[] = {0x48, 0xff, 0xcf, 0x75, 0xfb, 0xc3}; /* dec rdi; jnz; ret */
int main(int argc, char **argv) {
    void *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    memcpy(p, code, sizeof code);
    char path[64];
    snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "%lx %x jitted_hot_loop\n", (unsigned long)p, 4096);
    fclose(f);
    printf("ready\n");
    fflush(stdout);
    void (*fn)(long) = (void (*)(long))p;
    time_t end = time(0) + (argc > 1 ? atoi(argv[1]) : 5);
    while (time(0) < end) fn(50000000);
    unlink(path);
    return 0;
}
"#;

#[test]
fn jit_frames_from_a_perf_map_are_named_and_marked_with_either_unwinder() {
    let Some(_g) = serial() else { return };
    let Some(bin) = build_c("jit", JIT_PROGRAM, &["-O1"]) else {
        return;
    };
    // The perf map is written and the loop about to start.
    let jit = start_ready(&bin, &["8"]);
    let path = tmp("jit.folded");
    // auto: the program links glibc, so DWARF, and the JIT code (no CFI)
    // unwinds with frame pointers within it.
    for mode in ["auto", "fp"] {
        let (_json, text) = profile_pid(jit.id(), &path, &["--unwind", mode]);
        let f = folded(&path);
        let jitted: u64 = f
            .stacks
            .iter()
            .filter(|(s, _)| s.iter().any(|fr| fr == "jitted_hot_loop_[j]"))
            .map(|(_, n)| n)
            .sum();
        assert!(
            jitted * 2 > f.total(),
            "--unwind {mode}: jitted_hot_loop_[j] in {jitted} of {} samples: {text}",
            f.total()
        );
    }
    drop(jit);
    for p in [bin, path] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn flamegraph_is_well_formed_and_folded_round_trips() {
    let Some(_g) = serial() else { return };
    let t = Target::start(1);
    let svg = tmp("flame.svg");
    let folded_path = tmp("flame.folded");
    let out = run(&[
        "-t1",
        "-c8",
        "-d",
        "2s",
        "-R",
        "3000",
        "--profile",
        "--flamegraph",
        svg.to_str().unwrap(),
        "--folded",
        folded_path.to_str().unwrap(),
        &t.url("/cpu/2000"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut elements = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_)) => elements += 1,
            Ok(_) => {}
            Err(e) => panic!(
                "flamegraph is not well-formed XML at {}: {e}",
                reader.buffer_position()
            ),
        }
    }
    assert!(elements > 10);
    assert!(text.contains("cpu_burn_round"));
    assert!(text.contains("3000 req/s"), "title names the rate");
    assert!(
        text.contains("samples at 99 Hz"),
        "title names the sample count and rate"
    );
    // Folded → read → write gives the same bytes.
    let bytes = std::fs::read(&folded_path).unwrap();
    let mut again = Vec::new();
    Folded::read(bytes.as_slice())
        .unwrap()
        .write(&mut again)
        .unwrap();
    assert_eq!(
        String::from_utf8(again).unwrap(),
        String::from_utf8(bytes).unwrap()
    );
    let _ = std::fs::remove_file(svg);
    let _ = std::fs::remove_file(folded_path);
}

#[test]
fn without_privileges_the_load_still_runs_and_says_why() {
    let Some(_g) = serial() else { return };
    let t = Target::start(1);
    run_unprivileged("--profile", &t.url("/"));
}

#[test]
fn a_target_that_exits_mid_run_leaves_a_partial_profile() {
    let Some(_g) = serial() else { return };
    let Some((mut c, bin)) = start_call_chain("cexit", &["-O1", "-fno-omit-frame-pointer"]) else {
        return;
    };
    let t = Target::start(1);
    let (json, text, code) = run_json_killing(
        &[
            "-t1",
            "-c2",
            "-d",
            "5s",
            "--profile-pid",
            &c.id().to_string(),
            &t.url("/"),
        ],
        &c,
    );
    let _ = c.0.wait();
    assert_eq!(code, 0, "{text}");
    let p = &json["profile"];
    assert!(p["samples"].as_u64().unwrap_or(0) > 0, "{text}");
    assert!(json["requests"].as_u64().unwrap() > 100);
    assert!(text.contains("exited during the run"), "{text}");
    let _ = std::fs::remove_file(bin);
}

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn a_failed_attach_leaves_no_reader_thread_behind() {
    let Some(_g) = serial() else { return };
    let t = Target::start(1);
    // Above the kernel's maximum: perf_event_open refuses it, after the
    // session has started its reader.
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cfg = loadgen::profile::ProfileConfig {
        pids: vec![t.pid()],
        freq: max + 1,
        unwind: loadgen::profile::UnwindMode::Fp,
        stack_bytes: Some(8192),
        interpreter_frames: true,
        off_cpu: None,
    };
    let before = threads();
    let mut session = loadgen::profile::Session::start(&cfg).unwrap();
    let err = session.attach().unwrap_err();
    assert!(err.to_string().contains("cannot attach"), "{err}");
    drop(session);
    // A joined thread can stay listed for a moment while it exits; a
    // leaked reader polls its rings forever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while threads() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(threads(), before, "the reader thread outlived its session");
}
