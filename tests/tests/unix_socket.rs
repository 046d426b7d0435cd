//! `--unix-socket PATH`: the load goes to a Unix domain socket, the URL
//! gives only the Host header, the path and the scheme. Against nginx
//! listening on `unix:…`: exact counts on both engines, HTTP/1.1 and
//! HTTP/2, plain and TLS; the bad paths refused before the run.

use std::path::Path;

use loadgen_tests::nginx::{Nginx, NginxOptions, NginxTls, find_nginx};
use loadgen_tests::pki::Pki;
use loadgen_tests::profiling::serial;
use loadgen_tests::{run, run_json, skip};

fn have_nginx() -> bool {
    if find_nginx().is_none() {
        skip("nginx is not installed (apt-get install nginx-light)");
        return false;
    }
    true
}

/// Runs `-n N` over `socket` with `args`, and checks the report and
/// nginx's own count both say N.
fn exact(nginx: &Nginx, socket: &Path, url: &str, args: &[&str], n: u64) -> serde_json::Value {
    let before = nginx.counts().requests;
    let n_s = n.to_string();
    let mut all = vec!["-n", &n_s, "--unix-socket", socket.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(url);
    let (json, text, code) = run_json(&all);
    let what = format!("{all:?}");
    assert_eq!(code, 0, "{what}: {text}");
    assert_eq!(json["requests"], n, "{what}: {text}");
    assert_eq!(json["status"]["codes"]["200"], n, "{what}");
    let errors: u64 = json["errors"]
        .as_object()
        .expect("errors")
        .values()
        .map(|v| v.as_u64().unwrap_or(0))
        .sum();
    assert_eq!(errors, 0, "{what}: {}", json["errors"]);
    assert_eq!(nginx.counts().requests - before, n, "{what}: nginx's count");
    assert_eq!(json["unix_socket"], socket.to_str().unwrap(), "{what}");
    assert!(text.contains(" via unix:"), "{what}: {text}");
    json
}

#[test]
fn exact_counts_over_a_unix_socket_on_both_engines() {
    if !have_nginx() {
        return;
    }
    let pki = match Pki::new() {
        Ok(p) => p,
        Err(e) => return skip(&e),
    };
    let h1 = Nginx::start_with(&NginxOptions {
        unix_socket: true,
        ..NginxOptions::default()
    })
    .expect("nginx on a Unix socket");
    let h2c = Nginx::start_with(&NginxOptions {
        unix_socket: true,
        http2: true,
        ..NginxOptions::default()
    })
    .expect("nginx h2c on a Unix socket");
    // ALPN offers h2 and http/1.1: both over TLS over the socket.
    let tls = Nginx::start_with(&NginxOptions {
        unix_socket: true,
        http2: true,
        tls: Some(NginxTls {
            cert: &pki.server_cert,
            key: &pki.server_key,
            client_ca: None,
        }),
        ..NginxOptions::default()
    })
    .expect("nginx TLS on a Unix socket");
    let ca = pki.ca.to_str().unwrap();
    // The host is the certificate's name and the Host header; it is never
    // resolved (`.invalid` would not be).
    for engine in ["uring", "glommio"] {
        let e = ["--engine", engine];
        let plain = "http://app.invalid/";
        exact(
            &h1,
            &h1.socket(),
            plain,
            &[&e[..], &["-c4", "-t2"]].concat(),
            2000,
        );
        exact(
            &h1,
            &h1.socket(),
            plain,
            &[&e[..], &["-c4", "-t1", "--pipeline", "16"]].concat(),
            2001,
        );
        exact(
            &h2c,
            &h2c.socket(),
            plain,
            &[&e[..], &["-c4", "-t2", "--http2", "--streams", "8"]].concat(),
            2000,
        );
        let https = "https://localhost/";
        let json = exact(
            &tls,
            &tls.socket(),
            https,
            &[&e[..], &["-c4", "-t2", "--cacert", ca]].concat(),
            1000,
        );
        assert_eq!(json["http_version"], "1.1");
        let json = exact(
            &tls,
            &tls.socket(),
            https,
            &[&e[..], &["-c4", "-t2", "--cacert", ca, "--http2"]].concat(),
            1000,
        );
        assert_eq!(json["tls"]["alpn"], "h2");
    }
}

/// A path that is missing, or not a socket, is one line and exit 2
/// before anything runs; a socket nobody listens on is the run's "could
/// not connect" (exit 1), naming the socket.
#[test]
fn bad_socket_paths_are_one_line_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("loadgen-uds-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.join("missing.sock");
    for (path, says) in [
        (&missing, "no such socket"),
        (&file, "a regular file, not a socket"),
        (&dir, "a directory, not a socket"),
    ] {
        let out = run(&[
            "-n",
            "10",
            "--unix-socket",
            path.to_str().unwrap(),
            "http://localhost/",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{path:?}: {err}");
        assert!(err.contains(says), "{path:?}: {err}");
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert!(out.stdout.is_empty(), "{path:?}: ran anyway");
    }
    // A socket file left behind by a server that is gone.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = run(&[
        "-n",
        "10",
        "--timeout",
        "300ms",
        "--unix-socket",
        stale.to_str().unwrap(),
        "http://localhost/",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("could not connect to unix:{}", stale.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--profile` without a PID finds the process listening on the socket.
#[test]
fn profile_finds_the_server_on_the_socket() {
    if !have_nginx() {
        return;
    }
    let Some(_g) = serial() else { return };
    let nginx = Nginx::start_with(&NginxOptions {
        unix_socket: true,
        ..NginxOptions::default()
    })
    .expect("nginx on a Unix socket");
    let sock = nginx.socket();
    let (json, text, code) = run_json(&[
        "-c4",
        "-d",
        "1s",
        "--profile",
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://localhost/",
    ]);
    assert_eq!(code, 0, "{text}");
    let pids = json["profile"]["pids"].as_array().expect("a profile");
    assert!(!pids.is_empty(), "{text}");
    for pid in pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "nginx", "--profile found pid {pid}");
    }
}

/// Nothing in scenarios, fleet parts or find-max is socket-specific, and
/// all three work over one: a scenario's requests counted per name, a
/// part's share of `-n`, and a search whose steps all reach nginx.
#[test]
fn scenarios_parts_and_find_max_over_a_unix_socket() {
    if !have_nginx() {
        return;
    }
    let nginx = Nginx::start_with(&NginxOptions {
        unix_socket: true,
        ..NginxOptions::default()
    })
    .expect("nginx on a Unix socket");
    let socket = nginx.socket();
    let sock = socket.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("loadgen-uds-more-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("two.toml");
    std::fs::write(
        &scenario,
        "[[request]]\nname = \"a\"\nurl = \"/a\"\nweight = 3\n\n[[request]]\nname = \"b\"\nurl = \"/b/{{seq}}\"\n",
    )
    .unwrap();
    let url = "http://app.invalid/";

    let before = nginx.counts().requests;
    let (json, text, code) = run_json(&[
        "-n",
        "400",
        "-c4",
        "--unix-socket",
        sock,
        "--scenario",
        scenario.to_str().unwrap(),
        url,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 400, "{text}");
    let by: Vec<u64> = json["by_request"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(by.iter().sum::<u64>(), 400, "{text}");
    assert!(by.iter().all(|&n| n > 0), "{by:?}");
    assert_eq!(nginx.counts().requests - before, 400, "nginx's count");

    // Part 2 of a fleet of 2 takes half of -n and of -c.
    let before = nginx.counts().requests;
    let (json, text, code) = run_json(&[
        "-n",
        "1001",
        "-c4",
        "--part",
        "2/2",
        "--unix-socket",
        sock,
        url,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["connections"], 2, "{text}");
    let part = json["requests"].as_u64().unwrap();
    assert!(part == 500 || part == 501, "{part}: {text}");
    assert_eq!(nginx.counts().requests - before, part, "nginx's count");

    // A search: each step's requests reach nginx over the socket.
    let before = nginx.counts().requests;
    let (json, text, code) = run_json(&[
        "find-max",
        "-t1",
        "-c8",
        "--unix-socket",
        sock,
        "--slo",
        "p99<100ms",
        "--step",
        "300ms",
        "--step-warmup",
        "100ms",
        "--start-rate",
        "200",
        "--precision",
        "50",
        url,
    ]);
    assert!(code == 0 || code == 1, "{text}");
    let steps = json["steps"].as_array().expect("steps");
    assert!(!steps.is_empty(), "{text}");
    assert!(steps.iter().any(|s| s["ok"] == true), "{text}");
    assert!(nginx.counts().requests > before, "no request reached nginx");
}
