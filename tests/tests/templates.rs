//! Templates and scenarios end to end: what the server actually receives.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use loadgen_tests::recorder::{Recorder, Seen};
use loadgen_tests::{run, run_json};
use sha2::{Digest, Sha256};

const ENGINES: [&str; 2] = ["uring", "glommio"];

fn tmp(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("loadgen-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// The path segment after `prefix` of every request, as numbers.
fn numbers(seen: &[Seen], prefix: &str) -> Vec<i64> {
    seen.iter()
        .map(|s| {
            s.target
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{} lacks {prefix}", s.target))
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn seq_is_unique_and_dense_across_shards_engines_and_modes() {
    let r = Recorder::start();
    let url = r.url("/s/{{seq}}");
    for engine in ENGINES {
        for extra in [&[][..], &["-R", "4000"][..]] {
            let mut args = vec![
                "-n",
                "3000",
                "-t",
                "2",
                "-c",
                "8",
                "--pipeline",
                "4",
                "--engine",
                engine,
                &url,
            ];
            args.extend_from_slice(extra);
            let (doc, text, code) = run_json(&args);
            assert_eq!(code, 0, "{text}");
            assert_eq!(doc["requests"], 3000, "{text}");
            let mut got = numbers(&r.take(), "/s/");
            got.sort_unstable();
            assert_eq!(
                got,
                (0..3000).collect::<Vec<i64>>(),
                "{engine} {extra:?}: the server must see 0..3000 exactly once"
            );
        }
    }
}

#[test]
fn rand_is_in_range_uniform_and_reproducible_per_connection() {
    let r = Recorder::start();
    let url = r.url("/r/{{rand:1:10}}");
    let per_conn = |seed: &str| {
        let (_, text, code) = run_json(&["-n", "6000", "-t", "1", "-c", "2", "--seed", seed, &url]);
        assert_eq!(code, 0, "{text}");
        let mut by_conn: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
        for s in r.take() {
            by_conn
                .entry(s.conn)
                .or_default()
                .push(numbers(&[s], "/r/")[0]);
        }
        by_conn.into_values().collect::<Vec<_>>()
    };
    let a = per_conn("42");
    let all: Vec<i64> = a.iter().flatten().copied().collect();
    assert_eq!(all.len(), 6000);
    let mut counts = [0f64; 10];
    for v in &all {
        assert!((1..=10).contains(v), "{v} out of range");
        counts[(*v - 1) as usize] += 1.0;
    }
    let expected = all.len() as f64 / 10.0;
    let chi2: f64 = counts
        .iter()
        .map(|c| (c - expected).powi(2) / expected)
        .sum();
    // χ²(9) exceeds 27.88 with probability 0.001.
    assert!(
        chi2 < 27.88,
        "not uniform: χ² = {chi2:.1}, counts {counts:?}"
    );

    // Same seed: each connection sends the same values again. Connections
    // share the -n quota, so compare as far as both runs went.
    let b = per_conn("42");
    for seq in &a {
        assert!(
            b.iter().any(|other| {
                let n = seq.len().min(other.len());
                n >= 100 && seq[..n] == other[..n]
            }),
            "no connection of the second run repeated the first run's values"
        );
    }
    let c = per_conn("43");
    assert!(a.iter().all(|s| c.iter().all(|o| s[..100] != o[..100])));
}

#[test]
fn feeds_go_round_robin_and_csv_columns_stay_on_one_row() {
    let r = Recorder::start();
    let ids = tmp("ids.txt", "a\nb\nc\n\nd\ne\n");
    let users = tmp("users.csv", "id,name\n1,ann\n2,bob\n3,\"cy, jr\"\n");
    let feed_ids = format!("ids={ids}");
    let feed_users = format!("users={users}");
    let (_, text, code) = run_json(&[
        "-n",
        "10",
        "-t",
        "1",
        "-c",
        "1",
        "--feed",
        &feed_ids,
        &r.url("/id/{{feed:ids}}"),
    ]);
    assert_eq!(code, 0, "{text}");
    let got: Vec<String> = r.take().into_iter().map(|s| s.target).collect();
    let want: Vec<String> = "abcdeabcde".chars().map(|c| format!("/id/{c}")).collect();
    assert_eq!(got, want);

    let (_, text, code) = run_json(&[
        "-n",
        "30",
        "-t",
        "2",
        "-c",
        "4",
        "--feed",
        &feed_users,
        "-H",
        "X-Name: {{feed:users.name}}",
        &r.url("/u/{{feed:users.id}}"),
    ]);
    assert_eq!(code, 0, "{text}");
    let seen = r.take();
    assert_eq!(seen.len(), 30);
    let names = ["ann", "bob", "cy, jr"];
    let mut per_row = [0; 3];
    for s in &seen {
        let id: usize = s.target.strip_prefix("/u/").unwrap().parse().unwrap();
        assert_eq!(
            s.header("X-Name"),
            Some(names[id - 1]),
            "row mixed up: {s:?}"
        );
        per_row[id - 1] += 1;
    }
    assert_eq!(per_row, [10, 10, 10], "round-robin over both shards");

    let out = run(&[
        "-n",
        "1",
        "--feed",
        "x=/nonexistent/feed.csv",
        &r.url("/{{feed:x}}"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read feed file /nonexistent/feed.csv"),
        "{err}"
    );
    let out = run(&["-n", "1", &r.url("/{{feed:nope}}")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--feed nope=FILE"));
}

#[test]
fn templated_bodies_carry_their_own_length() {
    let r = Recorder::start();
    for engine in ENGINES {
        let (doc, text, code) = run_json(&[
            "-n",
            "500",
            "-t",
            "1",
            "-c",
            "4",
            "--pipeline",
            "8",
            "--engine",
            engine,
            "-m",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-b",
            r#"{"id":{{seq}},"trace":"{{uuid}}","at":{{now_ms}}}"#,
            &r.url("/orders"),
        ]);
        assert_eq!((code, doc["requests"].as_u64()), (0, Some(500)), "{text}");
        let mut ids = HashSet::new();
        for s in r.take() {
            let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
            ids.insert(v["id"].as_u64().unwrap());
            assert_eq!(v["trace"].as_str().unwrap().len(), 36);
            assert!(v["at"].as_u64().unwrap() > 1_600_000_000_000);
        }
        assert_eq!(ids.len(), 500);
    }
}

#[test]
fn weighted_scenario_reports_each_request_and_the_total() {
    let r = Recorder::start();
    let scenario = tmp(
        "mix.toml",
        &format!(
            r#"
[[request]]
name = "home"
url = "{}"
weight = 1

[[request]]
name = "item"
url = "/items/{{{{rand:1:1000}}}}"
weight = 3

[[request]]
name = "gone"
url = "/status/404"
weight = 6
"#,
            r.url("/")
        ),
    );
    for engine in ENGINES {
        let (doc, text, code) = run_json(&[
            "--scenario",
            &scenario,
            "-n",
            "20000",
            "-t",
            "2",
            "-c",
            "8",
            "--pipeline",
            "2",
            "--engine",
            engine,
            "--expect-status",
            "200",
        ]);
        assert_eq!(code, 4, "unexpected 404s make exit status 4: {text}");
        assert_eq!(doc["requests"], 20000);
        let by: HashMap<String, &serde_json::Value> = doc["by_request"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_string(), v))
            .collect();
        let mut sum = 0;
        for (name, share) in [("home", 0.1), ("item", 0.3), ("gone", 0.6)] {
            let n = by[name]["requests"].as_u64().unwrap();
            sum += n;
            let got = n as f64 / 20000.0;
            assert!(
                (got - share).abs() < 0.02,
                "{name}: {got:.3} of requests, weight says {share}"
            );
            assert_eq!(by[name]["latency_us"]["max"].as_u64().unwrap() > 0, n > 0);
        }
        assert_eq!(sum, 20000, "the breakdown sums to the total");
        assert_eq!(doc["unexpected"], by["gone"]["requests"]);
        assert_eq!(by["gone"]["unexpected"], by["gone"]["requests"]);
        assert_eq!(by["item"]["unexpected"], 0);
        assert_eq!(by["gone"]["status"]["codes"]["404"], by["gone"]["requests"]);
        let seen = r.take();
        let items = seen
            .iter()
            .filter(|s| s.target.starts_with("/items/"))
            .count() as u64;
        assert_eq!(
            items,
            by["item"]["requests"].as_u64().unwrap(),
            "server agrees"
        );
        assert!(
            text.contains("By request:") && text.contains("Unexpected status"),
            "{text}"
        );
    }
}

#[test]
fn errors_count_against_the_request_that_hit_them() {
    let h = loadgen_tests::hostile::Hostile::start();
    let scenario = tmp(
        "errors.toml",
        &format!(
            "[[request]]\nname = \"fine\"\nurl = \"{}\"\nweight = 3\n\n[[request]]\nname = \"broken\"\nurl = \"/garbage\"\n",
            h.url("/ok")
        ),
    );
    for engine in ENGINES {
        let (doc, text, code) = run_json(&[
            "--scenario",
            &scenario,
            "-n",
            "400",
            "-t",
            "1",
            "-c",
            "4",
            "--engine",
            engine,
        ]);
        assert_eq!(code, 0, "{text}");
        let by = doc["by_request"].as_array().unwrap();
        let (fine, broken) = (&by[0], &by[1]);
        assert_eq!(fine["name"], "fine");
        assert_eq!(fine["errors"]["parse"], 0, "{text}");
        assert!(fine["requests"].as_u64().unwrap() > 200, "{text}");
        assert_eq!(broken["requests"], 0, "{text}");
        assert_eq!(broken["errors"]["parse"], doc["errors"]["parse"], "{text}");
        assert!(broken["errors"]["parse"].as_u64().unwrap() > 50, "{text}");
        assert_eq!(
            fine["requests"].as_u64().unwrap() + broken["errors"]["parse"].as_u64().unwrap(),
            400,
            "-n counts answered and failed requests: {text}"
        );
    }
}

fn hs256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[test]
fn jwts_verify_carry_the_claims_and_one_per_connection() {
    let r = Recorder::start();
    let url = r.url("/private");
    // Claims read {{env:AUD}}: set for the run, unset for the error case.
    let jwt_run = |engine: &str, aud: Option<&str>| {
        let mut cmd = std::process::Command::new("timeout");
        cmd.arg("60").arg(loadgen_tests::loadgen_bin()).args([
            "-n",
            "400",
            "-t",
            "2",
            "-c",
            "4",
            "--engine",
            engine,
            "--jwt-secret",
            "s3cret",
            "--jwt-ttl",
            "10m",
            "--jwt-claims",
            r#"{"sub":"user-{{rand:1:9}}","jti":"{{uuid}}","aud":"{{env:AUD}}"}"#,
            &url,
        ]);
        match aud {
            Some(v) => cmd.env("AUD", v),
            None => cmd.env_remove("AUD"),
        };
        cmd.output().unwrap()
    };
    for engine in ENGINES {
        // The variable is unset: a clear error, not a run.
        let out = jwt_run(engine, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("\"AUD\" is not set"), "{err}");

        let out = jwt_run(engine, Some("orders"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = r.take();
        assert_eq!(seen.len(), 400);
        let mut by_conn: HashMap<u64, HashSet<String>> = HashMap::new();
        for s in &seen {
            let auth = s.header("Authorization").expect("a token on every request");
            let token = auth.strip_prefix("Bearer ").unwrap();
            by_conn.entry(s.conn).or_default().insert(token.to_string());
        }
        assert_eq!(by_conn.len(), 4);
        let tokens: HashSet<&String> = by_conn.values().flatten().collect();
        assert_eq!(tokens.len(), 4, "one token per connection, reused");
        assert!(by_conn.values().all(|t| t.len() == 1));
        for token in tokens {
            let parts: Vec<&str> = token.split('.').collect();
            let signed = format!("{}.{}", parts[0], parts[1]);
            assert_eq!(
                URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
                hs256(b"s3cret", signed.as_bytes()),
                "signature verifies with the secret"
            );
            let claims: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
            assert_eq!(claims["aud"], "orders");
            assert!(claims["sub"].as_str().unwrap().starts_with("user-"));
            assert_eq!(
                claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
                600
            );
        }
    }
}

#[test]
fn bad_templates_and_scenarios_are_one_line_errors() {
    let r = Recorder::start();
    let bad_toml = tmp("bad.toml", "[[request]]\nurl = \"/x\"\nweight = -1\n");
    for args in [
        vec![r.url("/{{rand:9:1}}")],
        vec!["-H".into(), "X: {{nope}}".into(), r.url("/")],
        vec!["--scenario".into(), bad_toml],
        vec![
            "--jwt-secret".into(),
            "k".into(),
            "--jwt-claims".into(),
            "[1]".into(),
            r.url("/"),
        ],
        vec!["--expect-status".into(), "2xy".into(), r.url("/")],
    ] {
        let mut a: Vec<&str> = vec!["-n", "1"];
        a.extend(args.iter().map(String::as_str));
        let out = run(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{a:?}: {err}");
        assert!(err.starts_with("loadgen: "), "{err}");
    }
    assert!(r.take().is_empty());
}

#[test]
fn tokens_are_replaced_before_they_expire() {
    let r = Recorder::start();
    let (_, text, code) = run_json(&[
        "-d",
        "4500ms",
        "-t",
        "1",
        "-c",
        "2",
        "-R",
        "200",
        "--jwt-secret",
        "k",
        "--jwt-ttl",
        "2s",
        &r.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    let seen = r.take();
    assert!(seen.len() > 500, "{} requests", seen.len());
    let mut per_conn: HashMap<u64, HashSet<String>> = HashMap::new();
    for s in &seen {
        let token = s
            .header("Authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        let exp_ms = claims["exp"].as_u64().unwrap() * 1000;
        assert!(
            s.at_ms < exp_ms,
            "a token was used {} ms after it expired",
            s.at_ms - exp_ms
        );
        per_conn
            .entry(s.conn)
            .or_default()
            .insert(token.to_string());
    }
    assert_eq!(per_conn.len(), 2);
    for tokens in per_conn.values() {
        // 4.5 s with 2 s tokens renewed 1 s early: a new token every ~1 s.
        assert!(
            (3..=7).contains(&tokens.len()),
            "{} tokens on one connection",
            tokens.len()
        );
    }
}
