use std::path::Path;

use super::*;

fn entry(name: &str, weight: u32, target: &str) -> Entry {
    Entry {
        name: name.into(),
        weight,
        spec: RequestSpec::get("h:1", target),
        grpc: None,
    }
}

fn opts(feeds: Vec<Feed>) -> Options<'static> {
    Options {
        feeds,
        jwt: None,
        seed: 1,
        named: true,
        env: &|_| None,
    }
}

fn render_all(sc: &Scenario, shard: usize, shards: usize, n: usize) -> Vec<(u16, String)> {
    let mut sg = ShardGen::new(sc, shard, shards);
    let mut cg = ConnGen::new(sc, shard, 0);
    (0..n)
        .map(|_| {
            let mut out = Vec::new();
            let w = sc.render(&mut sg, &mut cg, 1_700_000_000_000, &mut out);
            assert!(out.len() <= sc.max_request_len());
            (w, String::from_utf8(out).unwrap())
        })
        .collect()
}

#[test]
fn a_fixed_request_renders_like_to_bytes() {
    let mut spec = RequestSpec::get("h:1", "/a?b=1");
    spec.method = "POST".into();
    spec.headers = vec![("X-A".into(), "1".into())];
    spec.body = b"hello".to_vec();
    let sc = Scenario::fixed(&spec).unwrap();
    assert_eq!(sc.fixed_bytes(), Some(spec.to_bytes().unwrap().as_slice()));
    assert_eq!(
        render_all(&sc, 0, 1, 1)[0].1.as_bytes(),
        spec.to_bytes().unwrap()
    );
}

#[test]
fn seq_is_strided_by_shard() {
    let sc = Scenario::compile(vec![entry("a", 1, "/s/{{seq}}")], opts(vec![])).unwrap();
    assert!(sc.fixed_bytes().is_none());
    let mut all: Vec<u64> = (0..3)
        .flat_map(|shard| render_all(&sc, shard, 3, 4))
        .map(|(_, r)| {
            r["GET /s/".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..12).collect::<Vec<u64>>());
}

#[test]
fn templated_body_gets_its_own_length() {
    let mut e = entry("post", 1, "/p");
    e.spec.method = "POST".into();
    e.spec.body = br#"{"id":{{seq}},"u":"{{uuid}}"}"#.to_vec();
    let sc = Scenario::compile(vec![e.clone()], opts(vec![])).unwrap();
    let reqs = render_all(&sc, 0, 1, 11);
    let last = &reqs[10].1;
    let (head, body) = last.split_once("\r\n\r\n").unwrap();
    assert!(body.starts_with(r#"{"id":10,"u":""#), "{last}");
    assert!(
        head.ends_with(&format!("Content-Length: {}", body.len())),
        "{last}"
    );
    e.spec.headers.push(("Content-Length".into(), "5".into()));
    assert!(matches!(
        Scenario::compile(vec![e], opts(vec![])),
        Err(ScenarioError::ContentLength(_))
    ));
}

#[test]
fn weights_pick_in_proportion() {
    let sc = Scenario::compile(
        vec![
            entry("a", 1, "/a"),
            entry("b", 3, "/b"),
            entry("c", 6, "/c"),
        ],
        opts(vec![]),
    )
    .unwrap();
    let mut counts = [0usize; 3];
    for (w, r) in render_all(&sc, 0, 1, 100_000) {
        counts[w as usize] += 1;
        assert!(r.starts_with(["GET /a ", "GET /b ", "GET /c "][w as usize]));
    }
    for (c, share) in counts.iter().zip([0.1, 0.3, 0.6]) {
        assert!((*c as f64 / 100_000.0 - share).abs() < 0.01, "{counts:?}");
    }
}

#[test]
fn feeds_go_round_robin_with_one_row_per_request() {
    let feed = Feed::parse("u", Path::new("u.csv"), b"id,name\n1,ann\n2,bob\n3,cy\n").unwrap();
    let sc = Scenario::compile(
        vec![entry("a", 1, "/u/{{feed:u.id}}/{{feed:u.name}}")],
        opts(vec![feed]),
    )
    .unwrap();
    let got: Vec<String> = render_all(&sc, 0, 1, 4)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    for (r, want) in got
        .iter()
        .zip(["/u/1/ann ", "/u/2/bob ", "/u/3/cy ", "/u/1/ann "])
    {
        assert!(r.starts_with(&format!("GET {want}")), "{r}");
    }
    // Two shards: rows 1,3,2,… and 2,1,3,… — each row equally often.
    let both: Vec<String> = (0..2)
        .flat_map(|s| render_all(&sc, s, 2, 3))
        .map(|(_, r)| r)
        .collect();
    for row in ["/u/1/ann ", "/u/2/bob ", "/u/3/cy "] {
        assert_eq!(both.iter().filter(|r| r.contains(row)).count(), 2);
    }
}

#[test]
fn unsafe_feed_values_are_refused_where_they_would_break_the_request() {
    let feed = || Feed::parse("q", Path::new("q.txt"), b"a b\n").unwrap();
    assert!(matches!(
        Scenario::compile(vec![entry("a", 1, "/{{feed:q}}")], opts(vec![feed()])),
        Err(ScenarioError::FeedInTarget { row: 1, .. })
    ));
    let mut e = entry("a", 1, "/");
    e.spec.headers.push(("X-Q".into(), "{{feed:q}}".into()));
    e.spec.body = b"{{feed:q}}".to_vec();
    Scenario::compile(vec![e], opts(vec![feed()])).unwrap();
}

#[test]
fn jwt_is_minted_once_per_connection_and_refreshed_before_exp() {
    let mut o = opts(vec![]);
    o.jwt = Some((b"secret".to_vec(), r#"{"sub":"u{{seq}}"}"#.into(), 60));
    let sc = Scenario::compile(vec![entry("a", 1, "/")], o).unwrap();
    let mut sg = ShardGen::new(&sc, 0, 1);
    let (mut c0, mut c1) = (ConnGen::new(&sc, 0, 0), ConnGen::new(&sc, 0, 1));
    let token = |out: &[u8]| {
        let t = String::from_utf8(out.to_vec()).unwrap();
        t.split("Authorization: Bearer ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap()
            .to_string()
    };
    let mut render = |cg: &mut ConnGen, now_ms: u64| {
        let mut out = Vec::new();
        sc.render(&mut sg, cg, now_ms, &mut out);
        token(&out)
    };
    let a1 = render(&mut c0, 1_000_000);
    let b1 = render(&mut c1, 1_000_000);
    let a2 = render(&mut c0, 1_050_000);
    assert_eq!(a1, a2, "reused while valid");
    assert_ne!(a1, b1, "one per connection");
    let a3 = render(&mut c0, 1_059_000);
    assert_ne!(a1, a3, "refreshed in the last second before exp");
}

#[test]
fn bad_scenarios_are_refused() {
    assert!(matches!(
        Scenario::compile(vec![], opts(vec![])),
        Err(ScenarioError::Empty)
    ));
    assert!(matches!(
        Scenario::compile(vec![entry("a", 1, "/a b")], opts(vec![])),
        Err(ScenarioError::Request(RequestError::Target(_)))
    ));
    let e = Scenario::compile(vec![entry("x", 1, "/{{bogus}}")], opts(vec![])).unwrap_err();
    assert_eq!(
        e.to_string().split(':').next().unwrap(),
        "bad template in the URL of request \"x\" at byte 1"
    );
}

#[test]
fn scenario_files_load_and_check() {
    let dir = std::env::temp_dir().join(format!("loadgen-scn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    write("payload.json", r#"{"n":{{seq}}}"#);
    let ok = write(
        "ok.toml",
        r#"
[[request]]
name = "item"
url = "http://127.0.0.1:8080/items/{{rand:1:10}}"
weight = 3
headers = ["X-A: 1"]

[[request]]
method = "POST"
url = "/orders"
body_file = "payload.json"
"#,
    );
    let (base, entries) = load_file(&ok, None).unwrap();
    assert_eq!((base.host.as_str(), base.port), ("127.0.0.1", 8080));
    assert_eq!(entries.len(), 2);
    assert_eq!((entries[0].name.as_str(), entries[0].weight), ("item", 3));
    assert_eq!(entries[1].name, "POST /orders");
    assert_eq!(entries[1].spec.body, br#"{"n":{{seq}}}"#);
    assert_eq!(entries[1].spec.host, "127.0.0.1:8080");

    let err = |text: &str| {
        load_file(&write("bad.toml", text), None)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err("[[request]]\nurl = 5\n").contains("line 2"),
        "{}",
        err("[[request]]\nurl = 5\n")
    );
    assert!(err("[[request]]\nurl = \"/x\"\n").contains("path-only URL"));
    assert!(
        err("[[request]]\nurl = \"http://a:1/\"\n[[request]]\nurl = \"http://b:1/\"\n")
            .contains("share one host")
    );
    assert!(err("[[request]]\nurl = \"http://a:1/\"\nweight = 0\n").contains("weight"));
    assert!(err("[[request]]\nurl = \"http://a:1/\"\nbogus = 1\n").contains("unknown field"));
    assert!(err("").contains("no [[request]]"));
    let at_line_start = err("[[request]]\nurl = \"http://a:1/\"\nnope\n");
    assert!(at_line_start.contains("line 3"), "{at_line_start}");
    assert!(err("[[request]]\nname = \"a\"\nurl = \"http://a:1/\"\n[[request]]\nname = \"a\"\nurl = \"/\"\n").contains("twice"));
    assert!(
        load_file(Path::new("/nonexistent.toml"), None)
            .unwrap_err()
            .to_string()
            .starts_with("cannot read scenario")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn grpc_requests_in_scenario_files() {
    let dir = std::env::temp_dir().join(format!("loadgen-scn-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    write("hi.bin", &[0x0a, 0x02, b'h', b'i']);
    let ok = write(
        "ok.toml",
        br#"
[[request]]
url = "http://127.0.0.1:50051/page"

[[request]]
grpc = "pkg.Echo/Say"
headers = ["x-user: {{seq}}"]
body = '{"name": "u{{seq}}"}'

[[request]]
name = "raw"
url = "http://127.0.0.1:50051"
grpc = "/pkg.Echo/Fail"
body_file = "hi.bin"
"#,
    );
    let (_, entries) = load_file(&ok, None).unwrap();
    assert_eq!(entries[0].grpc, None, "no grpc: a plain request");
    let say = &entries[1];
    assert_eq!(say.name, "pkg.Echo/Say", "named after the method");
    assert_eq!(say.grpc.as_ref().unwrap().to_string(), "pkg.Echo/Say");
    assert_eq!(say.spec.target, "/pkg.Echo/Say");
    assert_eq!(say.spec.body, br#"{"name": "u{{seq}}"}"#);
    assert_eq!(say.spec.host, "127.0.0.1:50051");
    assert_eq!(entries[2].spec.target, "/pkg.Echo/Fail");
    assert_eq!(
        entries[2].spec.body,
        [0, 0, 0, 0, 4, 0x0a, 0x02, b'h', b'i'],
        "a .bin message is framed as it is"
    );
    let err = |text: &str| {
        load_file(&write("bad.toml", text.as_bytes()), None)
            .unwrap_err()
            .to_string()
    };
    let base = "[[request]]\nurl = \"http://a:1/\"\n[[request]]\nname = \"g\"\n";
    for (text, want) in [
        (
            "grpc = \"Echo\"\n",
            "scenario request \"g\": grpc = \"Echo\" is not SERVICE/METHOD",
        ),
        (
            "grpc = \"a.B/C\"\nmethod = \"GET\"\n",
            "a POST: drop method",
        ),
        (
            "grpc = \"a.B/C\"\nurl = \"/x\"\n",
            "the path is /SERVICE/METHOD (got \"/x\")",
        ),
        ("weight = 2\n", "scenario request \"g\" needs a url"),
    ] {
        let e = err(&format!("{base}{text}"));
        assert!(e.contains(want), "{text}: {e}");
    }
    assert!(err("[[request]]\ngrpc = \"a.B/C\"\n").contains("path-only URL"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_placed_token_is_not_sent_twice() {
    let jwt_opts = || {
        let mut o = opts(vec![]);
        o.jwt = Some((b"k".to_vec(), "{}".into(), 60));
        o
    };
    let once = |e: Entry| {
        let sc = Scenario::compile(vec![e], jwt_opts()).unwrap();
        let r = render_all(&sc, 0, 1, 1).remove(0).1;
        (
            r.matches("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.").count(),
            r,
        )
    };
    let (n, r) = once(entry("q", 1, "/?token={{jwt}}"));
    assert_eq!(n, 1, "{r}");
    assert!(!r.contains("Authorization"), "{r}");
    let mut e = entry("h", 1, "/");
    e.spec.headers.push(("X-Token".into(), "{{jwt}}".into()));
    assert_eq!(once(e).0, 1);
    let (n, r) = once(entry("default", 1, "/"));
    assert_eq!(n, 1);
    assert!(r.contains("\r\nAuthorization: Bearer eyJ"), "{r}");
}

#[test]
fn claims_take_the_next_feed_row_per_token() {
    let feed = Feed::parse("u", Path::new("u.txt"), b"ann\nbob\n").unwrap();
    let mut o = opts(vec![feed]);
    o.jwt = Some((b"k".to_vec(), r#"{"sub":"{{feed:u}}"}"#.into(), 60));
    let sc = Scenario::compile(vec![entry("a", 1, "/")], o).unwrap();
    let mut sg = ShardGen::new(&sc, 0, 1);
    let subs: Vec<String> = (0..3)
        .map(|c| {
            let mut cg = ConnGen::new(&sc, 0, c);
            let mut out = Vec::new();
            sc.render(&mut sg, &mut cg, 1_000_000, &mut out);
            let text = String::from_utf8(out).unwrap();
            let token = text
                .split("Bearer ")
                .nth(1)
                .unwrap()
                .split("\r\n")
                .next()
                .unwrap();
            let claims = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.split('.').nth(1).unwrap(),
            )
            .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&claims).unwrap();
            v["sub"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(subs, ["ann", "bob", "ann"]);
}

/// A fleet's parts, each with its own shard count, hand out every
/// `{{seq}}` once, and request g of the fleet reads row g (mod the rows):
/// the rows are split the way the numbers are.
#[test]
fn seq_and_feed_rows_follow_the_fleet_numbering() {
    use crate::fleet::Part;
    let text: String = (0..7).map(|i| format!("row{i}\n")).collect();
    let feed = Feed::parse("f", Path::new("f.txt"), text.as_bytes()).unwrap();
    let sc = Scenario::compile(
        vec![entry("a", 1, "/s/{{seq}}/{{feed:f}}")],
        opts(vec![feed]),
    )
    .unwrap();
    let mut seen = Vec::new();
    for (k, shards) in [(1u32, 2usize), (2, 3), (3, 1)] {
        let part = Part { index: k, of: 3 };
        for i in 0..shards {
            let mut sg = ShardGen::for_stream(&sc, part.stream(i, shards));
            let mut cg = ConnGen::with_seed(&sc, part.seed(1), i, 0);
            // Each shard renders its share of 3 × 30 requests.
            let n = 30 / shards;
            for _ in 0..n {
                let mut out = Vec::new();
                sc.render(&mut sg, &mut cg, 0, &mut out);
                let line = String::from_utf8(out).unwrap();
                let path = line["GET /s/".len()..]
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string();
                let (seq, row) = path.split_once('/').unwrap();
                seen.push((seq.parse::<u64>().unwrap(), row.to_string()));
            }
        }
    }
    seen.sort();
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..90).collect::<Vec<_>>(), "unique and dense");
    for (g, row) in &seen {
        assert_eq!(row, &format!("row{}", g % 7), "fleet request {g}");
    }
}
