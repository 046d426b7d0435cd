//! `--grpc` against a real gRPC server (Python grpcio, tests/src/grpc.rs):
//! calls counted exactly against the server's own count, on both engines,
//! over h2c and TLS; statuses counted by name; `--expect-status` by name.

use loadgen_tests::grpc::{GrpcOptions, GrpcServer};
use loadgen_tests::pki::Pki;
use loadgen_tests::{run, run_json, skip};

fn pki() -> Option<Pki> {
    Pki::new().map_err(|e| skip(&e)).ok()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn grpc_status(json: &serde_json::Value, name: &str) -> u64 {
    json["grpc"]["status"][name].as_u64().unwrap_or(0)
}

/// `EchoRequest { name: "hi" }`: field 1, length-delimited.
const HI: &[u8] = &[0x0a, 0x02, b'h', b'i'];

#[test]
fn raw_messages_are_counted_exactly_over_h2c_and_tls_on_both_engines() {
    let Some(pki) = pki() else { return };
    let Some(mut plain) = GrpcServer::start(&GrpcOptions::default()) else {
        return;
    };
    let Some(mut secure) = GrpcServer::start(&GrpcOptions {
        tls: Some((&pki.server_cert, &pki.server_key)),
        ..GrpcOptions::default()
    }) else {
        return;
    };
    let body = scratch("hi.bin");
    std::fs::write(&body, HI).unwrap();
    let ca = pki.ca.to_str().unwrap();
    let (p_url, s_url) = (plain.url(), format!("https://localhost:{}", secure.port));
    for (server, url, tls) in [(&mut plain, p_url, false), (&mut secure, s_url, true)] {
        for engine in ["uring", "glommio"] {
            let before = server.counts();
            let mut args = vec![
                "--grpc",
                "loadgen.test.Echo/Say",
                "--body-file",
                body.to_str().unwrap(),
                "-n",
                "300",
                "-c",
                "2",
                "-t",
                "1",
                "--streams",
                "4",
                "--engine",
                engine,
            ];
            if tls {
                args.extend(["--cacert", ca]);
            }
            args.push(&url);
            let (json, text, code) = run_json(&args);
            assert_eq!(code, 0, "{args:?}: {text}");
            let after = server.counts();
            let said = after.calls.get("Say").copied().unwrap_or(0)
                - before.calls.get("Say").copied().unwrap_or(0);
            assert_eq!(said, 300, "the server's count, {engine} tls={tls}");
            let hi = |c: &loadgen_tests::grpc::Counts| c.messages.get(&hex(HI)).copied();
            assert_eq!(hi(&after).unwrap_or(0) - hi(&before).unwrap_or(0), 300);
            assert_eq!(json["requests"], 300, "{text}");
            assert_eq!(grpc_status(&json, "OK"), 300, "{text}");
            assert_eq!(json["grpc"]["service"], "loadgen.test.Echo");
            assert_eq!(json["grpc"]["method"], "Say");
            assert_eq!(json["http_version"], "2");
            assert!(!text.contains("Non-OK"), "{text}");
        }
    }
}

#[test]
fn failed_calls_are_counted_by_name_and_expect_status_takes_names() {
    let Some(mut server) = GrpcServer::start(&GrpcOptions::default()) else {
        return;
    };
    let url = server.url();
    let base = [
        "--grpc",
        "loadgen.test.Echo/Fail",
        "-n",
        "120",
        "-c",
        "2",
        "-t",
        "1",
    ];
    let (json, text, code) = run_json(&[&base[..], &["--latency", &url]].concat());
    assert_eq!(code, 0, "no --expect-status: a finished run; {text}");
    assert_eq!(grpc_status(&json, "INVALID_ARGUMENT"), 120, "{text}");
    assert_eq!(grpc_status(&json, "OK"), 0);
    assert_eq!(server.counts().calls["Fail"], 120);
    assert!(
        text.contains("Non-OK gRPC statuses: 120 (INVALID_ARGUMENT 120)"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("INVALID_ARGUMENT")),
        "the breakdown has a row per status: {text}"
    );
    assert!(json["grpc"]["latency_by_status"]["INVALID_ARGUMENT"]["p50"].as_u64() > Some(0));
    // Every second's non-OK calls are in the series.
    let non_ok: u64 = json["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["non_2xx"].as_u64().unwrap())
        .sum();
    assert_eq!(non_ok, 120);

    let (json, text, code) = run_json(&[&base[..], &["--expect-status", "OK", &url]].concat());
    assert_eq!(code, 4, "{text}");
    assert_eq!(json["unexpected"], 120);
    assert_eq!(json["expect_status"], "OK");
    let (_, text, code) =
        run_json(&[&base[..], &["--expect-status", "OK,INVALID_ARGUMENT", &url]].concat());
    assert_eq!(code, 0, "{text}");

    // A method the server does not have: UNIMPLEMENTED, by name.
    let (json, text, _) = run_json(&[
        "--grpc",
        "loadgen.test.Echo/Nope",
        "-n",
        "10",
        "-c",
        "1",
        &url,
    ]);
    assert_eq!(grpc_status(&json, "UNIMPLEMENTED"), 10, "{text}");
}

#[test]
fn bad_flags_are_one_line_before_the_run() {
    for (args, want) in [
        (
            &["--grpc", "Echo", "http://127.0.0.1:9"][..],
            "give SERVICE/METHOD",
        ),
        (
            &["--grpc", "a.B/C", "http://127.0.0.1:9/x"][..],
            "give the URL without one",
        ),
        (
            &[
                "--grpc",
                "a.B/C",
                "--expect-status",
                "200",
                "http://127.0.0.1:9",
            ][..],
            "\"200\" is not a gRPC status",
        ),
        (
            &["--grpc", "a.B/C", "-m", "GET", "http://127.0.0.1:9"][..],
            "drop -m/--method",
        ),
        (
            &["--streams", "4", "http://127.0.0.1:9"][..],
            "--streams is HTTP/2's",
        ),
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
