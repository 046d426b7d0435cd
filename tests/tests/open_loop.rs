//! Open loop (-R): corrected latency against theory, exact rates and
//! counts, ramps, and HdrHistogram files that its tooling can read.
//!
//! These tests measure time, so they run one at a time (a shared lock):
//! on a 2-CPU machine, parallel load tests would fight for the CPUs.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use loadgen_tests::{Target, http_get, run, run_json};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const PERIOD_MS: u64 = 1000;
const STALL_MS: u64 = 200;

/// Sleeps until the target has just come out of a stall, so a run of a
/// whole number of periods covers whole stalls only.
fn align_to_stalls(t: &Target) {
    let stats: serde_json::Value = serde_json::from_str(&http_get(t.port, "/__stats")).unwrap();
    let up_ms = stats["uptime_us"].as_u64().unwrap() / 1000;
    let phase = up_ms % PERIOD_MS;
    let wait = (STALL_MS + 20 + PERIOD_MS - phase) % PERIOD_MS;
    std::thread::sleep(Duration::from_millis(wait));
}

/// With the server stalled for S of every P, a request intended at a
/// uniformly random time waits S − u when it lands u into a stall, so
/// P(latency > x) = (S − x) / P and the q-quantile is S − P·(1 − q).
fn stall_test(extra: &[&str]) {
    let _g = serial();
    let t = Target::start_with(1, &["--stall-every", "1s", "--stall-for", "200ms"]);
    align_to_stalls(&t);
    let url = t.url("/");
    let mut args = vec!["-t1", "-d", "5s", "-R", "1000"];
    args.extend_from_slice(extra);
    args.push(&url);
    let (json, text, code) = run_json(&args);
    assert_eq!(code, 0, "{text}");
    let lat = &json["latency_us"];
    let theory = |q: f64| (STALL_MS as f64 - PERIOD_MS as f64 * (1.0 - q)) * 1000.0;
    for (key, q) in [("p90", 0.90), ("p99", 0.99)] {
        let got = lat[key].as_f64().unwrap();
        let want = theory(q);
        assert!(
            (got - want).abs() <= 0.10 * want,
            "corrected {key} {got} µs, theory {want} µs: {text}"
        );
    }
    // The service time (from the actual send) hides the stalls: only the
    // few requests already sent when a stall began saw it.
    let service_p99 = json["service_time_us"]["p99"].as_f64().unwrap();
    assert!(
        service_p99 < 20_000.0,
        "service p99 {service_p99} µs: {text}"
    );
    let requests = json["requests"].as_u64().unwrap();
    assert!((4900..=5000).contains(&requests), "{requests}");
}

#[test]
fn stalls_show_in_corrected_latency_not_in_service_time() {
    stall_test(&["-c4"]);
}

#[test]
fn stalls_show_in_corrected_latency_pipelined() {
    stall_test(&["-c1", "--pipeline", "4"]);
}

#[test]
fn achieved_rate_within_one_percent_and_counts_exact() {
    let _g = serial();
    let t = Target::start(1);
    let before = t.responses();
    let (json, text, code) = run_json(&["-t1", "-c16", "-d", "10s", "-R", "2000", &t.url("/")]);
    assert_eq!(code, 0, "{text}");
    let rps = json["rps"].as_f64().unwrap();
    assert_eq!(json["target_rps"].as_f64().unwrap(), 2000.0);
    assert!((rps - 2000.0).abs() <= 20.0, "achieved {rps} req/s: {text}");
    assert_eq!(json["mode"], "open");
    // Exact: every response the target sent was counted, bar those still
    // in flight when the run ended (at most one per connection).
    let served = t.responses() - before;
    let counted = json["requests"].as_u64().unwrap();
    assert!(
        served >= counted && served - counted <= 16,
        "served {served}, counted {counted}"
    );

    let before = t.responses();
    let (json, text, code) = run_json(&[
        "-t2",
        "-c8",
        "-n",
        "3000",
        "-R",
        "3000",
        "--pipeline",
        "4",
        &t.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 3000, "{json}");
    assert_eq!(t.responses() - before, 3000);
    let secs = json["duration_s"].as_f64().unwrap();
    assert!(
        (0.95..1.2).contains(&secs),
        "3000 requests at 3000/s took {secs} s"
    );
}

#[test]
fn ramp_stage_rates_follow_the_schedule() {
    let _g = serial();
    let t = Target::start(1);
    let (json, text, code) = run_json(&[
        "-t1",
        "-c16",
        "--stages",
        "1s:500,3s:500->2500,1s:2500",
        &t.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    let series = json["series"].as_array().unwrap();
    assert!(series.len() >= 5, "{json}");
    let want = [500.0, 833.33, 1500.0, 2166.67, 2500.0];
    for (i, w) in want.iter().enumerate() {
        let row = &series[i];
        let target = row["target_rate"].as_f64().unwrap();
        assert!(
            (target - w).abs() < 1.0,
            "second {}: target {target}",
            i + 1
        );
        let rate = row["rate"].as_f64().unwrap();
        assert!(
            (rate - w).abs() <= 0.02 * w,
            "second {}: rate {rate}, schedule {w}: {series:?}",
            i + 1
        );
    }
}

#[test]
fn warmup_is_not_measured() {
    let _g = serial();
    let t = Target::start(1);
    let before = t.responses();
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-d",
        "1s",
        "--warmup",
        "1s",
        "-R",
        "1000",
        &t.url("/"),
    ]);
    assert_eq!(code, 0, "{text}");
    let counted = json["requests"].as_u64().unwrap();
    let served = t.responses() - before;
    assert!((980..=1010).contains(&counted), "{counted} measured");
    assert!(served >= 1980, "the warm-up loaded too: {served} served");
    assert_eq!(json["warmup_s"], 1.0);
    assert!(text.contains("warm-up 1s"), "{text}");
}

#[test]
fn hdr_log_and_percentiles_files() {
    let _g = serial();
    let t = Target::start(1);
    let dir = std::env::temp_dir().join(format!("loadgen-hdr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hlog = dir.join("run.hlog");
    let hgrm = dir.join("run.hgrm");
    let json_path = dir.join("run.json");
    let out = run(&[
        "-t2",
        "-c4",
        "-d",
        "3s",
        "-R",
        "1500",
        "--hdr-log",
        hlog.to_str().unwrap(),
        "--percentiles",
        hgrm.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
        &t.url("/"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();

    // Round trip through the crate's decoder: one interval per second whose
    // sum is exactly the run's histogram.
    let bytes = std::fs::read(&hlog).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("#[StartTime: ") && text.contains("#[BaseTime: "),
        "{text}"
    );
    let mut total: Histogram<u64> = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    let series = json["series"].as_array().unwrap();
    let intervals = loadgen_tests::hdr_log::intervals(&hlog);
    for (h, second) in intervals.iter().zip(series) {
        assert_eq!(h.len(), second["requests"].as_u64().unwrap());
        assert_eq!(h.max(), second["max_us"].as_u64().unwrap());
        total.add(h).unwrap();
    }
    assert_eq!(intervals.len(), series.len());
    assert!(intervals.len() >= 3);
    let lat = &json["latency_us"];
    assert_eq!(total.len(), json["requests"].as_u64().unwrap());
    assert_eq!(total.max(), lat["max"].as_u64().unwrap());
    assert_eq!(total.value_at_quantile(0.99), lat["p99"].as_u64().unwrap());
    assert_eq!(total.value_at_quantile(0.5), lat["p50"].as_u64().unwrap());

    let hgrm_text = std::fs::read_to_string(&hgrm).unwrap();
    let mut lines = hgrm_text.lines();
    assert_eq!(
        lines.next(),
        Some("       Value     Percentile TotalCount 1/(1-Percentile)")
    );
    let rows: Vec<&str> = hgrm_text
        .lines()
        .filter(|l| !l.starts_with('#') && l.split_whitespace().count() >= 3)
        .skip(1)
        .collect();
    assert!(rows.len() > 20, "{hgrm_text}");
    let last: Vec<&str> = rows.last().unwrap().split_whitespace().collect();
    assert_eq!(last[1], "1.000000000000");
    assert_eq!(
        last[2].parse::<u64>().unwrap(),
        json["requests"].as_u64().unwrap()
    );
    assert!(hgrm_text.contains("#[Mean    = ") && hgrm_text.contains("#[Buckets = "));
    let _ = std::fs::remove_dir_all(dir);
}
