//! `-n N` means exactly N responses, and the server agrees.

use loadgen_tests::{Target, run_json};

fn exact(target: &Target, args: &[&str], n: u64) {
    let before = target.responses();
    let url = target.url("/");
    let n_s = n.to_string();
    let mut all = vec!["-n", n_s.as_str()];
    all.extend_from_slice(args);
    all.push(&url);
    let (json, text, code) = run_json(&all);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], n, "{json}");
    assert_eq!(json["status"]["codes"]["200"], n);
    assert_eq!(json["errors"]["timeout"], 0);
    assert_eq!(
        target.responses() - before,
        n,
        "the target counted otherwise"
    );
}

#[test]
fn exact_count_one_shard() {
    let t = Target::start(1);
    exact(&t, &["-t1", "-c16"], 10_000);
}

#[test]
fn exact_count_pipelined() {
    let t = Target::start(1);
    exact(&t, &["-t1", "-c16", "--pipeline", "16"], 10_000);
}

#[test]
fn exact_count_several_shards_uneven_split() {
    let t = Target::start(2);
    // 10001 over 3 shards and 7 connections: every remainder path.
    exact(&t, &["-t3", "-c7", "--no-pin", "--pipeline", "5"], 10_001);
}

#[test]
fn fewer_requests_than_connections() {
    let t = Target::start(1);
    exact(&t, &["-t2", "-c64"], 5);
}
