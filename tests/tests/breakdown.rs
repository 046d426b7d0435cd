//! Where a request's time goes (connect, first byte, whole response, by
//! status class) and whether the generator itself was the limit.

use std::process::Command;
use std::sync::Mutex;

use loadgen_tests::hostile::Hostile;
use loadgen_tests::{Target, loadgen_bin, run_json};

/// One test at a time: the starved-client check measures how much of the
/// time the client waited for a CPU against waiting for the server, and
/// another test's load on the same two CPUs moves that by a few per cent.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap() / 1000.0
}

#[test]
fn first_byte_and_connect_times_are_measured_apart() {
    let _g = serial();
    let t = Target::start(1);
    let (json, text, code) =
        run_json(&["-t1", "-c4", "-d", "1s", "--latency", &t.url("/delay/20")]);
    assert_eq!(code, 0, "{text}");
    let ttfb = &json["ttfb_us"];
    assert!((19.0..40.0).contains(&ms(&ttfb["p50"])), "{ttfb}");
    // The handler answers all at once: the body adds nothing.
    let lat = &json["latency_us"];
    assert!(ms(&lat["p50"]) - ms(&ttfb["p50"]) < 2.0, "{lat} {ttfb}");
    let connect = &json["connect_us"];
    assert!(connect["p50"].as_u64().unwrap() > 0, "{connect}");
    assert!(text.contains("  Latency Breakdown"), "{text}");
    assert!(text.contains("    first byte "), "{text}");
}

#[test]
fn a_dripped_body_is_slow_but_its_first_byte_is_not() {
    let _g = serial();
    let h = Hostile::start();
    let (json, text, code) = run_json(&["-t1", "-c2", "-n", "10", &h.url("/drip-body")]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 10);
    assert!(ms(&json["ttfb_us"]["max"]) < 40.0, "{json}");
    assert!(ms(&json["latency_us"]["p50"]) > 200.0, "{json}");
}

#[test]
fn latency_is_kept_per_status_class() {
    let _g = serial();
    let t = Target::start(1);
    let dir = std::env::temp_dir().join(format!("loadgen-classes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mix.toml");
    std::fs::write(
        &file,
        format!(
            "[[request]]\nurl = \"{}\"\n\n[[request]]\nurl = \"/status/503\"\n",
            t.url("/delay/2")
        ),
    )
    .unwrap();
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-n",
        "400",
        "--scenario",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    let by = &json["latency_by_status"];
    let ok = by["2xx"]["p50"].as_u64().unwrap();
    let unavailable = by["5xx"]["p50"].as_u64().unwrap();
    // The 5xx are fast and hide in the total.
    assert!(unavailable * 2 < ok, "{by}");
    assert!(by.get("4xx").is_none(), "{by}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The generator's self-check: quiet when it idles, loud when starved.
#[test]
fn the_busy_check_fires_only_when_the_client_is_the_limit() {
    let _g = serial();
    let t = Target::start(1);
    let (json, text, code) = run_json(&["-t1", "-c4", "-R", "200", "-d", "1s", &t.url("/")]);
    assert_eq!(code, 0, "{text}");
    let busy = json["client_cpu"]["per_shard_busy"][0].as_f64().unwrap();
    assert!(busy < 0.5, "an easy run: {busy}");
    assert!(!text.contains("generator may be the limit"), "{text}");
    // The client shares its CPU with a process burning it; the target has
    // the other at a real-time priority, so it answers at once whatever
    // else runs there: the client waits for a CPU, hardly ever for the
    // server. (Client and target sharing one CPU starve both: the client
    // then also waits for the server, 12 % of the time here. With 256
    // connections the server's batch takes long enough that the client
    // sleeps through part of it too: 16 read 0.88–0.95 busy, 4 read 0.99+,
    // so 4 keep the check about the client.)
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        loadgen_tests::skip("the starved-client check needs root (a real-time target)");
        return;
    }
    let t = Target::start_pinned_realtime(1, 1);
    // Up to three tries: on a freshly built machine the starved client can
    // also sleep in page faults of code not yet resident (0.87-0.89 busy
    // seen in CI, 0.99+ once warm). Every try's figure is shown if none is
    // starved.
    let mut tries = Vec::new();
    for _ in 0..3 {
        let hogs: Vec<_> = (0..1)
            .map(|_| {
                // At nice 5, below the kernel's ksoftirqd (nice 0): the
                // client's own network work, which the kernel may hand to
                // ksoftirqd on a loaded CPU, is not starved with it. With
                // the hog at nice 0 it was, and the client slept waiting for
                // it (0.86-0.88 busy, p50 one 4 ms tick, on every run here
                // for an afternoon, main's binary too).
                Command::new("taskset")
                    .args([
                        "-c",
                        "0",
                        "nice",
                        "-n",
                        "5",
                        "sh",
                        "-c",
                        "while :; do :; done",
                    ])
                    .spawn()
                    .unwrap()
            })
            .collect();
        // At nice 19 against 5 the hog still takes ~95 % of the CPU.
        let out = Command::new("taskset")
            .args(["-c", "0", "nice", "-n", "19"])
            .arg(loadgen_bin())
            .args(["-t1", "-c4", "-d", "2s", "--no-pin", "--json", "-"])
            .arg(t.url("/"))
            .output()
            .unwrap();
        for mut hog in hogs {
            let _ = hog.kill();
            let _ = hog.wait();
        }
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let busy = json["client_cpu"]["per_shard_busy"][0].as_f64().unwrap();
        if busy > 0.9 {
            assert!(text.contains("generator may be the limit"), "{text}");
            let warned = json["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("generator may be the limit"));
            assert!(warned, "{json}");
            return;
        }
        tries.push(json["client_cpu"].to_string());
    }
    panic!("never starved: {tries:?}");
}
