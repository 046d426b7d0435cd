//! `--grpc` against a real gRPC server (Python grpcio, tests/src/grpc.rs):
//! calls counted exactly against the server's own count, on both engines,
//! over h2c and TLS; statuses counted by name; `--expect-status` by name.
//! Scenarios whose requests are gRPC calls, against grpcio, and mixed with
//! plain HTTP/2 requests against the raw HTTP/2 server (grpcio answers
//! nothing but gRPC).

use loadgen_tests::grpc::{GrpcOptions, GrpcServer};
use loadgen_tests::h2server::{Behaviour, H2Server};
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
            "--grpc \"Echo\" is not SERVICE/METHOD",
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

/// The test service's schema, in two files (the second imports the
/// first), written to a scratch directory.
fn protos() -> std::path::PathBuf {
    let dir = scratch("protos");
    std::fs::create_dir_all(dir.join("inc")).unwrap();
    std::fs::write(
        dir.join("inc/meta.proto"),
        "syntax = \"proto3\";\npackage loadgen.test;\nmessage Meta { string tag = 1; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("echo.proto"),
        r#"syntax = "proto3";
package loadgen.test;
import "meta.proto";
message EchoRequest {
  string name = 1;
  int32 n = 2;
  Meta meta = 3;
  bool loud = 4;
}
service Echo {
  rpc Say(EchoRequest) returns (EchoRequest);
  rpc Fail(EchoRequest) returns (EchoRequest);
  rpc Watch(EchoRequest) returns (stream EchoRequest);
}
"#,
    )
    .unwrap();
    dir
}

/// The schema as a FileDescriptorSet (protoc's --descriptor_set_out
/// --include_imports), compiled by loadgen's own compiler.
fn protoset(dir: &std::path::Path) -> std::path::PathBuf {
    use prost::Message as _;
    let pool = loadgen::grpc::schema::compile(
        &[dir.join("echo.proto")],
        &[dir.to_path_buf(), dir.join("inc")],
    )
    .expect("the test schema compiles");
    let set = prost_types::FileDescriptorSet {
        file: pool.file_descriptor_protos().cloned().collect(),
    };
    let path = dir.join("echo.protoset");
    std::fs::write(&path, set.encode_to_vec()).unwrap();
    path
}

fn message_count(c: &loadgen_tests::grpc::Counts, bytes: &[u8]) -> u64 {
    c.messages.get(&hex(bytes)).copied().unwrap_or(0)
}

#[test]
fn json_messages_from_a_proto_a_protoset_and_reflection() {
    let Some(pki) = pki() else { return };
    let dir = protos();
    let set = protoset(&dir);
    let Some(mut v1) = GrpcServer::start(&GrpcOptions {
        protoset: Some(&set),
        reflection: "v1",
        ..GrpcOptions::default()
    }) else {
        return;
    };
    let Some(mut alpha) = GrpcServer::start(&GrpcOptions {
        tls: Some((&pki.server_cert, &pki.server_key)),
        protoset: Some(&set),
        reflection: "v1alpha",
    }) else {
        return;
    };
    let proto = dir.join("echo.proto");
    let (proto, inc, set) = (
        proto.to_str().unwrap(),
        dir.join("inc").to_str().unwrap().to_string(),
        set.to_str().unwrap(),
    );
    let ca = pki.ca.to_str().unwrap();
    let alpha_url = format!("https://localhost:{}", alpha.port);
    let v1_url = v1.url();
    // {"name": "hi", "meta": {"tag": "t"}}: field 1 "hi", field 3 {1: "t"}.
    let want = [0x0a, 0x02, b'h', b'i', 0x1a, 0x03, 0x0a, 0x01, b't'];
    let json = r#"{"name": "hi", "meta": {"tag": "t"}}"#;
    for (how, on_alpha) in [
        (
            vec![
                "--proto",
                proto,
                "--import-path",
                &dir.to_str().unwrap(),
                "--import-path",
                &inc,
            ],
            false,
        ),
        (vec!["--protoset", set], false),
        (vec![], false),
        (vec!["--cacert", ca], true),
    ] {
        let (server, url) = if on_alpha {
            (&mut alpha, &alpha_url)
        } else {
            (&mut v1, &v1_url)
        };
        let before = message_count(&server.counts(), &want);
        let args = [
            &[
                "--grpc",
                "loadgen.test.Echo/Say",
                "-b",
                json,
                "-n",
                "40",
                "-c",
                "1",
            ][..],
            &how,
            &[url.as_str()],
        ]
        .concat();
        let (j, text, code) = run_json(&args);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert_eq!(grpc_status(&j, "OK"), 40, "{args:?}: {text}");
        assert_eq!(
            message_count(&server.counts(), &want) - before,
            40,
            "{args:?}"
        );
    }
    // A template: rendered and encoded per call, on both engines.
    for engine in ["uring", "glommio"] {
        let before = v1.counts();
        let args = [
            "--grpc",
            "loadgen.test.Echo/Say",
            "-b",
            r#"{"name": "u{{seq}}", "n": {{seq}}, "loud": true}"#,
            "-n",
            "30",
            "-c",
            "1",
            "--engine",
            engine,
            "--seed",
            "1",
            &v1_url,
        ];
        let (j, text, code) = run_json(&args);
        assert_eq!(code, 0, "{text}");
        assert_eq!(grpc_status(&j, "OK"), 30, "{text}");
        let after = v1.counts();
        // seq 0: n is proto3's default and not sent; seq 7: n = 7.
        let first = [0x0a, 0x02, b'u', b'0', 0x20, 0x01];
        let seventh = [0x0a, 0x02, b'u', b'7', 0x10, 0x07, 0x20, 0x01];
        assert_eq!(
            message_count(&after, &first) - message_count(&before, &first),
            1
        );
        assert_eq!(
            message_count(&after, &seventh) - message_count(&before, &seventh),
            1
        );
        assert_eq!(
            after.calls["Say"] - before.calls.get("Say").copied().unwrap_or(0),
            30
        );
    }
}

#[test]
fn bad_schemas_and_messages_are_one_line_before_the_run() {
    let dir = protos();
    let set = protoset(&dir);
    let Some(server) = GrpcServer::start(&GrpcOptions {
        protoset: Some(&set),
        reflection: "v1,v1alpha",
        ..GrpcOptions::default()
    }) else {
        return;
    };
    let url = server.url();
    let proto = dir.join("echo.proto");
    let broken = dir.join("broken.proto");
    std::fs::write(
        &broken,
        "syntax = \"proto3\";\n\nmessage A {\n  string a = ;\n}\n",
    )
    .unwrap();
    let (proto, broken, inc) = (
        proto.to_str().unwrap(),
        broken.to_str().unwrap(),
        dir.join("inc").to_str().unwrap().to_string(),
    );
    let schema = [
        "--proto",
        proto,
        "--import-path",
        dir.to_str().unwrap(),
        "--import-path",
        &inc,
    ];
    let say = ["--grpc", "loadgen.test.Echo/Say"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [
                &["--grpc", "loadgen.test.Nope/Say", "-b", "{}"][..],
                &schema[..],
            ]
            .concat(),
            "no service \"loadgen.test.Nope\" here; the services are: loadgen.test.Echo",
        ),
        (
            [
                &["--grpc", "loadgen.test.Echo/Shout", "-b", "{}"][..],
                &schema[..],
            ]
            .concat(),
            "has no method \"Shout\"; its methods are: Say, Fail, Watch",
        ),
        (
            [
                &["--grpc", "loadgen.test.Echo/Watch", "-b", "{}"][..],
                &schema[..],
            ]
            .concat(),
            "only unary methods are supported",
        ),
        (
            [&say[..], &["-b", r#"{"nmae": "x"}"#], &schema[..]].concat(),
            "nmae",
        ),
        (
            [&say[..], &["-b", r#"{"n": "many"}"#], &schema[..]].concat(),
            "not a loadgen.test.EchoRequest in proto3 JSON",
        ),
        (
            // A template whose first rendering does not fit.
            [&say[..], &["-b", r#"{"loud": {{seq}}}"#], &schema[..]].concat(),
            "not a loadgen.test.EchoRequest in proto3 JSON",
        ),
        (
            [&say[..], &["-b", "{}", "--proto", broken]].concat(),
            "broken.proto:4:",
        ),
        (
            // Reflection: the server's services are listed.
            vec!["--grpc", "loadgen.test.Nope/Say", "-b", "{}"],
            "no service \"loadgen.test.Nope\" here; the services are: loadgen.test.Echo",
        ),
        (
            vec!["--grpc", "loadgen.test.Echo/Shout", "-b", "{}"],
            "has no method \"Shout\"",
        ),
    ];
    // A server without reflection, and no schema given.
    let Some(bare) = GrpcServer::start(&GrpcOptions::default()) else {
        return;
    };
    let bare_url = bare.url();
    let mut cases = cases
        .into_iter()
        .map(|(a, w)| (a, w, url.as_str()))
        .collect::<Vec<_>>();
    cases.push((
        vec!["--grpc", "loadgen.test.Echo/Say", "-b", "{}"],
        "server reflection refused: UNIMPLEMENTED from grpc.reflection.v1alpha.ServerReflection: give the schema with --proto or --protoset",
        bare_url.as_str(),
    ));
    for (mut args, want, url) in cases {
        args.push(url);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // A gate that needs --grpc, on a run without it.
    let out = run(&["--threshold", "nonok<1%", "http://127.0.0.1:9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs --grpc"), "{err}");
}

/// A scenario file in the scratch directory.
fn scenario(name: &str, text: &str) -> String {
    let path = scratch(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `by_request` as `name -> (requests, gRPC statuses by name)`.
fn per_request(json: &serde_json::Value) -> std::collections::BTreeMap<String, (u64, String)> {
    json["by_request"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let grpc = q["grpc"]["status"]
                .as_object()
                .map(|m| format!("{m:?}"))
                .unwrap_or_default();
            (
                q["name"].as_str().unwrap().to_string(),
                (q["requests"].as_u64().unwrap(), grpc),
            )
        })
        .collect()
}

const TWO_CALLS: &str = r#"
[[request]]
name = "say"
grpc = "loadgen.test.Echo/Say"
weight = 3
body = '{"name": "u{{seq}}", "n": {{rand:1:100}}}'

[[request]]
name = "fail"
grpc = "loadgen.test.Echo/Fail"
body = '{"name": "x"}'
"#;

#[test]
fn a_scenario_of_two_methods_is_counted_per_request_on_both_engines() {
    let dir = protos();
    let set = protoset(&dir);
    let Some(mut server) = GrpcServer::start(&GrpcOptions {
        protoset: Some(&set),
        reflection: "v1",
        ..GrpcOptions::default()
    }) else {
        return;
    };
    let url = server.url();
    let file = scenario("two.toml", TWO_CALLS);
    let set = set.to_str().unwrap();
    // The schema from --protoset on one engine, from reflection on the other.
    for (engine, schema) in [("uring", vec!["--protoset", set]), ("glommio", vec![])] {
        let before = server.counts();
        let log = scratch(&format!("two-{engine}.tsv"));
        let log_arg = log.to_str().unwrap();
        let args = [
            &["--scenario", &file, "-n", "200", "-c", "2", "-t", "1"][..],
            &["--streams", "2", "--latency", "--engine", engine],
            &schema,
            &["--request-log", log_arg, "--expect-status", "OK", &url],
        ]
        .concat();
        let (json, text, code) = run_json(&args);
        assert_eq!(code, 4, "the Fail calls are unexpected: {args:?}: {text}");
        let after = server.counts();
        let delta = |m: &str| {
            after.calls.get(m).copied().unwrap_or(0) - before.calls.get(m).copied().unwrap_or(0)
        };
        let (say, fail) = (delta("Say"), delta("Fail"));
        assert_eq!(say + fail, 200, "the server's count, {engine}");
        assert!(say > 0 && fail > 0, "{text}");
        let by = per_request(&json);
        assert_eq!(
            by["say"],
            (say, format!("{{\"OK\": Number({say})}}")),
            "{engine}"
        );
        assert_eq!(
            by["fail"],
            (fail, format!("{{\"INVALID_ARGUMENT\": Number({fail})}}"))
        );
        assert_eq!(grpc_status(&json, "OK"), say);
        assert_eq!(grpc_status(&json, "INVALID_ARGUMENT"), fail);
        // The request log: each call's status by name, beside its name.
        let logged = std::fs::read_to_string(&log).unwrap();
        let mut lines = logged.lines();
        let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
        let col = |name: &str| head.iter().position(|c| *c == name).unwrap();
        let (st, nm) = (col("grpc_status"), col("name"));
        let count = |status: &str, name: &str| {
            logged
                .lines()
                .skip(1)
                .map(|l| l.split('\t').collect::<Vec<_>>())
                .filter(|f| f[st] == status && f[nm] == name)
                .count() as u64
        };
        assert_eq!(
            (count("OK", "say"), count("INVALID_ARGUMENT", "fail")),
            (say, fail),
            "{logged}"
        );
        assert_eq!(lines.count() as u64, say + fail);
        let g = &json["grpc"];
        assert_eq!(
            (g["service"].as_str(), g["method"].as_str()),
            (Some(""), Some("")),
            "two methods"
        );
        assert_eq!(g["methods"]["loadgen.test.Echo/Say"]["OK"], say);
        assert_eq!(
            g["methods"]["loadgen.test.Echo/Fail"]["INVALID_ARGUMENT"],
            fail
        );
        assert_eq!(json["unexpected"], fail);
        assert_eq!(json["by_request"][1]["unexpected"], fail);
        assert_eq!(json["by_request"][0]["unexpected"], 0);
        assert!(
            text.contains("gRPC loadgen.test.Echo/Say, loadgen.test.Echo/Fail, unary calls"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "Non-OK gRPC statuses: {fail} (INVALID_ARGUMENT {fail})"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("    fail INVALID_ARGUMENT {fail}\n")),
            "{text}"
        );
    }
}

/// The mixed scenario: two calls and a plain GET, over one host.
const MIXED: &str = r#"
[[request]]
name = "page"
url = "/page"

[[request]]
name = "say"
grpc = "loadgen.test.Echo/Say"

[[request]]
name = "fail"
grpc = "loadgen.test.Echo/Fail"
body_file = "hi.bin"
"#;

#[test]
fn grpc_calls_and_plain_requests_share_connections() {
    let server = H2Server::plain(Behaviour::Grpc);
    let url = server.url("/");
    std::fs::write(scratch("hi.bin"), HI).unwrap();
    let file = scenario("mixed.toml", MIXED);
    let mut seen = 0;
    for engine in ["uring", "glommio"] {
        let args = [
            "--scenario",
            &file,
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
            "--expect-status",
            "OK,2xx",
            &url,
        ];
        let (json, text, code) = run_json(&args);
        assert_eq!(code, 4, "{args:?}: {text}");
        let rec = server.record();
        let reqs = &rec.requests[seen..];
        seen = rec.requests.len();
        let count = |path: &str| reqs.iter().filter(|q| q.path == path).count() as u64;
        let (page, say, fail) = (
            count("/page"),
            count("/loadgen.test.Echo/Say"),
            count("/loadgen.test.Echo/Fail"),
        );
        assert_eq!(page + say + fail, 300, "{engine}");
        let by = per_request(&json);
        assert_eq!(
            by["page"],
            (page, String::new()),
            "{engine}: a plain request has no gRPC status"
        );
        assert_eq!(by["say"], (say, format!("{{\"OK\": Number({say})}}")));
        assert_eq!(
            by["fail"],
            (fail, format!("{{\"INVALID_ARGUMENT\": Number({fail})}}"))
        );
        assert_eq!(json["by_request"][0]["status"]["codes"]["200"], page);
        // Each call's message as loadgen framed it.
        for q in reqs.iter().filter(|q| q.path.starts_with("/loadgen")) {
            assert_eq!(q.header("content-type"), Some("application/grpc"));
            assert_eq!(q.method, "POST");
            let want = if q.path.ends_with("Fail") {
                5 + HI.len()
            } else {
                5
            };
            assert_eq!(q.body_len, want as u64, "{}", q.path);
        }
        // The same connections carried both kinds.
        let conns: std::collections::BTreeSet<u64> = reqs.iter().map(|q| q.conn).collect();
        assert_eq!(conns.len(), 2, "{engine}");
        for c in conns {
            let on = |p: &str| reqs.iter().any(|q| q.conn == c && q.path.starts_with(p));
            assert!(on("/page") && on("/loadgen"), "connection {c}, {engine}");
        }
        assert_eq!(json["unexpected"], fail, "{text}");
        assert_eq!(json["expect_status"], "OK,200-299");
        // The calls that failed are the run's failures: each second's are
        // in the series, the plain 200s are not.
        let failed: u64 = json["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["non_2xx"].as_u64().unwrap())
            .sum();
        assert_eq!(failed, fail, "{text}");
        assert_eq!(json["grpc"]["methods"]["loadgen.test.Echo/Say"]["OK"], say);
    }
    // Both kinds of request need their kind of status.
    let out = run(&[
        "--scenario",
        &file,
        "--expect-status",
        "OK",
        "-n",
        "1",
        &url,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("give statuses for both, e.g. OK,2xx"), "{err}");
}

#[test]
fn bad_scenario_calls_are_one_line_naming_the_request() {
    let dir = protos();
    let set = protoset(&dir);
    let Some(server) = GrpcServer::start(&GrpcOptions {
        protoset: Some(&set),
        reflection: "v1",
        ..GrpcOptions::default()
    }) else {
        return;
    };
    let url = server.url();
    let set = set.to_str().unwrap();
    let with = |name: &str, step: &str| {
        scenario(
            name,
            &format!(
                "[[request]]\nname = \"ok\"\ngrpc = \"loadgen.test.Echo/Say\"\n\n[[request]]\nname = \"bad\"\n{step}"
            ),
        )
    };
    let shout = with(
        "shout.toml",
        "grpc = \"loadgen.test.Echo/Shout\"\nbody = '{}'\n",
    );
    let nope = with(
        "nope.toml",
        "grpc = \"loadgen.test.Nope/Say\"\nbody = '{}'\n",
    );
    let field = with(
        "field.toml",
        "grpc = \"loadgen.test.Echo/Say\"\nbody = '{\"nmae\": \"x\"}'\n",
    );
    let first = with(
        "first.toml",
        "grpc = \"loadgen.test.Echo/Say\"\nbody = '{\"loud\": {{seq}}}'\n",
    );
    let two = scenario("two.toml", TWO_CALLS);
    let http = scenario("http.toml", &format!("[[request]]\nurl = \"{url}/x\"\n"));
    for (args, want) in [
        (
            vec!["--scenario", &shout, "--protoset", set],
            "scenario request \"bad\": service loadgen.test.Echo has no method \"Shout\"; its methods are: Say, Fail, Watch",
        ),
        (
            vec!["--scenario", &shout],
            "scenario request \"bad\": service loadgen.test.Echo has no method \"Shout\"",
        ),
        (
            vec!["--scenario", &nope],
            "scenario request \"bad\": no service \"loadgen.test.Nope\" here; the services are: loadgen.test.Echo",
        ),
        (
            vec!["--scenario", &field, "--protoset", set],
            "scenario request \"bad\": body: the message is not a loadgen.test.EchoRequest in proto3 JSON: unrecognized field name 'nmae'",
        ),
        (
            vec!["--scenario", &first],
            "scenario request \"bad\": body: the message is not a loadgen.test.EchoRequest",
        ),
        (
            vec!["--scenario", &two, "--grpc", "loadgen.test.Echo/Say"],
            "--grpc is one call for the whole run",
        ),
        (
            vec!["--scenario", &http, "--protoset", set],
            "--proto and --protoset give the schema of gRPC calls",
        ),
    ] {
        let mut args = args;
        args.extend(["-n", "1", &url]);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
