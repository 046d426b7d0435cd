//! Python functions in the profile of a CPython target (issue 25), with
//! py-spy as the referee, on every supported CPython on the machine.

use std::collections::HashMap;
use std::process::Command;

use loadgen_tests::cpython::{PyProgram, py_spy, supported_pythons};
use loadgen_tests::profiling::serial;

/// Three threads parked in known functions: `main` waits in `park`,
/// the others in `sleeper_a` (via `outer_a`) and `sleeper_b`.
const PARKED: &str = r#"
import threading, time
def sleeper_a():
    time.sleep(600)
def outer_a():
    sleeper_a()
def sleeper_b(n):
    if n:
        return sleeper_b(n - 1)
    time.sleep(600)
threading.Thread(target=outer_a, daemon=True).start()
threading.Thread(target=sleeper_b, args=(5,), daemon=True).start()
def park():
    print("ready", flush=True)
    time.sleep(600)
time.sleep(0.2)
park()
"#;

/// `py-spy dump --json`: frames of each native thread id, innermost
/// first, as `name (file:line)` with the file's last component.
fn py_spy_dump(py_spy: &str, pid: u32) -> HashMap<u64, Vec<String>> {
    let out = Command::new(py_spy)
        .args(["dump", "--json", "--pid", &pid.to_string()])
        .output()
        .expect("cannot run py-spy");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "py-spy dump gave no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut threads = HashMap::new();
    for t in v.as_array().expect("a list of threads") {
        let tid = t["os_thread_id"].as_u64().expect("os_thread_id");
        let frames = t["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(|f| {
                let file = f["filename"].as_str().unwrap_or("");
                format!(
                    "{} ({}:{})",
                    f["name"].as_str().unwrap_or(""),
                    file.rsplit('/').next().unwrap_or(file),
                    f["line"]
                )
            })
            .collect();
        threads.insert(tid, frames);
    }
    threads
}

/// Our names with the file's last component only (py-spy shortens file
/// names its own way).
fn basenames(frames: &[String]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            let (name, rest) = f.split_once(" (").unwrap_or((f, ""));
            let (file, line) = rest.rsplit_once(':').unwrap_or((rest, ""));
            format!("{name} ({}:{line}", file.rsplit('/').next().unwrap_or(file))
        })
        .collect()
}

#[test]
fn the_user_space_reader_sees_what_py_spy_dump_sees() {
    let Some(_g) = serial() else { return };
    let Some(py_spy) = py_spy() else { return };
    let pythons = supported_pythons();
    assert!(
        !pythons.is_empty(),
        "no CPython 3.11 or 3.12 on this machine"
    );
    for (python, version) in pythons {
        let p = PyProgram::start(&python, PARKED, &[]);
        assert_eq!(p.ready, "ready", "{}", python.display());
        // `park` printed before it slept: let it get there.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let ours: HashMap<u64, Vec<String>> = loadgen::profile::python::dump(p.pid())
            .unwrap_or_else(|e| panic!("{}: {e}", python.display()))
            .into_iter()
            .map(|(tid, f)| (tid, basenames(&f)))
            .collect();
        let theirs = py_spy_dump(&py_spy, p.pid());
        eprintln!("{} {version:?}: ours {ours:?}", python.display());
        assert_eq!(ours.len(), 3, "{}: {ours:?}", python.display());
        assert_eq!(ours, theirs, "{} {version:?}", python.display());
        let all: Vec<&String> = ours.values().flatten().collect();
        for f in [
            "sleeper_a (<string>:4)",
            "outer_a (<string>:6)",
            "park (<string>:15)",
        ] {
            assert!(all.iter().any(|a| *a == f), "{f} missing: {ours:?}");
        }
        // sleeper_b recursed five times: six frames of it.
        assert_eq!(all.iter().filter(|a| a.starts_with("sleeper_b")).count(), 6);
    }
}
