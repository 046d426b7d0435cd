//! `loadgen merge` reads reports from other hosts and from logs: a number
//! no run writes is refused in one line that names the file and the
//! field, with exit 2, never a panic.

use std::path::PathBuf;

use loadgen_tests::{Target, run, run_json};
use serde_json::{Value, json};

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("loadgen-merge-input-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn out_of_range_numbers_are_refused_with_the_file_and_field() {
    let t = Target::start(1);
    let parts: Vec<Value> = (1..=2)
        .map(|k| {
            let part = format!("{k}/2");
            let (json, text, code) =
                run_json(&["-t1", "-c2", "-n", "200", "--part", &part, &t.url("/")]);
            assert_eq!(code, 0, "{text}");
            json
        })
        .collect();
    let dir = scratch();
    let write = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let a = write("a.json", &parts[0]);
    let good = write("b.json", &parts[1]);
    let out = run(&["merge", &a, &good]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    for (pointer, value) in [
        ("/duration_s", json!(1e20)),
        ("/started_at", json!(1e19)),
        ("/series/0/unix_s", json!(1e19)),
        ("/requests", json!(u64::MAX)),
        ("/errors/timeout", json!(1u64 << 63)),
        ("/part/of", json!(4_000_000_000u32)),
    ] {
        let mut b = parts[1].clone();
        *b.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        let bad = write("bad.json", &b);
        let out = run(&["merge", &a, &bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{pointer}: {err}");
        let field = pointer[1..].replace("/0/", "[0].").replace('/', ".");
        let field = field.strip_suffix(".of").unwrap_or(&field);
        assert!(
            err.starts_with(&format!("loadgen: {bad}: {field} is ")),
            "{pointer}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
