//! A fleet that looks like hosts: the server in its own network namespace,
//! two parts in two others, each joined to the server's by a veth pair, so
//! every part has its own address and its own path to the server. Root
//! only; the namespaces and addresses are the test's own (198.18.0.0/15,
//! the range set aside for benchmarks), and are removed even when the test
//! fails.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use loadgen_tests::loadgen_bin;
use loadgen_tests::netns::{Namespaces, in_namespace};
use loadgen_tests::recorder::Recorder;
use serde_json::Value;

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    loadgen_tests::netns::ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Starts a recorder listening inside namespace `ns`: a thread enters it
/// and binds there; the socket stays in it.
fn recorder_in(ns: &str) -> Recorder {
    in_namespace(ns, || Ok(Recorder::start_on("0.0.0.0:0"))).expect("enter the namespace")
}

#[test]
fn parts_in_their_own_namespaces_merge_into_one_fleet() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("ip").arg("-V").output().is_err() {
        loadgen_tests::skip("network namespaces need root and iproute2");
        return;
    }
    loadgen_tests::privileged_ran();
    let id = std::process::id();
    let (srv, c1, c2) = (
        format!("lg-srv-{id}"),
        format!("lg-c1-{id}"),
        format!("lg-c2-{id}"),
    );
    let _guard = Namespaces(vec![srv.clone(), c1.clone(), c2.clone()]);
    for ns in [&srv, &c1, &c2] {
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    // The server answers at 198.18.0.1 (on its loopback), reached from
    // client k through its veth pair 198.18.k.2 ↔ 198.18.k.1.
    ip(&["-n", &srv, "addr", "add", "198.18.0.1/32", "dev", "lo"]);
    for (k, ns) in [(1, &c1), (2, &c2)] {
        let (s_end, c_end) = (format!("lgs{k}-{id}"), format!("lgc{k}-{id}"));
        ip(&[
            "link", "add", &s_end, "netns", &srv, "type", "veth", "peer", "name", &c_end, "netns",
            ns,
        ]);
        ip(&[
            "-n",
            &srv,
            "addr",
            "add",
            &format!("198.18.{k}.1/24"),
            "dev",
            &s_end,
        ]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("198.18.{k}.2/24"),
            "dev",
            &c_end,
        ]);
        ip(&["-n", &srv, "link", "set", &s_end, "up"]);
        ip(&["-n", ns, "link", "set", &c_end, "up"]);
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &format!("198.18.{k}.1"),
        ]);
    }
    let rec = recorder_in(&srv);
    let url = format!("http://198.18.0.1:{}/s/{{{{seq}}}}", rec.port);
    // Built (if it must be) before the start time is set: a build took
    // minutes once, and both parts then refused a start time in the past.
    let bin = loadgen_bin();
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 2.0;
    let at_arg = format!("{at:.3}");
    let children: Vec<_> = [(1, &c1), (2, &c2)]
        .iter()
        .map(|(k, ns)| {
            Command::new("ip")
                .args(["netns", "exec", ns, "timeout", "60"])
                .arg(bin)
                .args(["-t1", "-c4", "-R", "400", "-d", "2s", "--start-at", &at_arg])
                .args(["--part", &format!("{k}/2"), "--json", "-", &url])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reports = String::new();
    let mut parts = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["errors"]["connect"], 0, "{err}");
        reports.push_str(&String::from_utf8_lossy(&out.stdout));
        parts.push(v);
    }
    // The server saw both hosts, and no other address.
    let seen = rec.take();
    let mut by_ip: BTreeMap<String, usize> = BTreeMap::new();
    for s in &seen {
        *by_ip.entry(s.peer.ip().to_string()).or_default() += 1;
    }
    let ips: Vec<&str> = by_ip.keys().map(String::as_str).collect();
    assert_eq!(ips, ["198.18.1.2", "198.18.2.2"], "{by_ip:?}");
    // {{seq}} is unique across the hosts.
    let mut seqs: Vec<u64> = seen
        .iter()
        .map(|s| s.target["/s/".len()..].parse().unwrap())
        .collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "a {{{{seq}}}} value was sent twice");
    let starts: Vec<f64> = parts
        .iter()
        .map(|p| p["started_at"].as_f64().unwrap())
        .collect();
    assert!((starts[0] - starts[1]).abs() < 0.05, "{starts:?}");
    let mut merge = Command::new(loadgen_bin())
        .args(["merge", "-", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    merge
        .stdin
        .take()
        .unwrap()
        .write_all(reports.as_bytes())
        .unwrap();
    let out = merge.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sum: u64 = parts.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(m["requests"].as_u64().unwrap(), sum);
    let rps = m["rps"].as_f64().unwrap();
    assert!((rps - 400.0).abs() <= 8.0, "fleet rate {rps}: {text}");
}
