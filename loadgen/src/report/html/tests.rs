//! The page escapes every text it is given: a report whose every string
//! carries markup draws a page with none of it.

use serde_json::json;

use crate::report::Report;

/// A report with every section of the page, each string field carrying
/// `<i>` markup and quotes.
pub(super) fn hostile() -> Report {
    let x = |s: &str| format!("{s} <i>\"x\"</i> & 'y'");
    let h = crate::histogram::encode_histogram(&{
        let mut h = crate::histogram::new_latency_histogram();
        for v in 1..=500 {
            h.record(v * 10).unwrap();
        }
        h
    });
    let second = |i: u64| {
        json!({"second": i, "requests": 100, "errors": 1, "rate": 100.0, "p50_us": 10,
               "p90_us": 20, "p99_us": 30 + i, "p99_9_us": 40, "max_us": 50, "non_2xx": 2,
               "target_rate": 110.0, "target_runq_p99_us": 300})
    };
    let mut v = json!({
        "url": x("http://127.0.0.1:1/"),
        "engine": "io_uring", "shards": 2, "connections": 8, "pipeline": 1,
        "duration_s": 3.0, "requests": 300, "rps": 100.0, "transfer_per_s": 1000.0,
        "latency_us": {"p50": 10, "p99": 30, "max": 50},
        "status": {"2xx": 290, "5xx": 10, "codes": {"200": 290, "503": 10}},
        "errors": {"timeout": 3, "tls": 1},
        "mode": "open", "target_rps": 110.0, "warmup_s": 1.0, "interrupted": true,
        "series": [second(1), second(2), second(3)],
        "warnings": [x("WARNING: one")],
        "seed": 7, "scenario": x("s.toml"), "host": x("host"),
        "part": {"index": 1, "of": 2},
        "started_unix_ms": 1_767_225_600_000u64,
        "by_request": [{"name": x("home"), "method": "GET", "target": x("/a?b=1&c=2"),
                        "weight": 1, "requests": 300, "rps": 100.0,
                        "latency_us": {"mean": 12.0, "p50": 10, "p99": 30, "max": 50},
                        "status": {"codes": {"200": 290, "799": 10}}}],
        "runs": [{"run": 1, "requests": 150}, {"run": 2, "requests": 150}],
        "grpc": {"service": x("s.S"), "method": x("M"), "status": {"OK": 290, x("CODE"): 10},
                 "methods": {x("s.S/M"): {x("CODE"): 10}},
                 "latency_by_status": {"OK": {"p50": 10, "p99": 30, "max": 50}}},
        "parts": [{"part": {"index": 1, "of": 2}, "source": x("a.json"), "host": x("h1"),
                   "start_skew_ms": 1.5, "requests": 300, "rps": 100.0, "p99_us": 30}],
        "thresholds": [{"expr": x("p99<"), "value": 30.0, "ok": false, "unit": "us"}],
        "server_metrics": {"url": x("http://m/"), "counter": x("reqs"), "requests": 300.0,
                           "rps": 100.0, "client_requests": 300, "client_rps": 100.0,
                           "agrees": true, "difference_pct": 0.1, "margin": 3.0,
                           "histogram": x("lat"), "p50": 0.00001, "p99": 0.00003},
        "summary_text": x("Running 3s test"),
        "histograms": {"latency": h},
    });
    v["profile"] = json!({"target": x("srv"), "freq_hz": 99, "window_s": 3.0, "samples": 3,
                    "lost": 0, "warnings": [x("note")],
                    "functions": [{"name": x("burn"), "self_pct": 66.7, "total_pct": 66.7}],
                    "folded": ["srv;main;burn 2", "srv;main 1"],
                    "off_cpu": {"total_us": 2_500_000.0, "waits": 500, "min_us": 1.0,
                                "by_state": {"sleep_us": 2_400_000.0},
                                "stacks_us": 2_450_000.0, "sample_every_max": 8,
                                "stacks_taken": 70,
                                "blocking": [{"state": x("S"), "blocked_in": x("nanosleep"),
                                              "us": 2_000_000.0, "pct": 81.6, "waits": 400,
                                              "woken_by": x("hrtimer")}],
                                "folded": ["srv;main;nanosleep;[S] 2000000"]},
                    "sched": {"runq_latency_us": {"p50": 8, "p99": 3370},
                              "runq_waits": 500}});
    v["baseline"] = json!({"path": x("base.json"), "samples": "runs", "alpha": 0.05,
                     "metrics": [{"metric": "throughput", "request": x("home"),
                                  "unit": "req/s", "base_median": 100.0, "new_median": 90.0,
                                  "delta_pct": -10.0, "ci95_pct": [-12.0, -8.0],
                                  "p_value": 0.01, "test": "Welch t", "verdict": "slower"}],
                     "warnings": [x("noisy")],
                     "distributions": [{"metric": "p99 latency", "unit": "us",
                                        "base": [1.0, 2.0], "new": [2.0, 3.0]}],
                     "flame_diff": {"base_samples": 3, "new_samples": 3},
                     "base_folded": ["srv;main;burn 1", "srv;main 2"]});
    serde_json::from_value(v).unwrap()
}

#[test]
fn every_string_of_the_report_is_escaped() {
    let html = super::render(&hostile()).unwrap();
    // Outside the framed flamegraphs (whose own documents are escaped
    // once more as the frame's attribute), no markup of the report's.
    assert!(!html.contains("<i>"), "{html}");
    assert!(html.contains("&lt;i&gt;&quot;x&quot;&lt;/i&gt; &amp; &#39;y&#39;"));
    for section in [
        "id=\"parts\"",
        "id=\"thresholds\"",
        "id=\"server\"",
        "id=\"summary\"",
        "id=\"charts\"",
        "id=\"requests\"",
        "id=\"grpc\"",
        "id=\"runs\"",
        "id=\"profile\"",
        "id=\"off-cpu\"",
        "id=\"baseline\"",
    ] {
        assert!(html.contains(section), "{section}");
    }
    if let Some(path) = std::env::var_os("LOADGEN_HTML_DUMP") {
        std::fs::write(path, &html).unwrap();
    }
}
