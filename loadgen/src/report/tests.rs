//! Every output shows the same failures and the same "not 2xx or 3xx":
//! the text summary, the JSON report, the HTML page and the Prometheus
//! exposition, each from one run's stats.

use std::sync::Arc;

use super::*;
use crate::metrics::exposition::{Selector, parse};
use crate::metrics::{Info, Live};
use crate::shard::ShardProgress;
use crate::stats::{ErrorKind, ShardStats, one_of_each};
use crate::url::Url;

fn config() -> Config {
    let url = Url::parse("https://127.0.0.1:9/").unwrap();
    let addr = url.resolve().unwrap();
    Config::for_url(url, addr)
}

/// A run with every error kind (kind `i` counted `1 << i` times), TLS
/// stats, and responses of 200, 302, 404, 503 and 799.
fn stats() -> ShardStats {
    let mut s = ShardStats::new();
    s.tls = Some(Box::default());
    for (status, n) in [(200, 50), (302, 4), (404, 3), (503, 2), (799, 1)] {
        for _ in 0..n {
            s.record_response(status, 100);
        }
    }
    s.errors = one_of_each();
    s.elapsed = std::time::Duration::from_secs(1);
    s.roll_second();
    s
}

/// The number after the first `label ` (a word of its own) in `text` that
/// has one, for each of `labels`.
fn counts_after(text: &str, labels: impl Iterator<Item = String>) -> Vec<u64> {
    labels
        .map(|l| {
            let pat = format!("{l} ");
            text.match_indices(&pat)
                .filter(|(at, _)| !text[..*at].ends_with(char::is_alphanumeric))
                .find_map(|(at, _)| {
                    let rest = &text[at + pat.len()..];
                    let end = rest.find(|c: char| !c.is_ascii_digit())?;
                    rest[..end].parse().ok()
                })
                .unwrap_or_else(|| panic!("no {l:?} count in {text}"))
        })
        .collect()
}

#[test]
fn every_error_kind_reaches_every_output_and_they_add_up() {
    let cfg = config();
    let out = RunOutput::new(vec![stats()], None, std::time::UNIX_EPOCH);
    let run = RunReport::new(&cfg, &out, "io_uring", false);
    let e = out.total.errors;
    let want: Vec<u64> = e.iter().map(|(_, n)| n).collect();
    assert!(want.iter().all(|&n| n > 0));

    let text = summary(&run, false);
    let got = counts_after(&text, ErrorKind::ALL.iter().map(|k| k.label().to_string()));
    assert_eq!(got, want, "{text}");
    assert_eq!(got.iter().sum::<u64>(), e.total());

    let doc = Report::new(&run);
    let json = serde_json::to_value(&doc).unwrap();
    let got: Vec<u64> = ErrorKind::ALL
        .iter()
        .map(|k| json["errors"][k.name()].as_u64().unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(json["errors"].as_object().unwrap().len(), want.len());

    let html = html::render(&doc).unwrap();
    let row = html
        .split("<th class=\"l\">errors</th><td>")
        .nth(1)
        .and_then(|r| r.split("</td>").next())
        .expect("an errors row");
    let got = counts_after(row, ErrorKind::ALL.iter().map(|k| k.name().to_string()));
    assert_eq!(got, want, "{row}");
    assert!(row.starts_with(&format!("{} (", e.total())), "{row}");

    let progress = ShardProgress::default();
    progress.publish(&out.total);
    let live = Live::new(Info::default());
    live.begin_run(Arc::from(vec![progress]));
    let samples = parse(&live.render()).unwrap();
    let got: Vec<u64> = ErrorKind::ALL
        .iter()
        .map(|k| {
            let sel = format!("loadgen_errors_total{{kind=\"{}\"}}", k.name());
            Selector::parse(&sel).unwrap().sum(&samples).unwrap_or(-1.0) as u64
        })
        .collect();
    assert_eq!(got, want);
    let all = Selector::parse("loadgen_errors_total")
        .unwrap()
        .sum(&samples);
    assert_eq!(all, Some(e.total() as f64));
}

#[test]
fn non_2xx_3xx_is_one_rule_in_every_output() {
    let cfg = config();
    let out = RunOutput::new(vec![stats()], None, std::time::UNIX_EPOCH);
    let run = RunReport::new(&cfg, &out, "io_uring", false);
    // 404, 503 and 799: a status past 599 is not a success either.
    let want = 3 + 2 + 1;
    assert_eq!(out.total.non_2xx_3xx(), want);
    let text = summary(&run, false);
    assert!(
        text.contains(&format!("Non-2xx or 3xx responses: {want}\n")),
        "{text}"
    );
    let doc = Report::new(&run);
    assert_eq!(doc.status.non_2xx_3xx(), want);
    assert_eq!(doc.series[0].non_2xx, want);
    let html = html::render(&doc).unwrap();
    assert!(
        html.contains(&format!("non-2xx/3xx {want}</td>")),
        "the header"
    );
    let t = crate::threshold::Threshold::parse("non2xx==6").unwrap();
    assert!(t.eval(&doc).unwrap().ok);
}

/// `--unix-socket`: the text's first line and the JSON say where the
/// load went (the URL alone names a host it never reached).
#[test]
fn a_unix_socket_run_says_so() {
    let mut cfg = config();
    assert!(!header(&cfg).contains("unix:"));
    cfg.peer = crate::peer::Peer::Unix("/run/app.sock".into());
    let head = header(&cfg);
    assert!(
        head.starts_with("Running 10s test @ https://127.0.0.1:9/ via unix:/run/app.sock\n"),
        "{head}"
    );
    let out = RunOutput::new(vec![stats()], None, std::time::UNIX_EPOCH);
    let doc = Report::new(&RunReport::new(&cfg, &out, "io_uring", false));
    assert_eq!(doc.unix_socket.as_deref(), Some("/run/app.sock"));
    let json = serde_json::to_string(&doc).unwrap();
    assert!(json.contains(r#""unix_socket":"/run/app.sock""#), "{json}");
}

#[test]
fn the_batch_wait_is_recorded_for_io_uring_only() {
    let mut cfg = config();
    cfg.engine = crate::config::Engine::Uring;
    cfg.batch_wait = std::time::Duration::from_micros(250);
    let out = RunOutput::new(vec![stats()], None, std::time::UNIX_EPOCH);
    let doc = Report::new(&RunReport::new(&cfg, &out, "io_uring", false));
    assert_eq!(doc.batch_wait_us, Some(250));
    cfg.engine = crate::config::Engine::Glommio;
    let doc = Report::new(&RunReport::new(&cfg, &out, "glommio", false));
    assert_eq!(doc.batch_wait_us, None);
    let json = serde_json::to_string(&doc).unwrap();
    assert!(json.contains(r#""batch_wait_us":null"#), "{json}");
}
